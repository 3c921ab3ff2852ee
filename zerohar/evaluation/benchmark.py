"""Every method of BENCHMARK.md on every fold and seed, from one invocation, into one results table.

`zerohar benchmark --dataset hapt --seeds 3 --out DIR` trains and evaluates each method (below) on each
fold and seed, then writes `DIR/results.md` and `DIR/results.csv` (mean and standard deviation over folds
and seeds of the unseen-class accuracy, macro-F1, top-2 accuracy and the GZSL harmonic mean) and
`DIR/runs.csv` (one row per run). Two more columns score every method on exactly the unseen-class windows of
the supervised bound's test subjects of the same fold and seed (:meth:`_Runner.bound_test_subjects`), the only
windows the bound can fairly be scored on, so the zero-shot rows and the bound compare. Every stage of a fold and
seed holds out the same test subjects (`zerohar.data.splits`), so no run of the table trained or selected on them.
Runs live in `DIR/runs/<method>/<fold>/seed<k>/<step>/`; an identical step
of two methods (e.g. the Stage I run that `zerohar` and `label_names` share) is trained once and referenced
by both. The benchmark is resumable: finished runs and evaluations are reused, unfinished ones resumed.

Methods (BENCHMARK.md, "Methods in the table"):

- ``chance``: 1 / number of candidates (macro-F1: the expected macro-F1 of uniform guessing on the test
  windows, :func:`chance_metrics`);
- ``zerohar``: Stage I + Stage II with LLM label descriptions (backbone: `--backbone-weights`, default random);
- ``no_stage1``: Stage II only, from the same backbone;
- ``label_names``: Stage II trained and evaluated with each label's name as its only text;
- ``random_backbone`` / ``ssl_backbone``: Stage I + Stage II from a random backbone / from a backbone
  pretrained self-supervised on the training windows of the fold's seen classes (no external data here);
- ``original_encoder``: the original ZeroHAR encoder (a transformer over time steps of all channels) in
  the same pipeline (`model.encoder: original`);
- ``supervised``: the upper bound: the same encoder trained with every class's labels on a subject-disjoint
  split, tested on the unseen classes of its held-out test subjects; its Stage I is zerohar's (the same config:
  it holds out the same test subjects), trained once.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from zerohar.config import STAGES, merge_settings, resolve_config
from zerohar.data.folds import load_folds
from zerohar.data.prepare import load_windowset
from zerohar.data.splits import load_stage_data
from zerohar.errors import ZeroharError
from zerohar.evaluation.evaluate import EVAL_VERSION, evaluate_run
from zerohar.io import atomic_write_text, check_writable, load_yaml
from zerohar.train.loop import train_stage
from zerohar.train.runs import is_finished, read_run_meta

logger = logging.getLogger(__name__)

#: method -> row title in the table, in table order.
METHODS = {
    "chance": "chance (1 / candidates)",
    "zerohar": "zerohar (Stage I + Stage II, LLM descriptions)",
    "no_stage1": "zerohar without Stage I",
    "label_names": "zerohar with label names instead of descriptions",
    "random_backbone": "zerohar, random backbone",
    "ssl_backbone": "zerohar, SSL-pretrained backbone",
    "original_encoder": "original ZeroHAR encoder (same pipeline)",
    "supervised": "supervised upper bound (unseen labels in training)",
}
#: The four figures of the table: key in a run's metrics -> column title.
COLUMNS = {
    "accuracy": "unseen acc",
    "macro_f1": "unseen macro-F1",
    "top2_accuracy": "unseen top-2",
    "gzsl_h": "GZSL H",
    "gzsl_h_cal": "GZSL H (calibrated)",
    "test_accuracy": "unseen acc, test subjects",
    "test_macro_f1": "unseen macro-F1, test subjects",
}


@dataclass(frozen=True)
class Step:
    """One training stage of a method: its name in the run directory, the stage, config overrides, init step."""

    name: str
    stage: str
    overrides: dict = field(default_factory=dict)
    init: str | None = None  # the step whose run directory is this step's `init`


def method_steps(method: str, fold: str, backbone_init: str | None) -> list[Step]:
    """The training steps of a method on a fold (the last one is evaluated)."""
    names = {"train": {"label_text": "names"}}
    original = {"model": {"encoder": "original"}}
    s1 = Step("stage1", "stage1", {"init": backbone_init})
    s1_random = Step("stage1", "stage1", {"init": None})
    steps = {
        "zerohar": [s1, Step("stage2", "stage2", {}, "stage1")],
        "no_stage1": [Step("stage2", "stage2", {"init": None, "backbone_init": backbone_init})],
        "label_names": [s1, Step("stage2", "stage2", names, "stage1")],
        "random_backbone": [s1_random, Step("stage2", "stage2", {}, "stage1")],
        "ssl_backbone": [
            # Pretraining sees only the fold's seen-class training windows: no external data exists here.
            Step("pretrain", "pretrain", {"data": {"fold": fold}, "init": None}),
            Step("stage1", "stage1", {}, "pretrain"),
            Step("stage2", "stage2", {}, "stage1"),
        ],
        "original_encoder": [
            Step("stage1", "stage1", {**original, "init": None}),
            Step("stage2", "stage2", original, "stage1"),
        ],
        # The bound's Stage I holds out the bound's test subjects like every stage of the fold and seed (same
        # seed and test fraction: zerohar.data.splits), so it is zerohar's Stage I, trained once.
        "supervised": [s1, Step("supervised", "supervised", {}, "stage1")],
    }
    if method not in steps:
        raise ZeroharError(f"unknown method {method!r}: expected one of {', '.join(METHODS)}")
    return steps[method]


# ---------------------------------------------------------------------------------------------- chance
def chance_metrics(y: np.ndarray, n_unseen: int, n_classes: int) -> dict:
    """Metrics of uniform random guessing among the candidates, in expectation.

    Accuracy 1/n and top-2 2/n by definition; the macro-F1 of a uniform guesser on classes with prevalences
    p_c is the mean of 2 p_c (1/n) / (p_c + 1/n) (precision p_c, recall 1/n); GZSL: 1 / number of classes
    for seen and unseen alike, so H is the same.
    """
    _, counts = np.unique(y, return_counts=True)
    p = counts / counts.sum()
    r = 1.0 / n_unseen
    f1 = float(np.mean(2 * p * r / (p + r)))
    return {"accuracy": r, "macro_f1": f1, "top2_accuracy": min(1.0, 2 * r), "gzsl_h": 1.0 / n_classes,
            "gzsl_h_cal": 1.0 / n_classes, "chance": r}


# ---------------------------------------------------------------------------------------------- aggregation
def aggregate(rows: list[dict], methods: list[str]) -> list[dict]:
    """Mean and standard deviation (ddof 1; 0 for one run) of each column per method, over folds and seeds.

    Args:
        rows: one dict per run with "method" and the keys of :data:`COLUMNS` (None = not available).
        methods: the methods in table order.

    Returns:
        One dict per method: "method", "n_runs", "transductive_init_runs" (runs whose init saw their fold's unseen
        classes or test subjects, allowed by --allow-transductive-init) and "<column>_mean" / "<column>_std"
        (None without values).
    """
    out = []
    for m in methods:
        mine = [r for r in rows if r["method"] == m]
        agg: dict = {"method": m, "n_runs": len(mine),
                     "transductive_init_runs": sum(bool(r.get("transductive_init")) for r in mine)}
        for c in COLUMNS:
            vals = np.array([r[c] for r in mine if r.get(c) is not None and not _isnan(r[c])], dtype=float)
            agg[f"{c}_mean"] = float(vals.mean()) if len(vals) else None
            agg[f"{c}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else (0.0 if len(vals) else None)
        out.append(agg)
    return out


def _isnan(x) -> bool:
    return isinstance(x, float) and math.isnan(x)


def _pm(mean, std) -> str:
    return "n/a" if mean is None else f"{mean:.3f} ± {std:.3f}"


def per_fold(rows: list[dict], methods: list[str], folds: list[str], column: str = "macro_f1") -> list[dict]:
    """`column` per method and fold, mean over seeds: `{"method", fold: (mean, std) or None, ...}`."""
    out = []
    for m in methods:
        row: dict = {"method": m}
        for f in folds:
            vals = [r[column] for r in rows if r["method"] == m and r["fold"] == f and r.get(column) is not None]
            row[f] = (float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0) if vals else None
        out.append(row)
    return out


#: The marker of a method with runs from a transductive init, in results.md.
TRANSDUCTIVE_MARK = " †"


def _title(method: str, agg_row: dict | None) -> str:
    return METHODS.get(method, method) + (TRANSDUCTIVE_MARK if agg_row and agg_row.get("transductive_init_runs")
                                          else "")


def results_markdown(agg: list[dict], header: dict, folds_table: list[dict] | None = None) -> str:
    """The results table in Markdown, with what produced it (and, if given, unseen macro-F1 per fold).

    A method with runs that started from a transductive init (`--allow-transductive-init`) is marked † in both
    tables, and a line under them says how many runs; otherwise a line says that no run did."""
    by_method = {a["method"]: a for a in agg}
    lines = [f"# zerohar benchmark: {header['dataset']}", ""]
    lines.append(
        f"Folds {', '.join(header['folds'])}; seeds {', '.join(map(str, header['seeds']))}; mean ± std over "
        f"folds and seeds ({header['n_runs_per_method']} runs per method). Protocol: BENCHMARK.md."
    )
    lines += ["", f"Command: `{header['command']}`", ""]
    lines.append("| method | " + " | ".join(COLUMNS.values()) + " | runs |")
    lines.append("|---|" + "---|" * len(COLUMNS) + "---|")
    for a in agg:
        cells = [_pm(a[f"{c}_mean"], a[f"{c}_std"]) for c in COLUMNS]
        lines.append(f"| {_title(a['method'], a)} | " + " | ".join(cells) + f" | {a['n_runs']} |")
    if folds_table:
        folds = header["folds"]
        lines += ["", "Unseen macro-F1 per fold (mean ± std over seeds):", ""]
        lines.append("| method | " + " | ".join(folds) + " |")
        lines.append("|---|" + "---|" * len(folds))
        for r in folds_table:
            cells = ["n/a" if r[f] is None else f"{r[f][0]:.3f} ± {r[f][1]:.3f}" for f in folds]
            lines.append(f"| {_title(r['method'], by_method.get(r['method']))} | " + " | ".join(cells) + " |")
    marked = [a for a in agg if a.get("transductive_init_runs")]
    lines.append("")
    if marked:
        lines.append(f"{TRANSDUCTIVE_MARK.strip()} Transductive init (--allow-transductive-init): " + "; ".join(
            f"{a['transductive_init_runs']} of {a['n_runs']} {METHODS.get(a['method'], a['method'])} runs started "
            "from weights that saw their fold's unseen classes or test subjects" for a in marked) + ".")
    else:
        lines.append("No run started from weights that saw its fold's unseen classes or test subjects.")
    notes = header.get("notes") or []
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    compute = header.get("compute_s")
    total = f"training and evaluation of every run {compute / 60:.1f} min (sum of the runs' own wall times, " \
        "whichever invocation ran them); " if compute else ""
    lines += ["", f"Written {header['date']}; {total}this invocation {header['wall_time_s'] / 60:.1f} min.", ""]
    return "\n".join(lines)


def results_csv(agg: list[dict]) -> str:
    """The aggregated table as CSV (one row per method)."""
    buf = io.StringIO()
    cols = ["method", "n_runs"] + [f"{c}_{s}" for c in COLUMNS for s in ("mean", "std")] + ["transductive_init_runs"]
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for a in agg:
        w.writerow({k: ("" if a.get(k) is None else (f"{a[k]:.6f}" if isinstance(a[k], float) else a[k]))
                    for k in cols})
    return buf.getvalue()


def runs_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    cols = ["method", "fold", "seed", *COLUMNS, "chance", "test_subjects", "transductive_init", "run"]
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r[k]) for k in cols})
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------- the benchmark
class _Runner:
    """Trains (or reuses) the steps of every method, sharing identical steps between methods."""

    def __init__(self, out: Path, dataset: str, root: str | None, sets: dict, epochs_scale: float,
                 backbone_init: str | None, progress: bool):
        self.out, self.dataset, self.root = out, dataset, root
        self.sets, self.epochs_scale, self.backbone_init, self.progress = sets, epochs_scale, backbone_init, progress
        self.trained: dict[str, Path] = {}  # config key -> run directory
        self.run_seconds = 0.0  # sum of the runs' own wall times (whichever invocation trained them)
        self._bound_test: dict[tuple[str, int], list[str] | None] = {}

    def bound_test_subjects(self, fold: str, seed: int) -> list[str] | None:
        """The test subjects of the supervised bound of `fold` and `seed` (from its config; nothing is trained),
        or None when its data has too few subjects for them (logged)."""
        if (fold, seed) not in self._bound_test:
            try:
                cfg = self.config(Step("supervised", "supervised"), fold, seed, None, scale=False)  # the split only
                split = load_stage_data(cfg).subjects
                self._bound_test[fold, seed] = sorted(split["test"])
            except ZeroharError as e:
                logger.warning("%s %s seed %d: no test subjects of the supervised bound to compare on: %s",
                               self.dataset, fold, seed, e)
                self._bound_test[fold, seed] = None
        return self._bound_test[fold, seed]

    def config(self, step: Step, fold: str, seed: int, init_dir: Path | None, *, scale: bool = True):
        common = {k: v for k, v in self.sets.items() if k not in STAGES}
        over = merge_settings({"data": {"dataset": self.dataset, "fold": fold}, "train": {"seed": seed}}, common)
        if self.root is not None:
            over = merge_settings(over, {"data": {"root": self.root}})
        over = merge_settings(over, step.overrides)
        if step.init is not None:
            over["init"] = str(init_dir)
        if scale and self.epochs_scale != 1.0:
            over = merge_settings(over, {"train": _scaled_length(resolve_config(step.stage, overrides=over).train,
                                                                 self.epochs_scale, step.stage)})
        # `--set stage1.train.epochs=2`: for one stage only, after --epochs-scale
        return resolve_config(step.stage, overrides=merge_settings(over, self.sets.get(step.stage) or {}))

    def run_steps(self, method: str, fold: str, seed: int, log) -> Path:
        dirs: dict[str, Path] = {}
        for step in method_steps(method, fold, self.backbone_init):
            cfg = self.config(step, fold, seed, dirs.get(step.init))
            key = json.dumps([step.stage, cfg.to_dict()], sort_keys=True, default=str)
            where = self.out / "runs" / method / fold / f"seed{seed}" / step.name
            if key in self.trained:
                dirs[step.name] = self.trained[key]
                log(f"{step.name}: same run as {self.trained[key].relative_to(self.out)}")
                continue
            t0 = time.perf_counter()
            reused = _check_finished(where, cfg)
            train_stage(step.stage, cfg, where, resume=True, progress=self.progress)
            log(f"{step.name}: {'reused finished run' if reused else 'trained'} {where.relative_to(self.out)} "
                f"({time.perf_counter() - t0:.0f} s)")
            self.trained[key] = dirs[step.name] = where
            try:
                self.run_seconds += float(json.loads((where / "metrics.json").read_text())["timing"]["wall_time_s"])
            except (OSError, ValueError, KeyError, TypeError):
                pass
        return dirs[step.name]


def _scaled_length(t, scale: float, stage: str) -> dict:
    """`--epochs-scale`: the stage's `train.epochs`, or in adaptive mode its `train.max_steps`, times `scale`."""
    if t.epochs is not None:
        return {"epochs": max(1, round(t.epochs * scale))}
    if t.max_steps is not None:
        return {"max_steps": max(1, round(t.max_steps * scale))}
    raise ZeroharError(
        f"--epochs-scale scales a length, but {stage}'s length adapts to the data (early stopping); give it one, "
        f"e.g. --set {stage}.train.epochs=2 or --set train.max_steps=500, or leave --epochs-scale out"
    )


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def settings_diff(run_dir: str | Path, cfg) -> list[str]:
    """Config keys (dotted) whose value in `run_dir/config.yaml` differs from `cfg` (thread counts and time
    limits ignored: they do not change what is computed)."""
    saved = _flatten(load_yaml(Path(run_dir) / "config.yaml", "run config", mapping=True))
    want = _flatten(json.loads(json.dumps(cfg.to_dict(), default=str)))
    ignore = {"train.num_workers", "train.max_minutes"}
    return sorted(k for k in set(saved) | set(want) if k not in ignore and saved.get(k) != want.get(k))


