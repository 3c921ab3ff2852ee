"""`zerohar benchmark`: every method of BENCHMARK.md on every fold and seed, one results table."""

from __future__ import annotations

import argparse
import shlex
import sys

from zerohar.commands import add_inference_arguments, add_progress_argument, deprecated_alias
from zerohar.config import parse_set, split_sources
from zerohar.errors import ZeroharError


def add_arguments(p: argparse.ArgumentParser) -> None:
    from zerohar.evaluation.benchmark import METHODS  # heavy: torch

    p.add_argument("--protocol", choices=("within", "cross-dataset"), default="within",
                   help="within (default): class-disjoint folds of one dataset; cross-dataset: for each dataset of "
                   "--dataset a,b,c,..., train on the others and name its windows with all its classes unseen")
    p.add_argument("--dataset", required=True, metavar="NAME",
                   help="dataset (metadata/folds/NAME.yaml); cross-dataset: comma-separated, e.g. "
                   "hapt,shoulder,spswhar,uschad")
    p.add_argument("--root", metavar="DIR", help="the dataset's raw folder (default: $ZEROHAR_DATA, ../shared/data, "
                   "or the embedded HAPT derivative); cross-dataset: the folder holding each dataset's folder")
    p.add_argument("--folds", metavar="fold1,...", help="comma-separated folds (default: all)")
    p.add_argument("--targets", metavar="NAME,...",
                   help="cross-dataset: the datasets to test on, in this order (default: each of --dataset)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per fold (default 3)")
    p.add_argument("--methods", metavar="M,...",
                   help=f"comma-separated methods (default: all): {', '.join(METHODS)}; cross-dataset: zerohar, "
                   "no_stage1")
    p.add_argument("--epochs-scale", type=float, default=1.0, metavar="F",
                   help="multiply every stage's train.epochs (or train.max_steps) by F (quick looks; default 1: "
                   "lengths adapt to the data)")
    p.add_argument("--backbone-weights", dest="backbone_init", metavar="FILE",
                   help="backbone of the zerohar rows (cross-dataset: of every run): a released HARNet file or a "
                   "pretrain run (default: random)")
    deprecated_alias(p, "--backbone-init", "--backbone-weights", "backbone_init", metavar="FILE")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every stage, e.g. --set train.max_steps_per_epoch=5; a stage name first "
                   "overrides that stage only, after --epochs-scale: --set stage1.train.epochs=2 (repeatable)")
    add_inference_arguments(p, precision="fp32")
    p.add_argument("--out", required=True, metavar="DIR", help="benchmark directory (resumable)")
    add_progress_argument(p)


def _split(value: str | None) -> list[str] | None:
    return split_sources(value) or None


def run(args: argparse.Namespace) -> int:
    argv = sys.argv[1:] if "benchmark" in sys.argv[1:] else ["benchmark", *sys.argv[1:]]
    if args.targets is not None and args.protocol != "cross-dataset":
        raise ZeroharError("--targets is for --protocol cross-dataset")
    if args.protocol == "cross-dataset":
        return run_cross(args, _split(args.dataset), "zerohar " + " ".join(shlex.quote(a) for a in argv))
    from zerohar.evaluation.benchmark import COLUMNS, METHODS, run_benchmark  # heavy: torch

    agg = run_benchmark(
        args.dataset, args.out, root=args.root, folds=_split(args.folds), seeds=args.seeds,
        methods=_split(args.methods),
        epochs_scale=args.epochs_scale, backbone_init=args.backbone_init, sets=parse_set(args.set),
        batch_size=args.batch_size, precision=args.precision, progress=not args.no_progress,
        command="zerohar " + " ".join(shlex.quote(a) for a in argv),
    )
    width = max(len(t) for t in METHODS.values())
    print(f"{'method':<{width}}  " + "  ".join(f"{t:>17}" for t in COLUMNS.values()))
    for a in agg:
        cells = ["n/a" if a[f"{c}_mean"] is None else f"{a[f'{c}_mean']:.3f} ± {a[f'{c}_std']:.3f}" for c in COLUMNS]
        print(f"{METHODS[a['method']]:<{width}}  " + "  ".join(f"{c:>17}" for c in cells))
    print(f"-> {args.out}/results.md, results.csv")
    return 0


def run_cross(args: argparse.Namespace, datasets: list[str], command: str) -> int:
    """`--protocol cross-dataset`: :func:`zerohar.evaluation.cross.benchmark_cross`."""
    from zerohar.data.sources import dataset_roots  # the source registry (numpy, scipy: 0.3 s): only here
    from zerohar.evaluation.cross import CROSS_METHODS, benchmark_cross  # heavy: torch

    for flag, value in (("--folds", args.folds),):
        if value is not None:
            raise ZeroharError(f"{flag} is for the within-dataset protocol")
    if args.epochs_scale != 1.0:
        raise ZeroharError("--epochs-scale is for the within-dataset protocol; set lengths with --set")
    roots = dataset_roots(datasets, args.root) if args.root is not None else {}
    agg = benchmark_cross(datasets, args.out, roots=roots, targets=_split(args.targets), seeds=args.seeds,
                          sets=parse_set(args.set),
                          batch_size=args.batch_size, precision=args.precision, progress=not args.no_progress,
                          command=command, backbone_init=args.backbone_init, methods=_split(args.methods))
    width = max(len(t) for t in CROSS_METHODS.values())
    for a in agg:
        f1 = a.get("macro_f1_mean")
        print(f"{a['target']:<10} {CROSS_METHODS[a['method']]:<{width}}  macro-F1 "
              f"{'n/a' if f1 is None else f'{f1:.3f}'}")
    print(f"-> {args.out}/results.md, results.csv")
    return 0
