"""A cohort in one command: every recording of a folder or glob classified on a Dask cluster.

`zerohar classify --input DIR_OR_GLOB --out-dir OUT` lands here. Each recording is one Dask task that runs
:func:`zerohar.inference.classify.classify_recording` into `OUT/<recording name>/` (written whole or not at
all, by :func:`zerohar.io.atomic_directory`), so:

- a rerun skips every recording whose folder is there (it is complete by construction) and redoes the rest;
- one bad file is a failed row of `OUT/cohort.csv` with its one-sentence error, and the others go on;
- a worker that dies (killed, out of memory) loses nothing finished: Dask gives the recording it held to
  another worker.

The label index is built once, in this process (LLM descriptions are asked for once, not per recording), and
saved to `OUT/labels.index/`; the workers load it. `OUT/cohort.json` records the model, labels and options of
the cohort: a rerun with other ones is refused unless `--force`, so a cohort table never mixes two models.
`OUT/cohort_daily.csv` collates every finished participant's `daily.csv` (a `recording` column first).

The cluster is a :class:`distributed.LocalCluster` of `workers` processes by default, or any running scheduler
(`scheduler="tcp://host:8786"`), e.g. one started by dask-jobqueue on Slurm; its workers must see the same
files under the same paths.

The module imports neither torch nor faiss at its top: `zerohar classify` imports it to tell a cohort input
from one recording, so the model-side imports are made inside the functions that use them (on the client when
a cohort starts, on each worker in its task).
"""

from __future__ import annotations

import csv
import glob
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from zerohar.data.devices import SUFFIXES as DEVICE_SUFFIXES
from zerohar.data.devices import recording_name
from zerohar.data.streaming import INPUT_SUFFIXES
from zerohar.errors import ZeroharError
from zerohar.io import TableWriter, atomic_write_json, check_writable, load_json

logger = logging.getLogger(__name__)

RECORDING_SUFFIXES = INPUT_SUFFIXES + DEVICE_SUFFIXES
GLOB_CHARS = set("*?[")
#: Memory a worker is given room for when `workers` is not set: a week-long device file reads into about 1.5 GB.
WORKER_MEMORY_GB = 3.0
COHORT_COLUMNS = ["recording", "input", "status", "windows", "wear_hours", "days", "valid_days", "seconds", "error"]


def is_cohort_input(spec: str | Path) -> bool:
    """True for a folder or a glob pattern (`*`, `?`, `[`), which name a cohort; False for one file."""
    s = str(spec)
    return Path(s).is_dir() or (bool(GLOB_CHARS & set(s)) and not Path(s).exists())


def find_recordings(spec: str | Path) -> list[Path]:
    """The recordings a folder (its files with a recording suffix, not recursing) or a glob (`**` recurses) names.

    Raises:
        ZeroharError: nothing found, or two recordings whose outputs would have the same folder name.
    """
    s = str(spec)
    if Path(s).is_dir():
        found = [p for p in sorted(Path(s).iterdir()) if p.is_file()]
    else:
        found = [Path(p) for p in sorted(glob.glob(s, recursive=True)) if Path(p).is_file()]
    found = [p for p in found if p.name.lower().endswith(RECORDING_SUFFIXES) and not p.name.startswith(".")]
    if not found:
        raise ZeroharError(f"--input {s} names no recording; expected files ending in {', '.join(RECORDING_SUFFIXES)}")
    by_name: dict[str, Path] = {}
    for p in found:
        other = by_name.setdefault(recording_name(p), p)
        if other != p:
            raise ZeroharError(f"recordings {other} and {p} would both write the folder {recording_name(p)}/; "
                               "rename one or classify them into different --out-dir folders")
    return found


def default_workers(n_recordings: int) -> int:
    """One worker per core, at most one per recording and per `WORKER_MEMORY_GB` of memory."""
    import psutil  # comes with dask.distributed

    mem = max(1, int(psutil.virtual_memory().total / 2**30 / WORKER_MEMORY_GB))
    return max(1, min(os.cpu_count() or 1, n_recordings, mem))


@dataclass
class CohortResult:
    """What :func:`classify_cohort` did, one row per recording (the rows of `cohort.csv`)."""

    out_dir: Path
    rows: list[dict] = field(default_factory=list)
    workers: int = 0

    def count(self, status: str) -> int:
        return sum(r["status"] == status for r in self.rows)

    def summary_lines(self) -> list[str]:
        lines = [f"{len(self.rows)} recordings: {self.count('done')} classified, {self.count('skipped')} already "
                 f"done (skipped), {self.count('failed')} failed -> {self.out_dir}"]
        lines += [f"  failed: {r['recording']}: {r['error']}" for r in self.rows if r["status"] == "failed"]
        return lines


# ---------------------------------------------------------------------------------------------- worker side
_WORKER_RUNS: dict[tuple[str, bool], object] = {}


