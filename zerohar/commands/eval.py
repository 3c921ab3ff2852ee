"""`zerohar eval`: zero-shot evaluation of a trained run on its fold's unseen classes."""

from __future__ import annotations

import argparse
from pathlib import Path

from zerohar.commands import (
    add_distilled_argument,
    add_inference_arguments,
    add_progress_argument,
    add_run_argument,
    check_precision,
)
from zerohar.errors import ZeroharError
from zerohar.models import resolve_model


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_argument(p, "a finished Stage II (or supervised) run directory (with --candidates all: default the "
                     "shipped general model)", old=None, required=False)
    p.add_argument("--out", metavar="DIR", help="where metrics.json and confusion.png go (default RUN/eval, "
                   "RUN/eval-<target> for --candidates all; with --distilled, -distilled is added; RUN/eval-cascade "
                   "with --cascade)")
    p.add_argument("--candidates", choices=("fold", "all"), default="fold",
                   help="fold (default): the run's fold, its unseen classes as candidates; all: cross-dataset, "
                   "every class of --dataset/--data a candidate, for a model that never trained on it")
    p.add_argument("--dataset", help="--candidates all: the target dataset's name")
    p.add_argument("--root", metavar="DIR", help="read the dataset from this raw folder instead of the run's")
    p.add_argument("--data", metavar="FILE.npz", help="evaluate on this prepared window set instead")
    p.add_argument("--descriptions", metavar="FILE.json",
                   help="--candidates all: the target's label descriptions (default: its shipped file, if any)")
    p.add_argument("--label-text", choices=("descriptions", "names"), default="descriptions",
                   help="--candidates all: descriptions (default) or each label's name alone")
    add_inference_arguments(p, precision="fp32", int8=True)
    add_distilled_argument(p)
    p.add_argument("--cascade", action="store_true",
                   help="score `classify --cascade`: the distilled backbone on every window, the run's own again "
                   "where the student's error could change the decision (bounds per decision from its first windows "
                   "and one window in 64 throughout); metrics.json records the share checked again (default output "
                   "RUN/eval-cascade)")
    p.add_argument("--force", action="store_true", help="overwrite an existing evaluation")
    add_progress_argument(p)


def run(args: argparse.Namespace) -> int:
    check_precision(args.precision)
    if args.candidates == "all":
        if args.cascade:
            raise ZeroharError("--cascade scores a run on its own fold; with --candidates all compare --distilled "
                               "with the run's own backbone")
        from zerohar.evaluation.cross import evaluate_cross, format_cross  # heavy: torch

        m = evaluate_cross(
            resolve_model(args.run), args.out, dataset=args.dataset, data=args.data, root=args.root,
            descriptions=args.descriptions, label_text=args.label_text, batch_size=args.batch_size,
            precision=args.precision, force=args.force, progress=not args.no_progress, distilled=args.distilled,
        )
        print(format_cross(m))
        return 0
    for flag in ("dataset", "descriptions"):
        if getattr(args, flag) is not None:
            raise ZeroharError(f"--{flag} is for --candidates all (cross-dataset); a fold evaluation reads the run's")
    if args.label_text != "descriptions":
        raise ZeroharError("--label-text is for --candidates all; a fold evaluation uses the run's label texts")
    if args.run is None:
        raise ZeroharError("give --run RUN: a fold evaluation scores a run on its own fold's unseen classes")
    from zerohar.evaluation.evaluate import default_out, evaluate_run, format_metrics  # heavy: torch

    m = evaluate_run(
        args.run, args.out, root=args.root, data=args.data, batch_size=args.batch_size, precision=args.precision,
        force=args.force, progress=not args.no_progress, distilled=args.distilled, cascade=args.cascade,
    )
    print(format_metrics(m))
    default = Path(args.run) / default_out(args.distilled, args.cascade)
    print(f"-> {Path(args.out) if args.out else default}/metrics.json, confusion.png")
    return 0
