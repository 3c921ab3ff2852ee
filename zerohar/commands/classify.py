"""`zerohar classify`: name the activities of a recording with any label text (zero-shot)."""

from __future__ import annotations

import argparse
from pathlib import Path

from zerohar.commands import (
    add_cascade_argument,
    add_distilled_argument,
    add_inference_arguments,
    add_label_arguments,
    add_llm_arguments,
    add_progress_argument,
    add_run_argument,
    check_precision,
)
from zerohar.errors import ZeroharError
from zerohar.models import resolve_model


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_argument(p, "a finished Stage II (or supervised) run directory (default: the shipped general model, "
                     "trained on four public datasets: waist, wrist, trouser pocket and hip)", required=False)
    p.add_argument("--input", required=True, metavar="FILE|DIR|GLOB",
                   help="the recording: CSV (time column + channel columns), .npy (T, C) or .npz (signals, time), "
                   "or a device file read through actipy (Axivity .cwa / .cwa.gz, ActiGraph .gt3x, GENEActiv .bin); "
                   "a folder or a quoted glob ('data/**/*.cwa') is a cohort: every recording is classified on a "
                   "Dask cluster into --out-dir DIR/<recording>/, a rerun skips the finished ones, and "
                   "DIR/cohort.csv and DIR/cohort_daily.csv collate them")
    add_label_arguments(p, index=True)
    p.add_argument("--layout", metavar="FILE.yaml", help="sensor layout of the input (format of metadata/sensors/)")
    p.add_argument("--placement", help="instead of --layout: where every sensor is worn (e.g. 'left wrist'; "
                   "device files default to 'left wrist')")
    p.add_argument("--device", help="instead of --layout: the device (e.g. smartwatch; device files default to "
                   "their type, e.g. 'Axivity AX3')")
    p.add_argument("--rate", type=float, help="sampling rate in Hz of a .npy / .npz input without times")
    p.add_argument("--describe", action="store_true",
                   help="ask an LLM for descriptions of labels that have none (else a name template is used)")
    add_llm_arguments(p)
    p.add_argument("--top-k", type=int, default=3, help="labels per window in the output (default 3)")
    p.add_argument("--step", type=float, metavar="SECONDS",
                   help="seconds between window starts, at most one window (default: half a window, 2.5 s for "
                   "5 s windows; --step 5 halves the work on long recordings: at each 2.5 s instant of 12 HAPT "
                   "recordings, its covering window had the label of the 2.5 s step's at 90%% of labelled "
                   "instants and 87%% of all)")
    add_inference_arguments(p, int8=True)
    add_distilled_argument(p)
    add_cascade_argument(p)
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--out", metavar="FILE.csv", help="output table, one row per window (.csv, or .parquet with "
                     "pyarrow)")
    out.add_argument("--out-dir", metavar="DIR", help="instead of --out: write a folder DIR/<recording name>/ with "
                     "windows.csv, minutes.csv (label per minute), daily.csv (minutes per label, wear time and a "
                     "valid-day flag per local day), info.json and timeline.png; needs real timestamps (a device "
                     "file, or a CSV with datetimes)")
    p.add_argument("--timezone", metavar="TZ", help="with --out-dir: IANA time zone of the daily summaries (e.g. "
                   "Europe/London); a device clock, or a CSV's datetimes without an offset, is read as this zone's "
                   "local time at the start of the recording (devices do not change their clock at daylight saving), "
                   "so days are 23 or 25 h long at a change; the window table keeps the times as written (default: "
                   "days of the clock as written; datetimes with an offset: in the first one's offset)")
    p.add_argument("--min-wear-hours", type=float, default=20.0, metavar="HOURS",
                   help="with --out-dir: wear time of a valid day in daily.csv (default 20, as in actinet / "
                   "stepcount)")
    p.add_argument("--no-calibration", action="store_true",
                   help="device files: skip actipy's gravity calibration (van Hees 2014)")
    p.add_argument("--no-nonwear", action="store_true",
                   help="device files: skip actipy's non-wear detection (stationary for over 90 min: every axis' "
                   "std below 15 mg in 10 s windows); non-wear windows are labelled non-wear, never classified")
    p.add_argument("--no-unknown", action="store_true",
                   help="give every window its best candidate; by default a window whose best score is below the "
                   "run's calibrated threshold (0.4 x the median best score of its held-out windows) is 'unknown' "
                   "(none of these), and label_2 holds its best candidate")
    p.add_argument("--workers", type=int, metavar="N",
                   help="cohort input: processes of the local Dask cluster (default: one per core, at most one per "
                   "3 GB of memory; a week-long device file needs about 1.5 GB)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="cohort input: a running Dask scheduler (e.g. tcp://10.0.0.5:8786, started by dask-jobqueue "
                   "on Slurm) instead of a local cluster; its workers must see the same paths")
    p.add_argument("--force", action="store_true", help="overwrite an existing output (cohorts: redo every recording)")
    add_progress_argument(p)


def run(args: argparse.Namespace) -> int:
    from zerohar.inference.cohort import is_cohort_input  # numpy and the device readers (0.4 s): not for --help

    check_precision(args.precision)
    if is_cohort_input(args.input):
        return run_cohort(args)
    if args.workers is not None or args.scheduler is not None:
        raise ZeroharError("--workers and --scheduler are for a cohort: give --input a folder or a glob")
    from zerohar.inference.classify import classify_recording  # heavy: torch, faiss

    res = classify_recording(
        resolve_model(args.run), args.input, args.out, labels=args.labels, labels_file=args.labels_file,
        index_dir=args.index,
        layout=args.layout, placement=args.placement, device=args.device, rate=args.rate, describe=args.describe,
        llm_model=args.llm_model, base_url=args.base_url, top_k=args.top_k, step_s=args.step,
        batch_size=args.batch_size, precision=args.precision, force=args.force, progress=not args.no_progress,
        out_dir=args.out_dir, timezone_name=args.timezone, min_wear_hours=args.min_wear_hours,
        calibrate=not args.no_calibration, detect_nonwear=not args.no_nonwear, unknown=not args.no_unknown,
        distilled=args.distilled, cascade=args.cascade,
    )
    print(f"{res.n_windows} windows of {res.window_s:g} s (step {res.step_s:g} s) -> {res.out}")
    print("\n".join(res.summary_lines()))
    return 0


def run_cohort(args: argparse.Namespace) -> int:
    """A folder or glob: every recording on Dask; exit 1 when some recordings failed (they are in cohort.csv)."""
    from zerohar.inference.cohort import classify_cohort, find_recordings  # heavy: dask, torch, faiss

    out_dir = args.out_dir if args.out_dir is not None else args.out  # `--out DIR` reads naturally for a cohort
    find_recordings(args.input)  # an empty folder says so first
    if args.out_dir is None and Path(args.out).suffix.lower() in (".csv", ".parquet"):
        raise ZeroharError(f"--input {args.input} is a cohort, which writes a folder per recording; give "
                           f"--out-dir DIR, not the table {args.out}")

    res = classify_cohort(
        str(resolve_model(args.run)), args.input, out_dir, labels=args.labels, labels_file=args.labels_file,
        index_dir=args.index,
        describe=args.describe, llm_model=args.llm_model, base_url=args.base_url, workers=args.workers,
        scheduler=args.scheduler, force=args.force, progress=not args.no_progress,
        layout=args.layout, placement=args.placement, device=args.device, rate=args.rate, top_k=args.top_k,
        step_s=args.step, batch_size=args.batch_size, precision=args.precision, timezone_name=args.timezone,
        min_wear_hours=args.min_wear_hours, calibrate=not args.no_calibration, detect_nonwear=not args.no_nonwear,
        unknown=not args.no_unknown, distilled=args.distilled, cascade=args.cascade,
    )
    print("\n".join(res.summary_lines()))
    return 1 if res.count("failed") else 0
