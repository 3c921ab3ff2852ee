"""`zerohar eval`: zero-shot evaluation of a trained run on its fold's unseen classes."""

from __future__ import annotations

import argparse
from pathlib import Path

from zerohar.commands import add_inference_arguments, add_progress_argument, add_run_argument


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_argument(p, "a finished Stage II (or supervised) run directory", old=None)
    p.add_argument("--out", metavar="DIR", help="where metrics.json and confusion.png go (default RUN/eval)")
    p.add_argument("--root", metavar="DIR", help="read the dataset from this raw folder instead of the run's")
    p.add_argument("--data", metavar="FILE.npz", help="evaluate on this prepared window set instead")
    add_inference_arguments(p, precision="fp32")
    p.add_argument("--force", action="store_true", help="overwrite an existing evaluation")
    add_progress_argument(p)


def run(args: argparse.Namespace) -> int:
    from zerohar.evaluation.evaluate import evaluate_run, format_metrics  # heavy: torch

    m = evaluate_run(
        args.run, args.out, root=args.root, data=args.data, batch_size=args.batch_size, precision=args.precision,
        force=args.force, progress=not args.no_progress,
    )
    print(format_metrics(m))
    print(f"-> {Path(args.out) if args.out else Path(args.run) / 'eval'}/metrics.json, confusion.png")
    return 0