def _classify_task(run_dir: str, index_dir: str, input_path: str, out_dir: str, options: dict,
                   threads: int | None, force: bool) -> dict:
    """One recording, on a worker: never raises for a bad recording (its error is the row's `error`)."""
    import time

    import torch

    from zerohar.inference.classify import classify_recording  # same floor; imported on the worker only
    from zerohar.train.runs import load_run  # heavy (torch, the model): on the worker only

    if threads is None:  # a scheduler of the user's: share the worker's cores among its concurrent tasks
        from distributed import get_worker

        threads = max(1, (os.cpu_count() or 1) // max(1, get_worker().state.nthreads))
    torch.set_num_threads(threads)
    records: list[str] = []
    handler = _ListHandler(records)
    root = logging.getLogger("zerohar")
    root.addHandler(handler)
    t0 = time.perf_counter()
    try:
        key = (run_dir, bool(options.get("distilled") or options.get("cascade")))
        if key not in _WORKER_RUNS:  # the model loads once per worker process, not per recording
            _WORKER_RUNS.clear()
            _WORKER_RUNS[key] = load_run(run_dir, distilled=key[1])
        res = classify_recording(run_dir, input_path, None, index_dir=index_dir, out_dir=out_dir,
                                 run=_WORKER_RUNS[key], progress=False, force=force, **options)
        return {"status": "done", "windows": res.n_windows, "seconds": time.perf_counter() - t0,
                "warnings": records, "error": ""}
    except ZeroharError as e:
        return {"status": "failed", "error": str(e), "warnings": records, "seconds": time.perf_counter() - t0}
    except Exception as e:  # one bad file must not stop a cohort: reported in cohort.csv, with its kind
        return {"status": "failed", "error": f"{e.__class__.__name__}: {e}", "warnings": records,
                "seconds": time.perf_counter() - t0}
    finally:
        root.removeHandler(handler)


class _ListHandler(logging.Handler):
    """Collects a task's WARNING lines, so they reach the user and not only the worker's log."""

    def __init__(self, records: list[str]):
        super().__init__(logging.WARNING)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record.getMessage())


# ---------------------------------------------------------------------------------------------- client side
def _settings(run, index_labels: Sequence[str], options: dict) -> dict:
    from zerohar.inference.index import model_identity  # heavy (torch, faiss): keeps this module light

    return {"run": str(Path(run.path).resolve()), "model_identity": model_identity(run.window_model),
            "labels": list(index_labels), "options": {k: options[k] for k in sorted(options)}}


