"""`zerohar classify`: name the activities of a recording with any label text (zero-shot)."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="RUN", help="a finished Stage II run directory")
    p.add_argument("--input", required=True, metavar="FILE",
                   help="the recording: CSV (time column + channel columns), .npy (T, C) or .npz (signals, time)")
    cands = p.add_mutually_exclusive_group(required=True)
    cands.add_argument("--labels", nargs="+", metavar="LABEL", help="candidate activity labels (at least two)")
    cands.add_argument("--labels-file", metavar="F",
                       help="one label per line, or a label-description JSON (as `zerohar describe` writes)")
    cands.add_argument("--index", metavar="DIR", help="a label index built by `zerohar index` for this model")
    p.add_argument("--layout", metavar="FILE.yaml", help="sensor layout of the input (format of metadata/sensors/)")
    p.add_argument("--placement", help="instead of --layout: where every sensor is worn (e.g. 'left wrist')")
    p.add_argument("--device", help="instead of --layout: the device (e.g. smartwatch)")
    p.add_argument("--rate", type=float, help="sampling rate in Hz of a .npy / .npz input without times")
    p.add_argument("--describe", action="store_true",
                   help="ask an LLM for descriptions of labels that have none (else a name template is used)")
    p.add_argument("--llm-model", metavar="M", help="LLM for --describe (e.g. gpt-4o-mini, llama3.1:8b)")
    p.add_argument("--base-url", metavar="URL", help="OpenAI-compatible server for --describe")
    p.add_argument("--top-k", type=int, default=3, help="labels per window in the output (default 3)")
    p.add_argument("--step", type=float, metavar="SECONDS",
                   help="seconds between window starts, at most one window (default: half a window, 2.5 s for "
                   "5 s windows; --step 5 halves the work on long recordings)")
    p.add_argument("--batch-size", type=int, default=256, help="windows per forward pass (default 256)")
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                   help="inference precision: auto = bf16 on CPUs with native bf16 (default), fp32 to force it")
    p.add_argument("--out", required=True, metavar="FILE.csv", help="output table (.csv, or .parquet with pyarrow)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from zerohar.inference.classify import classify_recording

    res = classify_recording(
        args.model, args.input, args.out, labels=args.labels, labels_file=args.labels_file, index_dir=args.index,
        layout=args.layout, placement=args.placement, device=args.device, rate=args.rate, describe=args.describe,
        llm_model=args.llm_model, base_url=args.base_url, top_k=args.top_k, step_s=args.step,
        batch_size=args.batch_size, precision=args.precision, force=args.force, progress=not args.no_progress,
    )
    print(f"{res.n_windows} windows of {res.window_s:g} s (step {res.step_s:g} s) -> {res.out}")
    print("\n".join(res.summary_lines()))
    return 0
