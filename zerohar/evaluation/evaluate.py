"""Zero-shot evaluation of one trained run (`zerohar eval`, `eval/zeroshot.py`), by the protocol of BENCHMARK.md.

- Zero-shot: every window of the fold's unseen classes, candidates = the unseen classes.
- Generalised zero-shot (GZSL): candidates = every class; test = the windows of the seen classes from the run's
  *test* subjects (read from its metadata: never trained or selected on, `zerohar.data.splits`) + every unseen
  window. The calibrated-stacking margin is chosen on those test seen-class windows, cross-fitted between two
  groups of them (:func:`zerohar.evaluation.metrics.calibration_groups`), never on an unseen-class window. A run
  without test subjects (too few subjects) reports both as not measured; validation subjects, which chose the
  checkpoint, are never used instead.
- `test_subjects`: the zero-shot metrics again, on the unseen-class windows of the test subjects only (or of the
  subjects given), the windows a supervised upper bound is scored on, so the two compare.
- A supervised upper-bound run (trained on every class) is tested on its held-out *test* subjects only.

Every id is in the dataset's class ordering (its folds file), for targets and predictions alike. The label
texts follow the run's config (its descriptions file, or label names for a run trained on names).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from zerohar.data.prepare import load_windowset
from zerohar.errors import ZeroharError
from zerohar.evaluation.metrics import (
    calibrated_gzsl,
    calibration_groups,
    confusion_figure,
    gzsl_report,
    ids_of,
    zero_shot_report,
)
from zerohar.inference.cascade import CheckedStream
from zerohar.inference.embed import embed_windows
from zerohar.inference.index import LabelIndex
from zerohar.io import atomic_write_json, check_writable
from zerohar.text.encoder import get_text_encoder
from zerohar.train.runs import load_run, use_distilled

logger = logging.getLogger(__name__)

#: The first keys of metrics.json, in this order (what a reader looks at first).
HEADLINE = ("accuracy", "macro_f1", "top2_accuracy", "chance")
#: Written into metrics.json; bumped when the evaluation changes, so `zerohar benchmark` re-evaluates older ones.
#: 2: `gzsl_calibrated` (calibrated stacking). 3: fp32 by default; `precision`, `run.transductive_init` recorded.
#: 4: GZSL seen accuracy and the calibration margin on the test subjects (no longer the validation subjects);
#: the `test_subjects` block; `run.unseen_windows` (was `run.test_subjects`) and `run.subjects`.
EVAL_VERSION = 4


def load_eval_windows(run, *, root: str | None = None, data: str | None = None):
    """The labelled windows of a run's dataset (same source, window length and subject restriction).

    Returns:
        A WindowSet with `y >= 0` only, whose class ordering equals the run's.
    """
    cfg = run.config.data
    ws = load_windowset(
        cfg.dataset if (data or cfg.data) is None else None,
        root=root if root is not None else cfg.root,
        data=data if data is not None else cfg.data,
        window_s=run.window_s,
    )
    if run.classes and list(ws.class_names) != run.classes:
        raise ZeroharError(
            f"the windows of {cfg.dataset or cfg.data} have classes {ws.class_names}, but run {run.path} was trained "
            f"with the ordering {run.classes}"
        )
    mask = ws.y >= 0
    if cfg.subjects:
        mask &= np.isin(ws.subject, [str(s) for s in cfg.subjects])
    return ws.subset(mask)


def evaluate_run(
    run_dir: str | Path,
    out: str | Path | None = None,
    *,
    root: str | None = None,
    data: str | None = None,
    batch_size: int = 256,
    precision: str = "fp32",
    force: bool = False,
    progress: bool = True,
    run=None,
    subjects: list[str] | None = None,
    distilled: bool = False,
    cascade: bool = False,
) -> dict:
    """Evaluate a finished Stage II (or supervised) run and write `metrics.json` + `confusion.png`.

    Args:
        run_dir: the run directory.
        out: output directory (default `RUN/eval`); an existing `metrics.json` there is kept unless `force`.
        root, data: read the dataset from another raw folder / a prepared window set than the run's config.
        batch_size, precision: the inference path (`zerohar.inference.embed.embed_windows`); fp32 by default,
            so that a score does not depend on the CPU that computed it.
        force: overwrite an existing evaluation.
        progress: progress bars.
        run: an already loaded :class:`zerohar.train.runs.Run`.
        subjects: the subjects of the `test_subjects` block (default: the run's test subjects); the benchmark
            gives every method the supervised bound's test subjects. A supervised run can only be scored on its
            own test subjects.
        distilled: embed the windows with the run's distilled backbone (`RUN/distilled/`, `zerohar distill`)
            instead of its own, every other part of the model unchanged; default output `RUN/eval-distilled`.
        cascade: `classify --cascade` per decision (:class:`zerohar.inference.cascade.CheckedStream`): the
            distilled backbone on every window, the run's own again where the student's error could change the
            decision; the zero-shot windows and the GZSL windows are each a stream in the data's order, with the
            bounds of their own candidates; default output `RUN/eval-cascade`; `metrics.json` records the shares
            checked again.

    Returns:
        The metrics dict written to `metrics.json`.
    """
    run_dir = Path(run_dir)
    if distilled and cascade:
        raise ZeroharError("give --distilled (the student on every window) or --cascade (the student, checked by "
                           "the run's own backbone), not both")
    out = Path(out) if out is not None else run_dir / default_out(distilled, cascade)
    if (out / "metrics.json").exists() and not force:
        raise ZeroharError(f"{out / 'metrics.json'} already exists; pass --force to overwrite it")
    check_writable(out / "metrics.json", "evaluation output")
    student = distilled or cascade
    run = run or load_run(run_dir, distilled=student)
    if student and run.distilled is None:
        use_distilled(run)
    if run.stage not in ("stage2", "supervised") or run.model is None:
        raise ZeroharError(
            f"run {run.path} is a {run.stage} run; zero-shot evaluation needs a Stage II (or supervised) run"
        )
    if not run.unseen:
        raise ZeroharError(f"run {run.path} names no unseen classes (its fold); nothing to evaluate zero-shot")
    t0 = time.perf_counter()
    ws = load_eval_windows(run, root=root, data=data)
    classes = list(ws.class_names)
    unseen, seen = run.unseen, [c for c in classes if c not in set(run.unseen)]
    unseen_ids, seen_ids = ids_of(unseen, classes), ids_of(seen, classes)
    split = run.subjects
    test_subjects = sorted(str(x) for x in split.get("test", []))
    supervised = run.stage == "supervised"
    in_test = np.isin(ws.subject, test_subjects)
    if supervised:
        # The upper bound saw every class in training: only its held-out test subjects are fair test data.
        if not test_subjects:
            raise ZeroharError(f"supervised run {run.path} records no held-out test subjects in its model.json")
        zs_mask = in_test & np.isin(ws.y, unseen_ids)
    else:
        zs_mask = np.isin(ws.y, unseen_ids)
    # GZSL's seen side and the calibration margin: test subjects only (validation subjects chose the checkpoint).
    gz_seen_mask = in_test & np.isin(ws.y, seen_ids)
    report_subjects = test_subjects if subjects is None else sorted({str(x) for x in subjects})
    if supervised and set(report_subjects) - set(test_subjects):
        raise ZeroharError(
            f"supervised run {run.path} trained on subjects {sorted(set(report_subjects) - set(test_subjects))}; "
            f"it can only be scored on its test subjects {test_subjects}"
        )
    if not zs_mask.any():
        raise ZeroharError(f"the data of run {run.path} has no windows of its unseen classes {unseen}")
    need = zs_mask | gz_seen_mask
    idx = np.flatnonzero(need)
    logger.info("embedding %d windows (%d unseen-class, %d held-out seen-class)", len(idx), zs_mask.sum(),
                gz_seen_mask.sum())
    model = run.window_model if student else run.model  # the distilled backbone only if asked for

    def embed(m, rows, bar=progress):
        return np.asarray(embed_windows(m, ws.X[rows], ws.layout, batch_size=batch_size, precision=precision,
                                        progress=bar), dtype=np.float32)  # (n, E)

    emb = embed(model, idx)
    pos = np.full(len(ws), -1)
    pos[idx] = np.arange(len(idx))

    index = LabelIndex.build(run.model, run.label_texts(classes), get_text_encoder(run.text_encoder),
                             progress=None if progress else False)
    checked = {}

    def decision(mask, candidates, name) -> np.ndarray:
        """The embeddings of one decision's windows: the model's, or with `cascade` the checked student's."""
        e = emb[pos[np.flatnonzero(mask)]]
        if not cascade:
            return e
        rows = np.flatnonzero(mask)
        e, stream = CheckedStream.run_in_order(e, lambda r: embed(run.model, rows[r], False),
                                               index.prototypes[index.label_ids(candidates)])
        checked[name] = stream.record()
        return e

    # Zero-shot: unseen windows, unseen candidates (in the fold's order: the report re-orders by class ids).
    _, top = index.search(decision(zs_mask, unseen, "zero_shot"), k=min(3, len(unseen)), candidates=unseen)
    report = zero_shot_report(ws.y[zs_mask], top, unseen, classes)
    on_subjects = None
    mine = np.isin(ws.subject[zs_mask], report_subjects)  # rows of `top`
    if mine.any():
        r = zero_shot_report(ws.y[zs_mask][mine], top[mine], unseen, classes)
        on_subjects = {"subjects": report_subjects, "given": subjects is not None,
                       **{k: r[k] for k in (*HEADLINE, "n_windows")},
                       "support": {c: r["per_class"][c]["support"] for c in r["class_order"]}}
    # Generalised zero-shot: every class is a candidate.
    s_all, top_all = index.search(decision(need, classes, "gzsl"), k=len(classes), candidates=classes)
    top_ids = ids_of(top_all, classes)  # (n, C), best first
    gz = gzsl_report(ws.y[need], top_ids[:, 0], seen_ids, unseen_ids)
    gz_cal, note = None, None
    if gz_seen_mask.any():
        scores = np.empty(top_ids.shape, np.float32)  # (n, C) in the class ordering
        np.put_along_axis(scores, top_ids, s_all, axis=1)
        # Calibration windows: the test subjects' seen-class windows, in two cross-fitting groups (by subject).
        calib = gz_seen_mask[need]
        groups, groups_by = calibration_groups(ws.subject[need][calib], ws.recording[need][calib],
                                               ws.start[need][calib])
        group = np.full(int(need.sum()), -1)
        group[calib] = groups
        gz_cal = calibrated_gzsl(scores, ws.y[need], seen_ids, unseen_ids, group)
        gz_cal["groups_by"] = groups_by
    else:
        note = (f"run {run.path} records no test subjects (too few subjects for three groups, or trained before "
                "zero-shot runs held out test subjects)" if not test_subjects
                else f"the test subjects {test_subjects} of run {run.path} have no windows of the seen classes")
        note += ": GZSL seen accuracy and the calibration margin are not measured"
        logger.warning("%s", note)
        gz.update(seen_accuracy=None, harmonic_mean=None)

    metrics = {k: report[k] for k in HEADLINE}
    metrics.update({k: v for k, v in report.items() if k not in HEADLINE})
    metrics["gzsl"] = gz
    metrics["gzsl_calibrated"] = gz_cal
    metrics["gzsl_note"] = note
    metrics["test_subjects"] = on_subjects
    metrics["run"] = {
        "path": str(run.path), "stage": run.stage, "dataset": run.dataset, "fold": run.fold,
        "unseen": unseen, "seen": seen, "label_text": run.config.train.label_text,
        # whose unseen-class windows the headline metrics score
        "unseen_windows": "test subjects" if supervised else "all subjects",
        "subjects": {k: sorted(map(str, split.get(k, []))) for k in ("train", "val", "test")},
        "gzsl_seen_subjects": sorted(set(ws.subject[gz_seen_mask].tolist())),
        # what --allow-transductive-init let in (the init saw unseen classes or test subjects); [] for none
        "transductive_init": list(run.meta.get("transductive_init") or []),
    }
    metrics["precision"] = precision
    metrics["backbone"] = run.backbone_info() if student else {"kind": "trained"}
    metrics["cascade"] = checked or None
    metrics["eval_time_s"] = time.perf_counter() - t0
    metrics["eval_version"] = EVAL_VERSION
    out.mkdir(parents=True, exist_ok=True)
    title = f"{run.dataset or 'data'} {run.fold or ''}: unseen classes (acc {report['accuracy']:.2f})"
    confusion_figure(report["confusion_matrix"], report["class_order"], out / "confusion.png", title=title)
    atomic_write_json(out / "metrics.json", metrics)
    logger.info(
        "%s: unseen accuracy %.3f, macro-F1 %.3f (chance %.3f) -> %s", run.path, report["accuracy"],
        report["macro_f1"], report["chance"], out,
    )
    return metrics


def default_out(distilled: bool = False, cascade: bool = False) -> str:
    """The folder of a run's evaluation: `eval`, `eval-distilled` or `eval-cascade`."""
    return "eval-distilled" if distilled else "eval-cascade" if cascade else "eval"


def format_metrics(m: dict) -> str:
    """A few lines for the terminal: the headline numbers and the GZSL harmonic mean."""
    g = m.get("gzsl") or {}

    def f(x):
        return "n/a" if x is None else f"{x:.3f}"

    lines = [
        f"unseen classes: {', '.join(m['class_order'])} ({m['n_windows']} windows)",
        f"accuracy {f(m['accuracy'])}  macro-F1 {f(m['macro_f1'])}  top-2 {f(m['top2_accuracy'])}  "
        f"chance {f(m['chance'])}",
        f"GZSL: seen {f(g.get('seen_accuracy'))}  unseen {f(g.get('unseen_accuracy'))}  "
        f"harmonic mean {f(g.get('harmonic_mean'))}",
    ]
    c = m.get("gzsl_calibrated")
    if c:
        lines.append(f"GZSL, calibrated stacking (gamma {c['gamma']:.3f}): seen {f(c['seen_accuracy'])}  "
                     f"unseen {f(c['unseen_accuracy'])}  harmonic mean {f(c['harmonic_mean'])}")
    if m.get("gzsl_note"):
        lines.append(f"GZSL: {m['gzsl_note']}")
    t = m.get("test_subjects")
    if t:
        lines.append(f"test subjects {', '.join(t['subjects'])} only ({t['n_windows']} unseen-class windows): "
                     f"accuracy {f(t['accuracy'])}  macro-F1 {f(t['macro_f1'])}")
    for name, c in (m.get("cascade") or {}).items():
        lines.append(f"cascade, {name.replace('_', '-')} decision: the run's own backbone checked "
                     f"{c['checked_windows']} of {c['worn_windows']} windows ({c['checked_share']:.1%})")
    return "\n".join(lines)
