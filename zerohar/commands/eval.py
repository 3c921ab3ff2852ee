"""`zerohar eval`: zero-shot evaluation of a trained run on its fold's unseen classes."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, metavar="RUN", help="a finished Stage II (or supervised) run directory")
    p.add_argument("--out", metavar="DIR", help="where metrics.json and confusion.png go (default RUN/eval)")
    p.add_argument("--root", metavar="DIR", help="read the dataset from this raw folder instead of the run's")
    p.add_argument("--data", metavar="FILE.npz", help="evaluate on this prepared window set instead")
    p.add_argument("--batch-size", type=int, default=256, help="windows per forward pass (default 256)")
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                   help="inference precision: auto = bf16 on CPUs with native bf16 (default), fp32 to force it")
    p.add_argument("--force", action="store_true", help="overwrite an existing evaluation")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from zerohar.evaluation.evaluate import evaluate_run, format_metrics

    m = evaluate_run(
        args.run, args.out, root=args.root, data=args.data, batch_size=args.batch_size, precision=args.precision,
        force=args.force, progress=not args.no_progress,
    )
    print(format_metrics(m))
    print(f"-> {Path(args.out) if args.out else Path(args.run) / 'eval'}/metrics.json, confusion.png")
    return 0
