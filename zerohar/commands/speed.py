"""`zerohar speed`: throughput and memory of every BENCHMARK.md speed figure, fast path next to plain fp32."""

from __future__ import annotations

import argparse
import sys

from zerohar.errors import ZeroharError
from zerohar.io import check_output


def add_arguments(p: argparse.ArgumentParser) -> None:
    from zerohar.evaluation.speed import FIGURES, MIN_RATIO  # heavy: torch

    p.add_argument("--quick", action="store_true",
                   help="about a minute: shorter timing rounds, and classify_7day only if named in --figures")
    p.add_argument("--figures", nargs="+", metavar="NAME", choices=FIGURES,
                   help=f"figures to measure (default: all): {', '.join(FIGURES)}")
    p.add_argument("--json", metavar="FILE", help="also write {figure: {windows_per_s, baseline_windows_per_s, "
                   "ratio, peak_rss_mb}} to FILE")
    p.add_argument("--days", type=float, default=7.0,
                   help="length of the synthetic recording of classify_7day (default 7 days = 18.1M rows)")
    p.add_argument("--min-ratio", type=float, default=MIN_RATIO,
                   help=f"fail (exit 1) when a default path is slower than plain: fast / plain below this after "
                        f"--repeats tries (default {MIN_RATIO}, the noise of a shared machine)")
    p.add_argument("--repeats", type=int, default=3,
                   help="tries of a figure whose ratio is below --min-ratio; the best is kept (default 3)")
    p.add_argument("--run", metavar="RUN",
                   help="a trained Stage II run that the classify figures time instead of random weights; "
                   "classify_7day_cascade needs one with a distilled backbone (zerohar distill), since how many "
                   "windows it checks again depends on trained weights (default: left out)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar while writing the recording")


def run(args: argparse.Namespace) -> int:
    from zerohar.evaluation.speed import (  # heavy: torch
        add_ceiling_shares,
        ceiling_line,
        format_table,
        machine_summary,
        measure_ceiling,
        run_speed,
        slow_default_paths,
        write_json,
    )

    if args.json:
        check_output(args.json, force=args.force)  # before minutes of timing, not after
    if args.days <= 0:
        raise ZeroharError(f"--days must be positive, found {args.days:g}")
    if args.repeats < 1:
        raise ZeroharError(f"--repeats must be at least 1, found {args.repeats}")
    ceiling = measure_ceiling(args.quick)
    results = run_speed(args.figures, quick=args.quick, days=args.days, progress=not args.no_progress,
                        repeats=args.repeats, min_ratio=args.min_ratio, run=args.run)
    add_ceiling_shares(results, ceiling)
    for r in results.values():
        r["matmul_gflops"] = ceiling["matmul_gflops"]
    print(f"Machine: {machine_summary()}")
    print(f"{ceiling_line(ceiling)}\n")
    print(format_table(results))
    if args.json:
        write_json(results, args.json, force=args.force)
        print(f"\nwrote {args.json}")
    slow = slow_default_paths(results, args.min_ratio)
    if slow:
        listed = ", ".join(f"{name} {ratio:.2f}x" for name, ratio in slow.items())
        print(f"zerohar speed: error: default path slower than plain (ratio below {args.min_ratio:g} after "
              f"{args.repeats} tries): {listed}", file=sys.stderr)
        return 1
    return 1 if any("error" in r for r in results.values()) else 0
