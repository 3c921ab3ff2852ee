"""Recording -> windows -> labels, streaming: what `zerohar classify` does.

A recording (a CSV with a time column, .npy / .npz, or a device file through actipy: see
:mod:`zerohar.data.devices`) is read chunk by chunk, brought to the canonical
form by :func:`zerohar.data.transforms.canonical_stream` (30 Hz, canonical units, gaps split), cut into
windows (step: half a window unless `--step` says otherwise) that may run across chunk borders (see
:mod:`zerohar.data.streaming`), embedded by the fast inference path and
named by a :class:`~zerohar.inference.index.LabelIndex` search. Each batch of windows is written out as soon as it is
labelled, so memory does not grow with the length of the recording. The output is written to a temporary
file and renamed into place at the end: an interrupted run leaves no half-written file.
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from zerohar import __version__
from zerohar.data.devices import recording_name
from zerohar.data.layout import SensorLayout
from zerohar.data.streaming import CHUNK_ROWS, match_layout, open_recording, stream_windows
from zerohar.data.transforms import canonical_stream
from zerohar.errors import ZeroharError
from zerohar.inference.cascade import CheckedStream
from zerohar.inference.embed import CALIBRATION_SPAN, calibration_windows, embed_windows, sensor_context
from zerohar.inference.index import LabelIndex
from zerohar.inference.plan import inference_plan
from zerohar.inference.summaries import (
    MIN_WEAR_HOURS,
    NONWEAR,
    UNKNOWN,
    ClassifyResult,
    clock_offset_s,
    daily_table,
    format_local,
    minute_table,
    nonwear_windows,
    resolve_timezone,
    timeline_figure,
)
from zerohar.io import TableWriter, atomic_directory, atomic_write_json, check_output, check_writable
from zerohar.model.onnx_backend import require_onnxruntime
from zerohar.text.encoder import get_text_encoder
from zerohar.text.labels import clean_labels, load_label_descriptions, read_labels_file
from zerohar.train.runs import load_run, use_distilled

logger = logging.getLogger(__name__)

RATE = 30.0


def stream_calibration(batches: Iterable[tuple[np.ndarray, np.ndarray]], *, window_s: float, nonwear=None,
                       span: int = CALIBRATION_SPAN) -> tuple[np.ndarray | None, Iterator]:
    """The calibration windows of a window stream (int8 ranges, the cascade's error bounds), taken from the stream
    itself (no labels, no training data).

    Args:
        batches: `(X (n, C, T), starts (n,))` batches, as :func:`zerohar.data.streaming.stream_windows` yields.
        window_s: the window length (for the non-wear rule).
        nonwear: `(k, 2)` non-wear intervals of a device file, or None.
        span: windows read ahead.

    Returns:
        `(calibration, batches)`: :func:`~zerohar.inference.embed.calibration_windows` of the worn windows among the
        first `span` (of all of them if none is worn; None for an empty stream), and the whole stream again from
        its first batch.
    """
    it = iter(batches)
    held: list[tuple[np.ndarray, np.ndarray]] = []
    n = 0
    while n < span:
        nxt = next(it, None)
        if nxt is None:
            break
        held.append(nxt)
        n += len(nxt[0])
    if not held:
        return None, iter(())
    X = np.concatenate([x for x, _ in held])[:span]  # (<= span, C, T)
    starts = np.concatenate([t for _, t in held])[:span]
    if nonwear is not None:
        worn = ~nonwear_windows(starts, window_s, nonwear)
        X = X[worn] if worn.any() else X
    return calibration_windows(X), itertools.chain(held, it)


# ---------------------------------------------------------------------------------------------- label index
def label_index_for_run(
    run,
    *,
    labels: Sequence[str] | None = None,
    labels_file: str | Path | None = None,
    dataset: str | None = None,
    describe: bool = False,
    llm_model: str | None = None,
    base_url: str | None = None,
    progress: bool | None = None,
):
    """A :class:`~zerohar.inference.index.LabelIndex` of the given labels, projected by the run's model.

    Exactly one of `labels`, `labels_file` or `dataset` (every label of a shipped dataset) names the labels.
    The texts follow the run: a model trained on label names gets names, else descriptions (the run's
    descriptions file first, then the shipped ones, then LLM descriptions with `describe`, else templates).
    """
    if sum(x is not None for x in (labels, labels_file, dataset)) != 1:
        raise ZeroharError("give the labels one way: --labels, --labels-file or --dataset")
    written: dict[str, list[str]] = {}
    if labels_file is not None:
        candidates, written = read_labels_file(labels_file)
        candidates = clean_labels(candidates, f"labels file {labels_file}", at_least=2)
    elif dataset is not None:
        written = load_label_descriptions(dataset)
        candidates = clean_labels(list(written), f"dataset {dataset}", at_least=2)
    else:
        candidates = clean_labels(labels, "--labels", at_least=2)
    texts = run.label_texts(candidates, written=written, describe=describe, llm_model=llm_model, base_url=base_url)
    return LabelIndex.build(run.model, texts, get_text_encoder(run.text_encoder), progress=progress)


def build_label_index(model_dir: str | Path, out: str | Path, *, force: bool = False, **labels):
    """`zerohar index`: build the label index of a run's model and save it to `out` (see
    :func:`label_index_for_run` for the label arguments)."""
    out = Path(out)
    if out.exists() and not force:
        raise ZeroharError(f"label index {out} already exists; pass --force to overwrite it")
    check_writable(out / "index.json", "label index")
    run = load_run(model_dir)
    if run.model is None:
        raise ZeroharError(f"run {run.path} is a {run.stage} run without a zero-shot model; use a Stage II run")
    index = label_index_for_run(run, **labels)
    index.save(out, force=force)
    return index


# ---------------------------------------------------------------------------------------------- classify
def classify_recording(
    model_dir: str | Path,
    input_path: str | Path,
    out: str | Path | None,
    *,
    labels: Sequence[str] | None = None,
    labels_file: str | Path | None = None,
    index_dir: str | Path | None = None,
    layout: str | Path | SensorLayout | None = None,
    placement: str | None = None,
    device: str | None = None,
    rate: float | None = None,
    describe: bool = False,
    llm_model: str | None = None,
    base_url: str | None = None,
    top_k: int = 3,
    step_s: float | None = None,
    batch_size: int = 256,
    precision: str = "auto",
    force: bool = False,
    progress: bool = True,
    run=None,
    chunk_rows: int = CHUNK_ROWS,
    out_dir: str | Path | None = None,
    timezone_name: str | None = None,
    min_wear_hours: float = MIN_WEAR_HOURS,
    calibrate: bool = True,
    detect_nonwear: bool = True,
    unknown: bool = True,
    distilled: bool = False,
    cascade: bool = False,
) -> ClassifyResult:
    """Name every window of a recording with the best of the candidate labels.

    Args:
        model_dir: a finished Stage II (or supervised) run directory.
        input_path: CSV (time column + channel columns), `.npy` or `.npz` recording, or a device file (`.cwa`,
            `.cwa.gz`, `.gt3x`, `.bin`).
        out: `.csv` (or `.parquet` with pyarrow) output: one row per window with `start_s` (seconds from the
            recording's first sample; plus `start_time` for datetime input), `label`, `score`, and the next
            `top_k - 1` labels and scores. Windows a device flagged as not worn are `non-wear`, never classified.
            None when `out_dir` is given.
        labels / labels_file / index_dir: the candidates (exactly one of them).
        layout / placement / device / rate: how to read the input (see :func:`open_recording`).
        describe, llm_model, base_url: LLM descriptions for labels without written ones.
        top_k: labels per window in the output.
        step_s: seconds between window starts, at most one window (default: half a window, as in BENCHMARK.md;
            a whole window halves the work on long recordings).
        batch_size, precision: the inference path (`zerohar.inference.embed.embed_windows`); "int8" (the
            `onnx` extra) calibrates its activation ranges on windows of the recording's first
            :data:`CALIBRATION_SPAN` (:func:`stream_calibration`; no labels).
        force: overwrite an existing output.
        progress: show a progress bar.
        run: an already loaded :class:`zerohar.train.runs.Run` (skips loading `model_dir`).
        chunk_rows: raw rows read per chunk (memory use; the result does not depend on it).
        out_dir: instead of `out`, a folder that receives one folder per recording, `<out_dir>/<name>/` (name:
            the input file name without its suffix), written whole or not at all: `windows.csv`, `minutes.csv`,
            `daily.csv`, `info.json`, `timeline.png` (:func:`write_study_outputs`). Needs real timestamps (a
            device file, or a CSV / .npz with datetimes).
        timezone_name: IANA zone of the summaries' local days (see :func:`write_study_outputs`); `out_dir` only.
        min_wear_hours: wear time of a valid day in `daily.csv`.
        calibrate, detect_nonwear: device files: actipy's gravity calibration and non-wear detection.
        unknown: name `unknown` every window whose best score is below the run's calibrated threshold
            (:mod:`zerohar.train.unknown`); `label_2` is then its best candidate. Runs saved without a
            threshold name every window.
        distilled: run the run's distilled backbone (`RUN/distilled/`, written by `zerohar distill`) in place of
            its backbone, every other part of the model unchanged (:attr:`zerohar.train.runs.Run.window_model`);
            `info.json` records its identity.
        cascade: the distilled backbone on every window, then the run's own backbone again on the windows whose
            label the student's error could change (:class:`zerohar.inference.cascade.CheckedStream`: error bounds
            measured on windows of the recording's own start, then on one window in 64 throughout);
            `info.json` records the share checked again.

    Returns:
        A :class:`ClassifyResult` (time per label for the summary).
    """
    from tqdm.auto import tqdm

    folder = None
    if (out is None) == (out_dir is None):
        raise ZeroharError("give one output: --out FILE.csv (the window table) or --out-dir DIR (study outputs)")
    if out_dir is not None:
        if Path(out_dir).exists() and not Path(out_dir).is_dir():
            raise ZeroharError(f"--out-dir {out_dir} is a file; expected a folder (it is created if missing)")
        folder = Path(out_dir) / recording_name(input_path)
        if folder.exists() and not force:
            raise ZeroharError(f"output {folder} already exists; pass --force to overwrite it")
        check_writable(folder / "windows.csv", "--out-dir")
        if not 0 <= min_wear_hours <= 24:
            raise ZeroharError(f"--min-wear-hours must be between 0 and 24, found {min_wear_hours:g}")
    else:
        out = check_output(out, force=force, suffixes=(".csv", ".parquet"))
        if timezone_name is not None:
            raise ZeroharError("--timezone sets the days of the --out-dir summaries; give --out-dir DIR with it")
    tz = resolve_timezone(timezone_name)
    if precision == "int8":
        require_onnxruntime("--precision int8")  # before the model, the labels and the recording
    given = [x is not None for x in (labels, labels_file, index_dir)]
    if sum(given) != 1:
        raise ZeroharError("give the candidate labels one way: --labels, --labels-file or --index")
    if top_k < 1:
        raise ZeroharError(f"--top-k must be at least 1, found {top_k}")
    if cascade and distilled:
        raise ZeroharError("give --distilled (the student on every window) or --cascade (the student, checked by "
                           "the run's own backbone where it could be wrong), not both")
    student = distilled or cascade
    run = run or load_run(model_dir, distilled=student)
    if student and run.distilled is None:
        use_distilled(run)
    window_s = run.window_s
    length = int(round(window_s * RATE))
    step = length // 2 if step_s is None else int(round(step_s * RATE))
    if step_s is not None and not (0 < step_s and 1 <= step <= length):
        raise ZeroharError(f"--step must be more than 0 and at most the model's window ({window_s:g} s), "
                           f"found {step_s:g}")
    step_s = step / RATE
    if run.model is None:
        raise ZeroharError(f"run {run.path} is a {run.stage} run without a zero-shot model; use a Stage II run")
    model = run.window_model if student else run.model  # with the distilled backbone only if asked for

    if index_dir is not None:
        index = LabelIndex.load(index_dir, model=run.model)  # its text projector made the index, either backbone
        candidates = clean_labels(index.labels, f"label index {index_dir}", at_least=2)
    else:
        index = label_index_for_run(
            run, labels=labels, labels_file=labels_file, describe=describe, llm_model=llm_model, base_url=base_url,
            progress=None if progress else False,
        )
        candidates = list(index.labels)
    k = min(top_k, len(candidates))
    threshold = _unknown_threshold(run, candidates) if unknown else None

    rec = open_recording(input_path, layout=layout, placement=placement, device=device, rate=rate,
                         chunk_rows=chunk_rows, calibrate=calibrate, detect_nonwear=detect_nonwear)
    if folder is not None and not rec.absolute_time:
        raise ZeroharError(f"{rec.path} has no real timestamps (datetimes), which minutes and days need; "
                           "give a device file or a CSV with a datetime column, or write the window table with --out")
    keep, used_layout = match_layout(run.layout, rec.layout.canonical(), str(rec.path),
                                     several=bool(run.meta.get("sources")))
    context = sensor_context(model, used_layout)  # (S, d_text): embedded once, not per chunk
    pieces = canonical_stream(rec.chunks, rec.layout, RATE, max_gap_s=window_s, source=str(rec.path))

    columns = ["start_s"] + (["start_time"] if rec.absolute_time else []) + ["label", "score"]
    for j in range(2, k + 1):
        columns += [f"label_{j}", f"score_{j}"]
    nonwear = rec.nonwear if rec.nonwear is not None and len(rec.nonwear) else None
    kept_t: list[np.ndarray] = []
    kept_labels: list[np.ndarray] = []
    calibration = None
    stream: CheckedStream | None = None  # --cascade: the student, checked by the run's own backbone

    def embed(m, X):
        return np.asarray(embed_windows(m, X, context, kinds=used_layout, batch_size=batch_size,
                                        precision=precision, calibration=calibration), dtype=np.float32)

    def label_windows(table: Path) -> tuple[int, Counter, str | None]:
        nonlocal calibration, stream
        writer = TableWriter(table, columns)
        per_label: Counter[str] = Counter()
        n = 0
        last_label = None
        bar = tqdm(desc="classifying", unit="window", disable=not progress)
        try:
            batches = stream_windows(pieces, length, step, keep)
            if precision == "int8" or cascade:  # the recording's own first windows calibrate int8 / the cascade
                calibration, batches = stream_calibration(batches, window_s=window_s, nonwear=nonwear)
            if cascade and calibration is not None:
                protos = index.prototypes[index.label_ids(candidates)]  # (L, E), the candidates' order
                stream = CheckedStream(embed(model, calibration), embed(run.model, calibration), protos, threshold)
            for X, starts in batches:
                off = nonwear_windows(starts, window_s, nonwear) if nonwear is not None else np.zeros(len(X), bool)
                top = np.full((len(X), k), "", dtype=object)
                top[off, 0] = NONWEAR
                scores = np.full((len(X), k), np.nan, dtype=np.float32)
                worn = np.flatnonzero(~off)
                if len(worn):  # non-wear windows are never classified
                    emb = embed(model, X[worn])  # (n, E)
                    if stream is not None:  # the run's own backbone where the student could change the label
                        emb = stream.embed(emb, lambda rows: embed(run.model, X[worn[rows]]))
                    scores[worn], top[worn] = index.search(emb, k, candidates=candidates)
                    if threshold is not None:  # "none of these": the candidates move one place down
                        low = worn[scores[worn, 0] < threshold]
                        top[low, 1:], scores[low, 1:] = top[low, :-1], scores[low, :-1]
                        top[low, 0] = UNKNOWN
                cols: dict = {"start_s": starts - rec.t_first, "label": top[:, 0], "score": scores[:, 0]}
                if rec.absolute_time:
                    cols["start_time"] = [_format_time(t, rec.device_clock) for t in starts.tolist()]
                for j in range(2, k + 1):
                    cols[f"label_{j}"], cols[f"score_{j}"] = top[:, j - 1], scores[:, j - 1]
                writer.write(cols)
                per_label.update({lab: c * step_s for lab, c in Counter(top[:, 0].tolist()).items()})
                n += len(X)
                last_label = str(top[-1, 0])
                if folder is not None:
                    kept_t.append(np.asarray(starts, dtype=np.float64))
                    kept_labels.append(top[:, 0].astype(str))
                bar.update(len(X))
            if n == 0:
                raise ZeroharError(
                    f"{rec.path}: the recording (after resampling and splitting at gaps) is shorter than one "
                    f"{window_s:g} s window; nothing to classify"
                )
            writer.commit()
        except BaseException:
            writer.abort()
            raise
        finally:
            bar.close()
        return n, per_label, last_label

    if folder is None:
        n, per_label, last_label = label_windows(out)
    else:
        arguments = {
            "input": str(input_path), "labels": list(labels) if labels is not None else None,
            "labels_file": str(labels_file) if labels_file is not None else None,
            "index": str(index_dir) if index_dir is not None else None,
            "layout": str(layout) if isinstance(layout, (str, Path)) else (layout.name if layout else None),
            "placement": placement, "device": device, "rate": rate, "top_k": top_k, "step_s": step_s,
            "precision": precision, "timezone": timezone_name, "min_wear_hours": min_wear_hours,
            "calibrate": calibrate, "detect_nonwear": detect_nonwear, "describe": describe, "unknown": unknown,
            "distilled": distilled, "cascade": cascade,
        }

        def fill(tmp: Path) -> None:
            nonlocal n, per_label, last_label
            n, per_label, last_label = label_windows(tmp / "windows.csv")
            write_study_outputs(
                tmp, rec, np.concatenate(kept_t), np.concatenate(kept_labels),
                candidates + ([UNKNOWN] if threshold is not None else []), step_s=step_s,
                window_s=window_s, tz=tz, min_wear_hours=min_wear_hours, run=run, used_layout=used_layout,
                arguments=arguments, unknown=run.meta.get("unknown") if threshold is not None else None,
                cascade=stream.record() if stream is not None else None,
            )

        n, per_label, last_label = 0, Counter(), None
        atomic_directory(folder, fill, force=force)
        out = folder
    # The last window stands for its whole length, not just one step.
    per_label[last_label] += window_s - step_s
    if stream is not None:
        logger.info("cascade: the run's own backbone checked %d of %d worn windows (%.1f%%; %d of them audited, "
                    "bounds from %d windows)", stream.checked, stream.windows,
                    100 * stream.checked / max(stream.windows, 1), stream.audited, stream.check.windows)
    duration = float(sum(per_label.values()))
    logger.info("classified %d windows of %s into %s", n, rec.path, out)
    return ClassifyResult(out, n, window_s, step_s, duration, dict(per_label))


def _unknown_threshold(run, candidates: Sequence[str]) -> float | None:
    """The run's "none of these" threshold, or None (with a note) for runs saved without one."""
    if UNKNOWN in candidates:
        raise ZeroharError(f"{UNKNOWN!r} is the label zerohar gives windows that no candidate fits; rename that "
                           "label, or pass --no-unknown")
    cal = run.meta.get("unknown")
    if not isinstance(cal, dict) or not isinstance(cal.get("threshold"), (int, float)):
        logger.info("run %s has no 'unknown' threshold (saved before zerohar calibrated one): every window gets a "
                    "candidate label", run.path)
        return None
    return float(cal["threshold"])


# ---------------------------------------------------------------------------------------------- study outputs
def _format_time(t: float, device_clock: bool) -> str:
    """A window start as ISO 8601: a device clock as written (naive), other times in UTC."""
    dt = datetime.fromtimestamp(t, tz=timezone.utc)
    return (dt.replace(tzinfo=None) if device_clock else dt).isoformat(timespec="milliseconds")


def _json_ready(obj):
    """NaN and infinities become null (JSON has no NaN); numpy scalars Python ones."""
    if isinstance(obj, dict):
        return {str(k): _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def write_study_outputs(
    folder: Path,
    rec,
    starts: np.ndarray,
    labels: np.ndarray,
    names: Sequence[str],
    *,
    step_s: float,
    window_s: float,
    tz=None,
    min_wear_hours: float = MIN_WEAR_HOURS,
    run=None,
    used_layout: SensorLayout | None = None,
    arguments: dict | None = None,
    unknown: dict | None = None,
    cascade: dict | None = None,
) -> dict:
    """`minutes.csv`, `daily.csv`, `timeline.png` and `info.json` of one classified recording, into `folder`.

    Local time: with a zone, a device clock (naive, as devices write it) is taken to be that zone's local time
    at the start of the recording and is not changed at daylight saving (devices keep the clock they were set
    to), so the recording's instants are the clock minus the zone's offset at its first sample; other datetimes
    (UTC, or with an offset) are instants already. Days then run between local midnights of the zone: 23 h on
    the day daylight saving starts, 25 h on the day it ends. Without a zone, days are those of the timestamps
    as written, 24 h each: of a device's clock or a CSV's naive datetimes, or, for datetimes with a UTC offset, in
    the first one's offset (give a zone for its daylight saving). The window table keeps a clock as written and
    shows instants in UTC.

    Args:
        folder: where to write (the temporary folder of :func:`zerohar.io.atomic_directory`).
        rec: the :class:`~zerohar.data.streaming.InputRecording` (for its device info and clock).
        starts: `(n,)` window starts in the input's time base; labels: `(n,)` their labels (`non-wear` included).
        names: the candidate labels (columns of the daily table, in this order).
        step_s, window_s: the windows; tz: a `zoneinfo.ZoneInfo` or None; min_wear_hours: the valid-day rule.
        run, used_layout, arguments: recorded in `info.json`; unknown: the run's "none of these" calibration
            (None when off); cascade: with `--cascade`, how many windows the run's own backbone checked.

    Returns:
        The `info.json` content.
    """
    written = None  # times with an offset and no zone: days as written, in the first time's offset
    if tz is None and not rec.device_clock and rec.written_offset_s is not None:
        tz = written = timezone(timedelta(seconds=rec.written_offset_s))
    shift = clock_offset_s(rec.t_first, tz) if rec.device_clock else 0.0  # device clock -> instants
    instants = np.asarray(starts, dtype=np.float64) - shift
    first = float(rec.t_first) - shift
    minutes = minute_table(instants, labels, step_s, names=list(names), tz=tz)
    with TableWriter(folder / "minutes.csv", ["time", "label", "covered_s", "nonwear_s"]) as w:
        w.write({"time": format_local(minutes.start, tz), "label": minutes.label, "covered_s": minutes.covered_s,
                 "nonwear_s": minutes.nonwear_s})
        w.commit()
    daily = daily_table(minutes, tz, first_s=first, last_s=float(instants[-1] + window_s),
                        min_wear_hours=min_wear_hours)
    with TableWriter(folder / "daily.csv", daily.columns) as w:
        if daily.rows:
            w.write({c: daily.column(c) for c in daily.columns})
        w.commit()
    timeline_figure(minutes, tz, folder / "timeline.png", title=rec.path.name)

    covered = float(minutes.covered_s.sum())
    nonwear = float(minutes.nonwear_s.sum())
    dev = rec.info or {}
    clock = "device clock" if rec.info else "naive datetimes"  # a wall clock: a device's, or a CSV's
    info = {
        "zerohar_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "input": str(rec.path),
        "model": None if run is None else {
            "run": str(run.path), "stage": run.stage, "dataset": run.dataset, "fold": run.meta.get("fold"),
            "window_s": window_s, "text_encoder": getattr(run, "text_encoder", None),
            "identity": (getattr(run.model, "metadata", None) or {}).get("identity"),
            "backbone": run.backbone_info() if any((arguments or {}).get(k) for k in ("distilled", "cascade"))
            else {"kind": "trained"},
        },
        "arguments": arguments or {},
        "labels": list(names),
        "window_s": window_s,
        "step_s": step_s,
        "inference": None if arguments is None else _plan_note(arguments.get("precision", "auto")),
        "sensors": None if used_layout is None else [
            {"sensor": s.sensor, "placement": s.placement, "device": s.device} for s in used_layout.sensors
        ],
        "sampling_rate_hz": dev.get("sample_rate_hz", rec.rate_found),
        "device": dev or None,
        "calibration": dev.get("calibration"),
        "nonwear": dev.get("nonwear"),
        "timezone": None if written is not None else getattr(tz, "key", None),
        "clock": (f"{clock} as written, read as local time of the zone at the first sample and never changed at "
                  "daylight saving" if rec.device_clock and tz is not None else
                  f"{clock} as written (no zone)" if rec.device_clock else
                  f"instants with a UTC offset; days in the first one's offset as written ({written})"
                  if written is not None else "UTC instants, shown in the zone" if tz is not None else "UTC"),
        "first_sample": format_local([first], tz)[0],
        "covered_hours": covered / 3600.0,
        "wear_hours": (covered - nonwear) / 3600.0,
        "nonwear_hours": nonwear / 3600.0,
        "days": len(daily.rows),
        "valid_days": int(sum(daily.column("valid"))),
        "valid_day_rule": daily.rule,
        "unknown_rule": None if unknown is None else unknown.get("rule"),
        "cascade": cascade,
        "minute_rule": "each window stands for the step after its start; a minute's label is the label of most "
                       "of its seconds (non-wear included)",
        "warnings": list(dev.get("warnings", [])),
        "files": ["windows.csv", "minutes.csv", "daily.csv", "timeline.png", "info.json"],
    }
    info = _json_ready(info)
    atomic_write_json(folder / "info.json", info)
    return info


def _plan_note(precision: str) -> str:
    """What ran and why, for info.json: `"backbone fused fp32 (...), head plain fp32 (native-bf16 CPU, ...)"`."""
    plan = inference_plan(precision)
    return f"{plan.describe()} ({plan.reason})"
