"""`zerohar distill`: a smaller backbone trained to match a finished run's, for long recordings.

The student (HARNet at `--width` of the channels, then a linear map to the teacher's features) learns, on
unlabelled windows, to give the features the run's backbone gives; `classify --distilled` and `eval --distilled`
then run it in place of the backbone, with every other part of the model as trained. See
:mod:`zerohar.train.distill`.
"""

from __future__ import annotations

import argparse

from zerohar.commands import add_progress_argument, add_run_argument

DESCRIPTION = (
    "Distil the HARNet backbone of a finished Stage II (or supervised) run into a narrower one (--width of its "
    "channels, then a linear map to its features), for long recordings: `zerohar classify --distilled` and "
    "`zerohar eval --distilled` then run the student in place of the backbone, with every other part of the model "
    "unchanged, on the same fast paths (fused fp32, bf16, --precision int8). Width 0.5 is about a quarter of the "
    "backbone's work per window. The student learns the backbone's features, not the labels, so it changes the "
    "labels of some windows: compare `zerohar eval --run RUN` with `zerohar eval --run RUN --distilled` before "
    "using it. By default it learns from the run's own training windows (same dataset, fold and training "
    "subjects, labels not read; validation on its validation subjects), with two copies of them turned every way "
    "(the fold's unseen activities are absent from them, and a student matches its teacher only on the kind of "
    "input it was shown), so a zero-shot number of the distilled model sees no unseen-class window and no test "
    "subject. It costs a training run: the teacher's features of every training triad once, then the student's "
    "steps until its validation cosine stops improving. Measured on fold1 Stage II runs (AVX2 CPU, one core, about "
    "an hour each): the same label as the run's own backbone on 99.1% of the 6,480 labelled HAPT windows and "
    "95.4% of the 10,139 USC-HAD windows (all classes as candidates), zero-shot macro-F1 0.575 vs 0.589 and "
    "0.722 vs 0.695. Measure it on your data. A 7-day wrist week took 185 s instead of 550 s. Writes "
    "RUN/distilled/ (model.safetensors, student.json)."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = DESCRIPTION
    add_run_argument(p, "a finished Stage II (or supervised) run directory with a HARNet backbone (the teacher)",
                     old=None)
    p.add_argument("--width", type=float, default=0.5,
                   help="the student's share of the backbone's channels per layer, in (0, 1] (default 0.5: "
                   "harnet5 channels 32, 64, 128, 128, 256; about a quarter of the work)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--data", metavar="FILE.npz", help="distil on this window set (from `zerohar prepare`) instead "
                     "of the run's training windows; refused if it holds the run's unseen classes or test subjects")
    src.add_argument("--dataset", metavar="NAME", help="distil on every window of this dataset instead (same "
                     "refusal)")
    p.add_argument("--root", metavar="DIR", help="raw folder of --dataset, or of the run's own dataset (default: "
                   "the one its config names)")
    p.add_argument("--max-steps", type=int, metavar="N",
                   help="at most N optimiser steps (default: the adaptive budget, which stops at the validation "
                   "cosine's plateau)")
    p.add_argument("--batch-size", type=int, default=256, help="triads per optimiser step (default 256)")
    p.add_argument("--lr", type=float, default=2e-3, help="AdamW learning rate (default 0.002)")
    p.add_argument("--augment-copies", type=int, default=2, metavar="K",
                   help="add K copies of the training windows, each window turned to a random orientation and "
                   "scaled, each copy with its own teacher features (default 2; 0: none). Without them the USC-HAD "
                   "fold1 student kept 83.5%% of the run's labels, with them 95.4%% (HAPT: 97.8%% and 99.1%%), for "
                   "about 3.5x the time")
    p.add_argument("--augment-rotation", type=float, default=180.0, metavar="DEG",
                   help="largest rotation of an augmented window, degrees (default 180: any orientation, so the "
                   "student also meets postures its windows never held, such as lying)")
    p.add_argument("--augment-scale", type=float, default=0.3, metavar="S",
                   help="amplitude scale of an augmented window, a factor in [1 - S, 1 + S] (default 0.3)")
    p.add_argument("--augment-intensity", type=float, default=1.0, metavar="F",
                   help="scale each augmented triad's movement about its mean (gravity kept) by a factor "
                   "log-uniform in [1/F, F] (default 1: off; 2, with --augment-tempo 1.5, kept fewer of a USC-HAD "
                   "run's labels: 92.6%% vs 95.4%%)")
    p.add_argument("--augment-tempo", type=float, default=1.0, metavar="F",
                   help="resample each augmented window to a tempo log-uniform in [1/F, F] (default 1: off)")
    p.add_argument("--augment-mix", type=float, default=0.0, metavar="P",
                   help="mix this share of each augmented copy's windows with another window, lam * a + (1 - lam) * "
                   "b with lam uniform in [0, 1] (mixup; default 0: off; 0.5 kept fewer of the labels of a HAPT and a "
                   "USC-HAD run: 94.3%% vs 95.4%%, 92.5%% vs 95.4%%)")
    p.add_argument("--student-init", choices=("random", "teacher"), default="random",
                   help="how the student starts: 'random' (default) or 'teacher', the teacher's own weights on the "
                   "channels its later layers read most, recalibrated and with a fitted output map (a closer start, "
                   "the same plateau: it kept no more labels on the two fold runs measured)")
    p.add_argument("--seed", type=int, default=0, help="student initialisation, batches, subsets (default 0)")
    p.add_argument("--allow-transductive-init", action="store_true",
                   help="accept --data / --dataset holding the run's unseen classes or test subjects (student.json "
                   "then records it)")
    p.add_argument("--force", action="store_true", help="replace an existing RUN/distilled/")
    add_progress_argument(p)


def run(args: argparse.Namespace) -> int:
    from zerohar.train.distill import distill_run  # heavy: torch
    from zerohar.train.runs import read_distilled  # heavy: torch (the model module)

    out = distill_run(
        args.run, width=args.width, data=args.data, dataset=args.dataset, root=args.root, max_steps=args.max_steps,
        batch_size=args.batch_size, lr=args.lr, augment_copies=args.augment_copies,
        augment_deg=args.augment_rotation, augment_scale=args.augment_scale, augment_intensity=args.augment_intensity,
        augment_tempo=args.augment_tempo, augment_mix=args.augment_mix, init=args.student_init, seed=args.seed,
        allow_transductive_init=args.allow_transductive_init, force=args.force, progress=not args.no_progress,
    )
    r = read_distilled(args.run)
    print(f"width {r['width']:g} student of {r['teacher']['backbone']} ({r['n_parameters']:,} vs "
          f"{r['teacher']['n_parameters']:,} parameters): validation cosine {r['val_cosine']:.4f} (start "
          f"{r['val_cosine_start']:.4f}) after {r['steps']} steps ({r['stop_reason']}), {r['seconds']['wall']:.0f} s "
          f"-> {out}")
    return 0
