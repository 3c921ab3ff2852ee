"""The "less work per window" options of issue 16, measured for what they cost in accuracy.

For each trained run (a Stage II run of a benchmark fold) every labelled window of the run's dataset is embedded
with the reference path (fp32) and with each option, and the script reports:

- `agree_all`: the share of all labelled windows whose top-1 label among **all** the dataset's classes is the
  same as fp32's (the label `classify` would write with every class on offer);
- `agree_zero_shot`: the same on the unseen-class windows with the fold's unseen classes as candidates (the
  zero-shot decision);
- `macro_f1` / `accuracy`: the fold's zero-shot scores with that option (unseen windows, unseen candidates; the
  computation of `zerohar eval`), next to fp32's.

Options: `int8` (`--precision int8`: the backbone on ONNX Runtime, calibrated on 256 of the windows, as `zerohar
eval --precision int8` does), `distilled` (`--distilled`: the run's student backbone from `zerohar distill`), and
both at once (`distilled-int8`: `--distilled --precision int8`, the student's HARNet on ONNX Runtime), and
`cascade` (`classify --cascade`: the student on every window, the fp32 teacher again on the windows whose label
the student's error could change; the set's windows in order are the stream, as classify runs it: first bounds
from windows spread over its first :data:`~zerohar.inference.embed.CALIBRATION_SPAN`, then the audit of one
window in :data:`~zerohar.inference.cascade.AUDIT_EVERY`; the candidates of each decision make their own bounds,
so the all-class and the zero-shot decisions each report the share checked again, `checked_all` /
`checked_zero_shot`; also reported: the same without the audit (`start_only_no_audit`) and, with bounds from
windows spread over the whole set, other quantiles than the default, `by_quantile_spread_over_set`). The bf16
implementations the plan chooses between, each forced whatever this machine's plan is: `bf16` (the fused
backbone, first layer in fp32), `bf16-all` (fused, every residual block in bf16), `bf16-autocast` (the plain
module under bf16 autocast).
`--step` is an option of recordings, not of window sets: its agreement is measured by classify (README).

    python scripts/less_work.py --run RUN [RUN ...] --options int8 distilled --out eval/results/less-work
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np

from zerohar.evaluation.evaluate import load_eval_windows
from zerohar.evaluation.metrics import ids_of, zero_shot_report
from zerohar.inference import embed
from zerohar.inference.cascade import AUDIT_EVERY, QUANTILE, CheckedStream, calibrate
from zerohar.inference.embed import CALIBRATION_SPAN, calibration_windows, embed_windows
from zerohar.inference.index import LabelIndex
from zerohar.inference.plan import InferencePlan
from zerohar.io import atomic_write_json, atomic_write_text
from zerohar.model.precision import cpu_flags
from zerohar.text.encoder import get_text_encoder
from zerohar.train.runs import load_run

#: The bf16 implementations, each run whatever this machine's plan would pick (:mod:`zerohar.inference.plan`).
BF16_OPTIONS = {"bf16": "fused", "bf16-all": "fused-all", "bf16-autocast": "plain"}


@contextlib.contextmanager
def forced_plan(option: str):
    """For a bf16 option, embed with its implementation (`"plain"` in bf16 is the module under autocast)."""
    if option not in BF16_OPTIONS:
        yield
        return
    plan = InferencePlan("bf16", BF16_OPTIONS[option], 256, "native-bf16", f"{option}, forced by less_work.py")
    with mock.patch.object(embed, "inference_plan", lambda precision, device=None: plan):
        yield


def option_model(run, option: str):
    """(model, precision) of an option: the run's model in fp32, int8 or a bf16 implementation, or with its
    distilled student backbone."""
    if option in ("fp32", "int8"):
        return run.model, option
    if option in BF16_OPTIONS:
        return run.model, "bf16"
    if option in ("distilled", "distilled-int8", "cascade"):
        return load_run(run.path, distilled=True).window_model, "int8" if option.endswith("int8") else "fp32"
    raise SystemExit(f"unknown option {option!r}")


def _checked(index, student, teacher, cands, rows, every=AUDIT_EVERY):
    """`classify --cascade` on windows `rows` taken as one stream in set order (classify's first bounds, then the
    audit of one window in `every`, 0: none). (embeddings, the stream's record)."""
    out, stream = CheckedStream.run_in_order(student[rows], lambda r: teacher[rows[r]],
                                             index.prototypes[index.label_ids(cands)], every=every)
    return out, stream.record()


def _cascade(index, student, teacher, classes, unseen, zs) -> tuple[np.ndarray, dict]:
    """`classify --cascade` on a window set: replaces `student`'s rows in place for the all-class decision and
    returns the zero-shot rows (their own bounds and stream), with the shares checked again, the same without the
    audit (bounds from the start only) and, with bounds from windows spread over the whole set and no audit, at
    other quantiles (`by_quantile_spread_over_set`: agreement with fp32 and share checked, all-class decision)."""
    every = np.arange(len(student))
    ref = index.search(teacher, k=1, candidates=classes)[1][:, 0]

    def agree(e):
        return float(np.mean(index.search(e, k=1, candidates=classes)[1][:, 0] == ref))

    spread = calibration_windows(every)
    P = index.prototypes[index.label_ids(classes)]
    curve = {}
    for q in (0.9, 0.95, 0.99, 0.999, 1.0):
        again = calibrate(student[spread], teacher[spread], P, q).unsure(student @ P.T)
        curve[f"{q:g}"] = {"agree_all": agree(np.where(again[:, None], teacher, student)),
                           "checked_all": float(again.mean())}
    e, rec = _checked(index, student, teacher, classes, every, every=0)
    start_only = {"agree_all": agree(e), "checked_all": rec["checked_share"]}
    e_all, rec_all = _checked(index, student, teacher, classes, every)
    e_zs, rec_zs = _checked(index, student, teacher, unseen, np.flatnonzero(zs))
    student[:] = e_all
    return e_zs, {"checked_all": rec_all["checked_share"], "checked_zero_shot": rec_zs["checked_share"],
                  "quantile": QUANTILE, "audit_every": AUDIT_EVERY, "stream_all": rec_all, "stream_zero_shot": rec_zs,
                  "calibration": f"windows spread over the set's first {CALIBRATION_SPAN} (classify's rule)",
                  "start_only_no_audit": start_only, "by_quantile_spread_over_set": curve}


def measure(run_dir: str, options: list[str], root: str | None) -> dict:
    run = load_run(run_dir)
    ws = load_eval_windows(run, root=root)
    classes = list(ws.class_names)
    unseen = run.unseen
    index = LabelIndex.build(run.model, run.label_texts(classes), get_text_encoder(run.text_encoder), progress=False)
    zs = np.isin(ws.y, ids_of(unseen, classes))
    rows = {}
    ref_all = ref_zs = ref_emb = None
    for option in ["fp32", *options]:
        model, precision = option_model(run, option)
        t0 = time.perf_counter()
        with forced_plan(option):
            emb = np.asarray(embed_windows(model, ws.X, ws.layout, precision=precision), dtype=np.float32)  # (N, E)
        seconds = time.perf_counter() - t0
        extra = {}
        if option == "cascade":  # the fp32 teacher again where the student could change the decision
            emb_zs, extra = _cascade(index, emb, ref_emb, classes, unseen, zs)
        else:
            emb_zs = emb[zs]
        _, top_all = index.search(emb, k=1, candidates=classes)
        _, top_zs = index.search(emb_zs, k=min(3, len(unseen)), candidates=unseen)
        rep = zero_shot_report(ws.y[zs], top_zs, unseen, classes)
        lab_all, lab_zs = np.asarray(top_all)[:, 0], np.asarray(top_zs)[:, 0]
        if option == "fp32":
            ref_all, ref_zs, ref_emb = lab_all, lab_zs, emb
        same = lab_all == ref_all
        rows[option] = {
            "agree_all": float(np.mean(same)), "agree_zero_shot": float(np.mean(lab_zs == ref_zs)),
            "macro_f1": float(rep["macro_f1"]), "accuracy": float(rep["accuracy"]), "embed_seconds": seconds,
            # where an option differs: the share of each true class's windows keeping fp32's label
            "agree_by_class": {c: float(np.mean(same[ws.y == i])) for i, c in enumerate(classes) if (ws.y == i).any()},
            **extra,
        }
        print(f"{run_dir} {option}: {dict(list(rows[option].items())[:5])}", flush=True)
    return {"run": str(run_dir), "dataset": run.dataset, "fold": run.fold, "windows": int(len(ws)),
            "zero_shot_windows": int(zs.sum()), "unseen": unseen, "options": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", nargs="+", required=True, help="finished Stage II runs (benchmark folds)")
    ap.add_argument("--options", nargs="+", default=["int8"],
                    choices=["int8", "distilled", "distilled-int8", "cascade", *BF16_OPTIONS])
    ap.add_argument("--root", help="the datasets' raw folder, if not the runs' own")
    ap.add_argument("--out", required=True, help="folder for results.json and results.md")
    a = ap.parse_args(argv)
    results = [measure(r, a.options, a.root) for r in a.run]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    flags = cpu_flags()
    atomic_write_json(out / "results.json", {"cpu_flags": flags, "command": " ".join(sys.argv), "runs": results})
    lines = ["| run | option | same label, all windows, all classes | same label, zero-shot | zero-shot macro-F1 "
             "(fp32) | accuracy (fp32) |", "|---|---|---:|---:|---:|---:|"]
    for r in results:
        ref = r["options"]["fp32"]
        for opt, m in r["options"].items():
            if opt == "fp32":
                continue
            lines.append(f"| {r['dataset']} {r['fold']} ({r['windows']} windows) | {opt} | {m['agree_all']:.1%} | "
                         f"{m['agree_zero_shot']:.1%} | {m['macro_f1']:.3f} ({ref['macro_f1']:.3f}) | "
                         f"{m['accuracy']:.3f} ({ref['accuracy']:.3f}) |")
    tail = f"\n\nCPU flags: {flags}. Command: `{' '.join(sys.argv)}`\n"
    atomic_write_text(out / "results.md", "\n".join(lines) + tail)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