def classify_cohort(
    model_dir: str | Path,
    inputs: str | Path,
    out_dir: str | Path,
    *,
    labels: Sequence[str] | None = None,
    labels_file: str | Path | None = None,
    index_dir: str | Path | None = None,
    describe: bool = False,
    llm_model: str | None = None,
    base_url: str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    force: bool = False,
    progress: bool = True,
    **options,
) -> CohortResult:
    """Classify every recording that `inputs` (a folder or a glob) names into `out_dir/<name>/` on Dask.

    Args:
        model_dir: the Stage II run.
        inputs: a folder (its recordings, not recursing) or a glob pattern.
        out_dir: the cohort's output folder (see the module docstring for what it holds).
        labels / labels_file / index_dir: the candidates (exactly one), resolved once here.
        describe, llm_model, base_url: LLM descriptions of labels without written ones (asked once).
        workers: processes of the local cluster (default :func:`default_workers`); ignored with `scheduler`.
        scheduler: address of a running Dask scheduler to use instead of a local cluster.
        force: redo every recording, and accept other settings than those of an earlier run into `out_dir`.
        progress: a progress bar over recordings.
        **options: passed to :func:`zerohar.inference.classify.classify_recording` for each recording
            (layout, placement, device, rate, top_k, step_s, batch_size, precision, timezone_name, ...).

    Returns:
        A :class:`CohortResult`; `out_dir/cohort.csv` and `out_dir/cohort_daily.csv` are written either way.
    """
    from dask.distributed import Client, LocalCluster, as_completed
    from tqdm.auto import tqdm

    from zerohar.inference.classify import label_index_for_run  # same floor, heavy (torch, faiss)
    from zerohar.inference.index import LabelIndex  # heavy (torch, faiss)
    from zerohar.model.onnx_backend import require_onnxruntime  # heavy (torch)
    from zerohar.train.runs import load_run  # heavy (torch, the model)

    if options.get("precision") == "int8":  # on the client, before the cluster and the labels
        require_onnxruntime("--precision int8")

    out_dir = Path(out_dir).absolute()  # the workers may run elsewhere: they get absolute paths
    if isinstance(options.get("layout"), (str, Path)):
        options["layout"] = str(Path(options["layout"]).absolute())
    if out_dir.exists() and not out_dir.is_dir():
        raise ZeroharError(f"--out-dir {out_dir} is a file; expected a folder (it is created if missing)")
    recordings = find_recordings(inputs)
    if workers is not None and workers < 1:
        raise ZeroharError(f"--workers must be at least 1, found {workers}")
    if scheduler is not None and workers is not None:
        raise ZeroharError("give --workers (a local cluster) or --scheduler (a running one), not both")
    # no distilled backbone: said here, once
    run = load_run(model_dir, distilled=bool(options.get("distilled") or options.get("cascade")))
    if run.model is None:
        raise ZeroharError(f"run {run.path} is a {run.stage} run without a zero-shot model; use a Stage II run")
    check_writable(out_dir / "cohort.csv", "--out-dir")  # fail now, not after the LLM calls and an hour of work
    out_dir.mkdir(parents=True, exist_ok=True)

    if index_dir is not None:
        index = LabelIndex.load(index_dir, model=run.model)
    else:
        index = label_index_for_run(run, labels=labels, labels_file=labels_file, describe=describe,
                                    llm_model=llm_model, base_url=base_url, progress=None if progress else False)
    settings = _settings(run, index.labels, options)
    settings_path = out_dir / "cohort.json"
    if settings_path.exists() and not force:
        before = load_json(settings_path, "cohort settings")
        if {k: before.get(k) for k in settings} != settings:
            changed = [k for k in settings if before.get(k) != settings[k]]
            raise ZeroharError(f"{out_dir} holds a cohort classified with other {', '.join(changed)}; use a new "
                               "--out-dir, or pass --force to redo every recording with these")
    index.save(out_dir / "labels.index", force=True)
    atomic_write_json(settings_path, settings)

    rows = {str(p): {"recording": recording_name(p), "input": str(p), "status": "", "error": ""}
            for p in recordings}
    todo = []
    for p in recordings:
        if not force and (out_dir / recording_name(p) / "info.json").is_file():
            rows[str(p)]["status"] = "skipped"
        else:
            todo.append(p)
    result = CohortResult(out_dir)
    if todo:
        n = default_workers(len(todo)) if workers is None and scheduler is None else workers
        logger.info("classifying %d recordings (%d done before) on %s", len(todo), len(recordings) - len(todo),
                    f"scheduler {scheduler}" if scheduler else f"a local Dask cluster of {n} workers")
        cluster = None
        if scheduler is None:
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                                   silence_logs=logging.ERROR)
        threads = None if scheduler else max(1, (os.cpu_count() or 1) // n)
        try:
            with Client(cluster if cluster is not None else scheduler) as client:
                result.workers = len(client.scheduler_info()["workers"])
                futures = {
                    client.submit(_classify_task, str(Path(model_dir).resolve()), str(out_dir / "labels.index"),
                                  str(p.absolute()), str(out_dir), options, threads, force,
                                  key=f"classify-{i}-{recording_name(p)}", pure=False): p
                    for i, p in enumerate(todo)
                }
                bar = tqdm(total=len(todo), desc="recordings", unit="recording", disable=not progress)
                for fut in as_completed(futures):
                    p = futures[fut]
                    try:
                        got = fut.result()
                    except Exception as e:  # the task's worker died more often than Dask allows (KilledWorker)
                        got = {"status": "failed", "error": f"the worker died while classifying it "
                               f"({e.__class__.__name__}; out of memory?)", "warnings": []}
                    for w in got.pop("warnings", []):
                        logger.warning("%s: %s", p.name, w)
                    if got["status"] == "failed":
                        logger.warning("%s failed: %s", p.name, got["error"])
                    rows[str(p)].update(got)
                    bar.update(1)
                bar.close()
        finally:
            if cluster is not None:
                cluster.close()
    result.rows = [rows[str(p)] for p in recordings]
    _collate(out_dir, result.rows)
    return result


def _collate(out_dir: Path, rows: list[dict]) -> None:
    """`cohort.csv` (a row per recording) and `cohort_daily.csv` (every finished `daily.csv`, stacked); the
    temporary folders of workers that died (kill -9, out of memory) are removed, as no task is running now."""
    daily_rows: list[dict] = []
    daily_cols: list[str] = []
    for r in rows:
        for orphan in out_dir.glob(f".{glob.escape(r['recording'])}.tmp*"):
            shutil.rmtree(orphan, ignore_errors=True)
        folder = out_dir / r["recording"]
        if r["status"] in ("done", "skipped") and (folder / "info.json").is_file():
            info = load_json(folder / "info.json", "recording info")
            r.update(wear_hours=info.get("wear_hours"), days=info.get("days"), valid_days=info.get("valid_days"))
            with open(folder / "daily.csv", newline="", encoding="utf-8") as f:
                for d in csv.DictReader(f):
                    daily_rows.append({"recording": r["recording"], **d})
                    daily_cols += [c for c in d if c not in daily_cols]
    with TableWriter(out_dir / "cohort.csv", COHORT_COLUMNS) as w:
        w.write({c: [_cell(r.get(c)) for r in rows] for c in COHORT_COLUMNS})
        w.commit()
    cols = ["recording"] + daily_cols
    with TableWriter(out_dir / "cohort_daily.csv", cols) as w:
        if daily_rows:
            w.write({c: [d.get(c, "") for d in daily_rows] for c in cols})
        w.commit()


def _cell(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return v
