"""`zerohar prepare`: read a dataset's raw files into a cached window set (.npz) and print its class table."""

from __future__ import annotations

import argparse
import time

from zerohar.data.prepare import class_table, prepare
from zerohar.errors import ZeroharError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", help="dataset name: hapt, shoulder, spswhar, pamap2, opportunity, uschad, "
                        "wisdm, harth, or csv for your own files")
    parser.add_argument("--data-format", choices=["dataset", "csv"], default="dataset",
                        help="csv: read --root as your own CSV file(s), the same as --dataset csv")
    parser.add_argument("--root", help="the dataset folder (csv: a file or folder); default: the embedded HAPT "
                        "derivative for hapt, else $ZEROHAR_DATA/<dir> or ../shared/data/<dir>")
    parser.add_argument("--window", type=float, default=5.0, help="window length in seconds (5, 10 or 30)")
    parser.add_argument("--step", type=float, default=None, help="step between windows in seconds (default: half "
                        "a window)")
    trial = parser.add_mutually_exclusive_group()
    trial.add_argument("--per-trial", dest="per_trial", action="store_const", const=True, default=None,
                       help="one window per recording (single short trials), centre-cropped or edge-padded")
    trial.add_argument("--per-segment", dest="per_trial", action="store_const", const="segment",
                       help="one window per labelled segment, centred on it")
    trial.add_argument("--sliding", dest="per_trial", action="store_const", const=False,
                       help="sliding windows even where the dataset's default is per trial / per segment")
    parser.add_argument("--out", help="also write the window set to this .npz")
    parser.add_argument("--force", action="store_true", help="overwrite --out and prepare again, ignoring the cache")
    parser.add_argument("--layout", help="sensor layout YAML (format of metadata/sensors/): csv, or to override a "
                        "dataset's own where its source allows")
    parser.add_argument("--placement", help="csv without --layout: where the sensors are worn (e.g. 'left wrist')")
    parser.add_argument("--device", help="csv without --layout: the device (e.g. smartwatch)")
    parser.add_argument("--rate", type=float, help="csv without a time column: sampling rate in Hz")
    parser.add_argument("--folds", help="folds YAML whose class list orders the labels (csv: else sorted labels)")
    parser.add_argument("--download", action="store_true", help="fetch the public archive into --root if missing")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    dataset = args.dataset
    if args.data_format == "csv":
        if dataset not in (None, "csv"):
            raise ZeroharError(f"--data-format csv reads your own files; it cannot go with --dataset {dataset}")
        dataset = "csv"
    if dataset is None:
        raise ZeroharError("give --dataset NAME (or --data-format csv with --root FILE_OR_DIR)")
    t0 = time.perf_counter()
    ws = prepare(
        dataset, root=args.root, window_s=args.window, step_s=args.step, per_trial=args.per_trial, out=args.out,
        force=args.force, progress=not args.no_progress, layout=args.layout, placement=args.placement,
        device=args.device, folds=args.folds, rate=args.rate, download=args.download,
    )
    print(class_table(ws))
    shape = "x".join(str(d) for d in ws.X.shape)
    print(f"{dataset}: {len(ws):,} windows ({shape}, {ws.rate:g} Hz) in {time.perf_counter() - t0:.1f} s"
          + (f"; wrote {args.out}" if args.out else ""))
    return 0
