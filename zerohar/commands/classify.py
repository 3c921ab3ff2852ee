"""`zerohar classify`: name the activities of a recording with any label text (zero-shot)."""

from __future__ import annotations

import argparse

from zerohar.commands import (
    add_inference_arguments,
    add_label_arguments,
    add_llm_arguments,
    add_progress_argument,
    add_run_argument,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_argument(p, "a finished Stage II (or supervised) run directory")
    p.add_argument("--input", required=True, metavar="FILE",
                   help="the recording: CSV (time column + channel columns), .npy (T, C) or .npz (signals, time)")
    add_label_arguments(p, index=True)
    p.add_argument("--layout", metavar="FILE.yaml", help="sensor layout of the input (format of metadata/sensors/)")
    p.add_argument("--placement", help="instead of --layout: where every sensor is worn (e.g. 'left wrist')")
    p.add_argument("--device", help="instead of --layout: the device (e.g. smartwatch)")
    p.add_argument("--rate", type=float, help="sampling rate in Hz of a .npy / .npz input without times")
    p.add_argument("--describe", action="store_true",
                   help="ask an LLM for descriptions of labels that have none (else a name template is used)")
    add_llm_arguments(p)
    p.add_argument("--top-k", type=int, default=3, help="labels per window in the output (default 3)")
    p.add_argument("--step", type=float, metavar="SECONDS",
                   help="seconds between window starts, at most one window (default: half a window, 2.5 s for "
                   "5 s windows; --step 5 halves the work on long recordings)")
    add_inference_arguments(p)
    p.add_argument("--out", required=True, metavar="FILE.csv", help="output table (.csv, or .parquet with pyarrow)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    add_progress_argument(p)


def run(args: argparse.Namespace) -> int:
    from zerohar.inference.classify import classify_recording  # heavy: torch, faiss

    res = classify_recording(
        args.run, args.input, args.out, labels=args.labels, labels_file=args.labels_file, index_dir=args.index,
        layout=args.layout, placement=args.placement, device=args.device, rate=args.rate, describe=args.describe,
        llm_model=args.llm_model, base_url=args.base_url, top_k=args.top_k, step_s=args.step,
        batch_size=args.batch_size, precision=args.precision, force=args.force, progress=not args.no_progress,
    )
    print(f"{res.n_windows} windows of {res.window_s:g} s (step {res.step_s:g} s) -> {res.out}")
    print("\n".join(res.summary_lines()))
    return 0
