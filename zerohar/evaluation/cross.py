"""Cross-dataset zero-shot evaluation: a model names the windows of a dataset it never trained on, with every
class of that dataset a candidate (the UniMTS protocol: all classes unseen).

`zerohar eval --run RUN --dataset X --candidates all` (or `--data X.npz`; without `--run`, the shipped general
model). The label texts are the target's own: its descriptions file (`--descriptions`, else the shipped file of
the dataset, else any shipped file, else name templates), or `--label-text names` (each label's name alone).
A model whose provenance says it trained on any window of the target is refused: its number would not be
cross-dataset.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from pathlib import Path

import numpy as np

from zerohar.config import STAGES, merge_settings, resolve_config
from zerohar.data.prepare import load_windowset
from zerohar.data.streaming import match_layout
from zerohar.errors import ZeroharError
from zerohar.evaluation.benchmark import chance_metrics
from zerohar.evaluation.metrics import confusion_figure, zero_shot_report
from zerohar.inference.embed import embed_windows
from zerohar.inference.index import LabelIndex
from zerohar.io import atomic_write_json, atomic_write_text, check_writable
from zerohar.text.encoder import get_text_encoder
from zerohar.text.label_rule import label_texts
from zerohar.train.loop import train_stage
from zerohar.train.provenance import data_key, saw_of
from zerohar.train.runs import is_finished, load_run, use_distilled

logger = logging.getLogger(__name__)

#: Bumped when the cross-dataset evaluation changes.
CROSS_EVAL_VERSION = 1
LABEL_TEXT_MODES = ("descriptions", "names")


def evaluate_cross(
    run_dir: str | Path,
    out: str | Path | None = None,
    *,
    dataset: str | None = None,
    data: str | None = None,
    root: str | None = None,
    descriptions: str | None = None,
    label_text: str = "descriptions",
    batch_size: int = 256,
    precision: str = "fp32",
    force: bool = False,
    progress: bool = True,
    run=None,
    distilled: bool = False,
) -> dict:
    """Name every labelled window of `dataset` (or the window set `data`) among all of its classes.

    Args:
        run_dir: a finished Stage II run (or the shipped general model's folder).
        out: output folder (default `RUN/eval-<target>`): `metrics.json`, `confusion.png`.
        dataset / data / root: the target windows (see :func:`zerohar.data.prepare.load_windowset`).
        descriptions: the target's label descriptions JSON (default: its shipped file, if any).
        label_text: "descriptions" (default) or "names" (each label's name is its only text).
        batch_size, precision: the inference path; fp32 by default so a score does not depend on the CPU.
        force: overwrite an existing evaluation.
        progress: progress bars.
        run: an already loaded :class:`zerohar.train.runs.Run`.
        distilled: embed with the run's distilled backbone (`zerohar distill`); what it was distilled on counts
            as seen too. Default output `RUN/eval-<target>-distilled`.

    Returns:
        The metrics written to `metrics.json` (the report of
        :func:`zerohar.evaluation.metrics.zero_shot_report`, plus `run`, `target`, `label_text`).
    """
    if (dataset is None) == (data is None):
        raise ZeroharError("give the target windows one way: --dataset NAME or --data FILE.npz")
    if label_text not in LABEL_TEXT_MODES:
        raise ZeroharError(f"--label-text must be one of {', '.join(LABEL_TEXT_MODES)}, found {label_text!r}")
    run = run or load_run(run_dir, distilled=distilled)
    if distilled and run.distilled is None:
        use_distilled(run)
    if run.model is None:
        raise ZeroharError(f"run {run.path} is a {run.stage} run; cross-dataset evaluation needs a Stage II model")
    key = data_key(dataset, data)
    target = dataset or Path(data).stem
    out = Path(out) if out is not None else Path(run.path) / f"eval-{target}{'-distilled' if distilled else ''}"
    if (out / "metrics.json").exists() and not force:
        raise ZeroharError(f"{out / 'metrics.json'} already exists; pass --force to overwrite it")
    check_writable(out / "metrics.json", "evaluation output")
    # The student's record merges the run's `saw` with what it was distilled on.
    saw = ((run.distilled or {}).get("saw") if distilled else None) or run.meta.get("saw") or {}
    if key in saw:
        subs = [str(x) for x in saw[key].get("subjects", [])]
        raise ZeroharError(
            f"run {run.path} trained on {key}'s windows (subjects {', '.join(subs[:5])}"
            f"{', ...' if len(subs) > 5 else ''}): a cross-dataset score needs a model that never saw {key}; "
            "use `zerohar eval --run RUN` for its within-dataset folds"
        )
    t0 = time.perf_counter()
    ws = load_windowset(dataset, root=root, data=data, window_s=run.window_s)
    ws = ws.subset(ws.y >= 0)
    if len(ws) == 0:
        raise ZeroharError(f"{target} has no labelled windows to evaluate")
    counts = ws.class_counts()
    classes = [c for c in ws.class_names if counts.get(c, 0) > 0]
    if len(classes) < 2:
        raise ZeroharError(f"{target} has windows of {len(classes)} class(es); zero-shot needs at least 2")
    keep, used = match_layout(run.layout, ws.layout.canonical(), target, several=bool(run.meta.get("sources")))
    X = ws.X[:, keep]
    if label_text == "names":
        texts = {c: [c] for c in classes}
    else:
        texts = label_texts(classes, label_text=run.config.train.label_text, descriptions=descriptions,
                            dataset=dataset)
    enc = get_text_encoder(run.text_encoder)
    index = LabelIndex.build(run.model, texts, enc, progress=None if progress else False)
    model = run.window_model if distilled else run.model  # the distilled backbone only if asked for
    emb = np.asarray(embed_windows(model, X, used, batch_size=batch_size, precision=precision,
                                   progress=progress), dtype=np.float32)
    _, top = index.search(emb, k=min(3, len(classes)), candidates=classes)
    report = zero_shot_report(ws.y, top, classes, list(ws.class_names))
    metrics = dict(report)
    metrics["protocol"] = "cross-dataset"
    metrics["target"] = {"dataset": dataset, "data": data, "windows": int(len(ws)),
                         "subjects": int(len(set(ws.subject.tolist()))),
                         "sensors": [f"{s.sensor} at {s.placement} ({s.device})" for s in used.sensors]}
    metrics["label_text"] = label_text
    metrics["descriptions"] = descriptions
    metrics["run"] = {"path": str(run.path), "stage": run.stage, "dataset": run.dataset,
                      "sources": [s.get("name") for s in run.meta.get("sources", [])] or [run.dataset],
                      "saw": sorted(saw), "transductive_init": list(run.meta.get("transductive_init") or [])}
    metrics["precision"] = precision
    metrics["backbone"] = run.backbone_info() if distilled else {"kind": "trained"}
    metrics["eval_time_s"] = time.perf_counter() - t0
    metrics["eval_version"] = CROSS_EVAL_VERSION
    out.mkdir(parents=True, exist_ok=True)
    confusion_figure(report["confusion_matrix"], report["class_order"], out / "confusion.png",
                     title=f"{target}, every class unseen (acc {report['accuracy']:.2f})")
    atomic_write_json(out / "metrics.json", metrics)
    logger.info("%s on %s (cross-dataset, %d classes): accuracy %.3f, macro-F1 %.3f (chance %.3f) -> %s",
                run.path, target, len(classes), report["accuracy"], report["macro_f1"], report["chance"], out)
    return metrics


def format_cross(m: dict) -> str:
    """Two lines for the terminal."""
    return (f"{m['target']['dataset'] or m['target']['data']}: every class a candidate ({len(m['class_order'])}; "
            f"{m['n_windows']} windows, label text: {m['label_text']})\n"
            f"accuracy {m['accuracy']:.3f}  macro-F1 {m['macro_f1']:.3f}  top-2 {m['top2_accuracy']:.3f}  "
            f"chance {m['chance']:.3f}")


# ---------------------------------------------------------------------------------------------- the protocol
#: The rows of the cross-dataset table, in order (see :func:`benchmark_cross`).
CROSS_METHODS = {
    "chance": "chance (uniform guessing)",
    "zerohar": "zerohar cross-dataset (Stage I + Stage II on the other datasets)",
    "no_stage1": "zerohar cross-dataset without Stage I",
    "label_names": "zerohar cross-dataset, label names instead of descriptions (same model)",
    "within": "zerohar within-dataset (fold mean, from eval/results)",
    "supervised": "supervised upper bound (within-dataset, from eval/results)",
}
CROSS_COLUMNS = ("accuracy", "macro_f1", "top2_accuracy")


def _is_file(name: str) -> bool:
    return name.endswith(".npz")


def _sources(names: list[str], roots: dict[str, str | None]) -> list[dict]:
    return [{"data": n} if _is_file(n) else {"dataset": n, **({"root": roots[n]} if roots.get(n) else {})}
            for n in names]


def _target(name: str) -> str:
    return Path(name).stem if _is_file(name) else name


def _within_rows(results_dir: Path, dataset: str) -> dict[str, dict]:
    """The within-dataset figures of `eval/results/<dataset>/results.csv` (zerohar and supervised), if any."""
    f = results_dir / dataset / "results.csv"
    out: dict[str, dict] = {}
    if not f.is_file():
        return out
    with open(f, newline="") as fh:
        for row in csv.DictReader(fh):
            m = {"zerohar": "within", "supervised": "supervised"}.get(row.get("method", ""))
            if m:
                out[m] = {c: float(row[f"{c}_mean"]) for c in CROSS_COLUMNS if row.get(f"{c}_mean") not in (None, "")}
                out[m]["source"] = str(f)
    return out


def benchmark_cross(
    datasets: list[str],
    out: str | Path,
    *,
    roots: dict[str, str | None] | None = None,
    targets: list[str] | None = None,
    seeds: int = 3,
    sets: dict | None = None,
    results_dir: str | Path | None = None,
    batch_size: int = 256,
    precision: str = "fp32",
    progress: bool = True,
    command: str = "",
    backbone_init: str | Path | None = None,
    methods: list[str] | None = None,
) -> list[dict]:
    """The cross-dataset protocol: for each target X of `datasets`, train on all the others (every class of
    each), then name X's windows with all of X's classes as candidates; `seeds` seeds.

    Per target and seed: Stage I then Stage II on the others (`zerohar`), Stage II alone (`no_stage1`), and the
    `zerohar` model read with label names instead of descriptions (`label_names`: what descriptions add at the
    target). The within-dataset zero-shot figure (mean over folds) and the supervised upper bound come from
    the within-dataset benchmark tables in `results_dir` (default `eval/results` of the working folder), when
    there.

    Args:
        datasets: at least two dataset names (or `.npz` window sets written by `zerohar prepare`).
        out: the benchmark folder (resumable: finished runs are reused); results.md, results.csv, runs.csv.
        roots: dataset -> raw folder (default: the data layer's default for each).
        targets: the datasets to test on, in this order (default: every one of `datasets`); each is still
            trained on all the other `datasets`.
        seeds: seeds per target (0 .. seeds - 1).
        sets: config overrides for every stage, or per stage (`{"stage2": {"train": {...}}}`).
        batch_size, precision: the evaluations' inference path.
        progress: progress bars.
        command: the command line, recorded in results.md.
        backbone_init: the HARNet backbone of every run (Stage I's start, and Stage II's without Stage I): a
            pretrain run or a released file; None = random. A backbone whose provenance says it saw a target is
            refused for that target before any training.
        methods: the trained rows to run, of ``zerohar`` (with its ``label_names`` reading and ``chance``) and
            ``no_stage1``; default both.

    Raises:
        ZeroharError: bad datasets or targets, or a backbone that saw a target.
    """
    if len(datasets) < 2:
        raise ZeroharError("the cross-dataset protocol needs at least two datasets (train on the others, test on one)")
    targets = list(datasets) if targets is None else list(targets)
    bad = [t for t in targets if t not in datasets]
    if bad:
        raise ZeroharError(f"targets {bad} are not among the datasets {datasets}")
    trained = ("zerohar", "no_stage1")
    methods = list(trained) if methods is None else list(methods)
    if not methods or any(m not in trained for m in methods):
        raise ZeroharError(f"cross-dataset --methods must be among {', '.join(trained)} (chance and label names "
                           f"come with zerohar), found {', '.join(methods) or 'none'}")
    if backbone_init is not None:
        seen = sorted(set(saw_of(backbone_init) or {}) & set(targets))
        if seen:
            raise ZeroharError(f"the backbone {backbone_init} was pretrained on {', '.join(seen)}, a target: a "
                               "cross-dataset score needs a backbone that never saw the target (pretrain on the "
                               "other datasets only)")
    roots = roots or {}
    sets = sets or {}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results_dir = Path(results_dir) if results_dir is not None else Path("eval") / "results"
    common = {k: v for k, v in sets.items() if k not in STAGES}
    rows: list[dict] = []
    run_seconds: dict[str, float] = {}  # each run's own wall time (whichever invocation trained it)
    t_all = time.perf_counter()

    def train(stage: str, srcs: list[dict], seed: int, where: Path, init: Path | None) -> Path:
        over = merge_settings({"data": {"sources": srcs}, "train": {"seed": seed}}, common)
        if init is not None:
            over["init"] = str(init)
        elif backbone_init is not None:  # Stage I starts from the backbone; Stage II without Stage I too
            over["init" if stage == "stage1" else "backbone_init"] = str(backbone_init)
        cfg = resolve_config(stage, overrides=merge_settings(over, sets.get(stage) or {}))
        if not is_finished(where):
            train_stage(stage, cfg, where, resume=True, progress=progress)  # an unfinished run continues
        return where

    for target in targets:
        others = [d for d in datasets if d != target]
        srcs = _sources(others, roots)
        for seed in range(seeds):
            base = out / "runs" / _target(target) / f"seed{seed}"
            runs = {}
            if "zerohar" in methods:
                s1 = train("stage1", srcs, seed, base / "stage1", None)
                runs["zerohar"] = train("stage2", srcs, seed, base / "stage2", s1)
            if "no_stage1" in methods:
                runs["no_stage1"] = train("stage2", srcs, seed, base / "stage2-no-stage1", None)
            for method, run_dir in runs.items():
                modes = ["descriptions", "names"] if method == "zerohar" else ["descriptions"]
                for mode in modes:
                    ev = run_dir / f"eval-{_target(target)}-{mode}"
                    if (ev / "metrics.json").is_file():
                        m = json.loads((ev / "metrics.json").read_text())
                    else:
                        file = _is_file(target)
                        m = evaluate_cross(run_dir, ev, dataset=None if file else target,
                                           data=target if file else None, root=roots.get(target), label_text=mode,
                                           batch_size=batch_size, precision=precision, progress=progress)
                    name = "label_names" if mode == "names" else method
                    rows.append({"target": _target(target), "method": name, "seed": seed, "run": str(run_dir),
                                 **{c: m[c] for c in CROSS_COLUMNS}, "chance": m["chance"],
                                 "classes": len(m["class_order"]), "windows": m["n_windows"]})
                    if method == "zerohar" and mode == "descriptions":
                        support = [m["per_class"][c]["support"] for c in m["class_order"]]
                        ch = chance_metrics(np.repeat(np.arange(len(support)), support), len(support),
                                            len(support))  # uniform guessing, in expectation
                        rows.append({"target": _target(target), "method": "chance", "seed": seed, "run": "",
                                     "accuracy": ch["accuracy"], "macro_f1": ch["macro_f1"],
                                     "top2_accuracy": ch["top2_accuracy"], "chance": m["chance"],
                                     "classes": len(m["class_order"]), "windows": m["n_windows"]})
                    try:
                        run_seconds[str(run_dir)] = float(json.loads((run_dir / "metrics.json").read_text())
                                                          ["timing"]["wall_time_s"])
                        s1_file = base / "stage1" / "metrics.json"
                        run_seconds[str(s1_file)] = float(json.loads(s1_file.read_text())["timing"]["wall_time_s"])
                    except (OSError, ValueError, KeyError, TypeError):
                        pass
    agg = []
    for target in map(_target, targets):
        within = _within_rows(results_dir, target)
        for method in CROSS_METHODS:
            if method in ("within", "supervised"):
                w = within.get(method)
                agg.append({"target": target, "method": method, "runs": 0, "source": (w or {}).get("source"),
                            **{f"{c}_mean": (w or {}).get(c) for c in CROSS_COLUMNS},
                            **{f"{c}_std": None for c in CROSS_COLUMNS}})
                continue
            mine = [r for r in rows if r["target"] == target and r["method"] == method]
            a = {"target": target, "method": method, "runs": len(mine)}
            for c in CROSS_COLUMNS:
                vals = [r[c] for r in mine if r[c] is not None]
                a[f"{c}_mean"] = float(np.mean(vals)) if vals else None
                a[f"{c}_std"] = float(np.std(vals)) if vals else None
            agg.append(a)
    header = {"command": command, "datasets": [_target(d) for d in datasets], "targets": [_target(d) for d in targets],
              "seeds": seeds, "wall_time_s": time.perf_counter() - t_all, "train_time_s": sum(run_seconds.values())}
    atomic_write_text(out / "results.md", cross_markdown(agg, header))
    atomic_write_text(out / "results.csv", _csv(agg, ["target", "method", "runs"]
                                                + [f"{c}_{s}" for c in CROSS_COLUMNS for s in ("mean", "std")]))
    atomic_write_text(out / "runs.csv", _csv(rows, ["target", "method", "seed", *CROSS_COLUMNS, "chance", "classes",
                                                    "windows", "run"]))
    return agg


def _csv(rows: list[dict], cols: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in cols})
    return buf.getvalue()


def cross_markdown(agg: list[dict], header: dict) -> str:
    """The table of :func:`benchmark_cross`: one block per target dataset."""

    def pm(a: dict, c: str) -> str:
        m, s = a.get(f"{c}_mean"), a.get(f"{c}_std")
        if m is None:
            return "n/a"
        return f"{m:.3f}" if s is None or a.get("runs", 0) < 2 else f"{m:.3f} ± {s:.3f}"

    lines = ["# Cross-dataset zero-shot (every class of the target unseen)", "",
             f"Command: `{header.get('command', '')}`", "",
             f"Datasets: {', '.join(header['datasets'])}; {header['seeds']} seed(s); for each target, the model "
             "trained on all the other datasets names the target's windows among all of its classes. Training "
             f"time of the runs {header.get('train_time_s', 0) / 60:.0f} min (their own wall times); this "
             f"invocation {header['wall_time_s'] / 60:.1f} min. Chance: uniform guessing among the target's "
             "classes, in expectation (macro-F1 from the classes' prevalences).", ""]
    for target in header.get("targets", header["datasets"]):
        lines += [f"## {target}", "", "| method | accuracy | macro-F1 | top-2 | runs |", "|---|---|---|---|---|"]
        for a in agg:
            if a["target"] == target:
                runs = a["runs"] if a["method"] not in ("within", "supervised") else "table"
                lines.append(f"| {CROSS_METHODS[a['method']]} | {pm(a, 'accuracy')} | {pm(a, 'macro_f1')} | "
                             f"{pm(a, 'top2_accuracy')} | {runs} |")
        lines.append("")
    return "\n".join(lines)