def _check_finished(where: Path, cfg) -> bool:
    """True if `where` holds a finished run of this very config; a finished run of other settings is an error.

    (Training would return a finished run as is, so a benchmark re-run with, e.g., another --epochs-scale
    would silently report the old runs under the new command.)
    """
    if not is_finished(where):
        return False
    diff = settings_diff(where, cfg)
    if diff:
        raise ZeroharError(
            f"{where} holds a finished run with other settings ({', '.join(diff[:5])}); benchmark into another "
            "--out directory, or delete that run to retrain it"
        )
    return True


def run_benchmark(
    dataset: str,
    out: str | Path,
    *,
    root: str | None = None,
    folds: list[str] | None = None,
    seeds: int = 3,
    methods: list[str] | None = None,
    epochs_scale: float = 1.0,
    backbone_init: str | None = None,
    sets: dict | None = None,
    batch_size: int = 256,
    precision: str = "fp32",
    progress: bool = True,
    command: str = "",
) -> list[dict]:
    """Train and evaluate every method on every fold and seed; write results.md, results.csv and runs.csv.

    Args:
        dataset: a dataset name (metadata/folds/NAME.yaml).
        out: the benchmark directory (resumable: finished runs in it are reused).
        root: the dataset's raw folder (default: the data layer's default for the dataset).
        folds: folds to run (default all of the folds file).
        seeds: number of seeds (0 .. seeds - 1).
        methods: methods to run (default all of :data:`METHODS`), in table order.
        epochs_scale: multiply every stage's `train.epochs` (or, in adaptive mode, its `train.max_steps`) by
            this (at least 1); a stage whose length adapts to the data has neither, which is an error.
        backbone_init: backbone for `zerohar`, `no_stage1`, `label_names`, `supervised` (released HARNet file or
            pretrain run; None = random).
        sets: extra config overrides for every stage, e.g. `{"train": {"max_steps_per_epoch": 5}}`; a stage's
            name as the top key (`{"stage1": {"train": {"epochs": 2}}}`) overrides that stage only, after
            `epochs_scale`.
        batch_size, precision: the inference path of the evaluations (fp32 by default: exact, CPU-independent).
        progress: progress bars.
        command: the command line, recorded in results.md.

    Returns:
        The aggregated rows (one per method).
    """
    t_start = time.perf_counter()
    out = Path(out)
    all_folds = load_folds(dataset)
    folds = list(folds or all_folds.folds)
    for f in folds:
        all_folds.unseen(f)  # unknown fold -> ZeroharError naming the known ones
    methods = list(methods or METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ZeroharError(f"unknown methods {unknown}: expected some of {', '.join(METHODS)}")
    methods = [m for m in METHODS if m in methods]  # table order
    if seeds < 1:
        raise ZeroharError(f"--seeds must be at least 1, found {seeds}")
    if epochs_scale <= 0:
        raise ZeroharError(f"--epochs-scale must be positive, found {epochs_scale}")
    if out.exists() and not out.is_dir():
        raise ZeroharError(f"benchmark directory {out} is a file; expected a folder (it is created if missing)")
    check_writable(out / "results.md", "benchmark directory")
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "benchmark.log"
    runner = _Runner(out, dataset, root, sets or {}, epochs_scale, backbone_init, progress)
    trained = [m for m in methods if m != "chance"]
    # seed-major: a stopped benchmark leaves whole seeds (every fold and method) done, not whole folds
    jobs = [(m, f, s) for s in range(seeds) for f in folds for m in trained]
    rows: list[dict] = []
    evals: dict[str, dict] = {}  # final run dir -> its metrics (shared runs are evaluated once)
    for i, (method, fold, seed) in enumerate(jobs, 1):
        tag = f"[{i}/{len(jobs)}] {method} {fold} seed{seed}"
        run_dir = out / "runs" / method / fold / f"seed{seed}"
        run_dir.mkdir(parents=True, exist_ok=True)

        def log(msg: str, tag=tag, run_dir=run_dir) -> None:
            line = f"{datetime.now().isoformat(timespec='seconds')} {tag}: {msg}"
            logger.info("%s: %s", tag, msg)
            for p in (log_path, run_dir / "progress.log"):
                with open(p, "a", encoding="utf-8") as f:
                    f.write(line + "\n")

        t0 = time.perf_counter()
        final = runner.run_steps(method, fold, seed, log)
        eval_dir = final / "eval"
        key = str(final)
        bound = runner.bound_test_subjects(fold, seed)
        if key in evals:
            m = evals[key]
        elif evaluation_is_current(eval_dir / "metrics.json", final / "model.safetensors", bound):
            m = json.loads((eval_dir / "metrics.json").read_text())
            log(f"reused evaluation {eval_dir.relative_to(out)}")
        else:
            m = evaluate_run(final, eval_dir, batch_size=batch_size, precision=precision, progress=progress,
                             force=True, subjects=bound)
            log(f"evaluated: unseen acc {m['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f}")
        evals[key] = m
        leaks = read_run_meta(final).get("transductive_init") or []
        if leaks:
            log(f"transductive init (--allow-transductive-init): {leaks[0]}")
        row = _row(method, fold, seed, m, final.relative_to(out), leaks)
        own_test = ((m.get("run") or {}).get("subjects") or {}).get("test") or []
        row["no_test_subjects"] = not own_test
        row["other_test_subjects"] = bound is not None and bool(own_test) and sorted(own_test) != bound
        if row["other_test_subjects"]:
            log(f"holds out test subjects {own_test}, not the bound's {bound}")
        rows.append(row)
        log(f"done in {time.perf_counter() - t0:.0f} s")
    if "chance" in methods:
        tests = {(r["fold"], r["seed"]): r["test_support"] for r in rows if r.get("test_support")}
        rows += _chance_rows(evals, folds, seeds, all_folds, dataset, root, sets or {}, tests)
    rows.sort(key=lambda r: (methods.index(r["method"]), folds.index(r["fold"]), r["seed"]))
    agg = aggregate(rows, methods)
    notes = [TEST_SUBJECTS_NOTE]
    no_test = sum(bool(r.get("no_test_subjects")) for r in rows if r["method"] != "chance")
    if no_test:
        notes.append(f"{no_test} runs hold out no test subjects (too few subjects for training, validation and "
                     "test, zerohar.data.splits, or runs trained before zero-shot runs held out test subjects): "
                     "their GZSL columns are n/a, never measured on validation subjects.")
    other = sum(bool(r.get("other_test_subjects")) for r in rows)
    if other:
        notes.append(f"{other} runs held out other test subjects than the supervised bound of their fold and seed "
                     "(another seed or test fraction was set for one stage): their test-subject columns score "
                     "subjects they may have trained on.")
    if backbone_init is None and {"zerohar", "random_backbone"} <= set(methods):
        notes.append("zerohar's backbone is randomly initialised (no released HARNet weights given), so its runs "
                     "are the random-backbone runs.")
    header = {
        "dataset": dataset, "folds": folds, "seeds": list(range(seeds)), "command": command or "zerohar benchmark",
        "n_runs_per_method": len(folds) * seeds, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "wall_time_s": time.perf_counter() - t_start, "notes": notes,
        "compute_s": runner.run_seconds + sum(float(e.get("eval_time_s") or 0.0) for e in evals.values()),
    }
    atomic_write_text(out / "results.md", results_markdown(agg, header, per_fold(rows, methods, folds)))
    atomic_write_text(out / "results.csv", results_csv(agg))
    atomic_write_text(out / "runs.csv", runs_csv(rows))
    logger.info("results -> %s, %s", out / "results.md", out / "results.csv")
    return agg


#: The first note under every results table.
TEST_SUBJECTS_NOTE = (
    "Unseen acc / macro-F1 / top-2 score every unseen-class window (every subject) for the zero-shot rows and the "
    "bound's test subjects only for the supervised row; the two 'test subjects' columns score every row on exactly "
    "the unseen-class windows of the supervised bound's test subjects of that fold and seed, so the upper bound "
    "compares. GZSL seen accuracy and the calibration margin use those test subjects too; validation subjects "
    "only choose checkpoints."
)


def evaluation_is_current(result: Path, model: Path, subjects: list[str] | None = None) -> bool:
    """An evaluation exists, is newer than the model it evaluated, comes from this evaluation code and (when
    `subjects` is given) has its `test_subjects` block on those subjects."""
    if not (result.is_file() and result.stat().st_mtime >= model.stat().st_mtime):
        return False
    try:
        m = json.loads(result.read_text())
    except (OSError, ValueError):
        return False
    if m.get("eval_version") != EVAL_VERSION:
        return False
    return subjects is None or (m.get("test_subjects") or {}).get("subjects") == sorted(subjects)


def _row(method: str, fold: str, seed: int, m: dict, run: Path, leaks: list[str] | None = None) -> dict:
    g, gc, t = m.get("gzsl") or {}, m.get("gzsl_calibrated") or {}, m.get("test_subjects") or {}
    return {
        "method": method, "fold": fold, "seed": seed, "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
        "top2_accuracy": m["top2_accuracy"], "gzsl_h": g.get("harmonic_mean"),
        "gzsl_h_cal": gc.get("harmonic_mean"), "test_accuracy": t.get("accuracy"),
        "test_macro_f1": t.get("macro_f1"), "test_subjects": " ".join(t.get("subjects") or []),
        "test_support": t.get("support"), "chance": m["chance"],
        "transductive_init": "; ".join(leaks or []), "run": str(run),
    }


def _chance_rows(evals: dict, folds: list[str], seeds: int, all_folds, dataset: str, root: str | None,
                 sets: dict, tests: dict | None = None) -> list[dict]:
    """Chance per fold, with the class prevalences of the fold's unseen-class windows (the same for every seed);
    the test-subject columns with those of the test subjects' windows of each seed (`tests`: (fold, seed) ->
    {class: windows}), when a run of that fold and seed measured them."""
    out = []
    n_classes = len(all_folds.classes)
    ws = None
    for fold in folds:
        unseen = all_folds.unseen(fold)
        ref = next((m for m in evals.values() if (m.get("run") or {}).get("fold") == fold
                    and (m.get("run") or {}).get("stage") == "stage2"), None)
        if ref is not None:
            counts = [ref["per_class"][c]["support"] for c in ref["class_order"]]
        else:  # no zero-shot run of this fold: count the windows
            if ws is None:
                ws = load_windowset(dataset, root=root)
                subjects = (sets.get("data") or {}).get("subjects")
                if subjects:
                    ws = ws.subset(np.isin(ws.subject, [str(x) for x in subjects]))
            counts = [int((ws.y == ws.class_names.index(c)).sum()) for c in unseen]
        y = np.repeat(np.arange(len(counts)), counts)
        c = chance_metrics(y, len(unseen), n_classes)
        for s in range(seeds):
            t = {"test_accuracy": None, "test_macro_f1": None}
            support = (tests or {}).get((fold, s))
            if support:
                n = list(support.values())
                ct = chance_metrics(np.repeat(np.arange(len(n)), n), len(unseen), n_classes)
                t = {"test_accuracy": ct["accuracy"], "test_macro_f1": ct["macro_f1"]}
            out.append({"method": "chance", "fold": fold, "seed": s, **c, **t, "run": ""})
    return out
