"""`zerohar speed`: throughput and memory of every BENCHMARK.md speed figure, fast path next to plain fp32."""

from __future__ import annotations

import argparse
from pathlib import Path

from zerohar.errors import ZeroharError


def add_arguments(p: argparse.ArgumentParser) -> None:
    from zerohar.evaluation.speed import FIGURES  # heavy: torch

    p.add_argument("--quick", action="store_true",
                   help="about a minute: shorter timing rounds, and classify_7day only if named in --figures")
    p.add_argument("--figures", nargs="+", metavar="NAME", choices=FIGURES,
                   help=f"figures to measure (default: all): {', '.join(FIGURES)}")
    p.add_argument("--json", metavar="FILE", help="also write {figure: {windows_per_s, baseline_windows_per_s, "
                   "ratio, peak_rss_mb}} to FILE")
    p.add_argument("--days", type=float, default=7.0,
                   help="length of the synthetic recording of classify_7day (default 7 days = 18.1M rows)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar while writing the recording")


def run(args: argparse.Namespace) -> int:
    from zerohar.evaluation.speed import format_table, machine_summary, run_speed, write_json  # heavy: torch

    if args.json and Path(args.json).exists() and not args.force:
        raise ZeroharError(f"output {args.json} already exists; pass --force to overwrite it")
    if args.days <= 0:
        raise ZeroharError(f"--days must be positive, found {args.days:g}")
    results = run_speed(args.figures, quick=args.quick, days=args.days, progress=not args.no_progress)
    print(f"Machine: {machine_summary()}\n")
    print(format_table(results))
    if args.json:
        write_json(results, args.json, force=args.force)
        print(f"\nwrote {args.json}")
    return 1 if any("error" in r for r in results.values()) else 0
