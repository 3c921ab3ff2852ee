"""Recording -> windows -> labels, streaming: what `zerohar classify` does.

A recording (a CSV with a time column, or .npy / .npz) is read chunk by chunk, brought to the canonical
form by :func:`zerohar.data.transforms.canonical_stream` (30 Hz, canonical units, gaps split), cut into
windows (step: half a window unless `--step` says otherwise) that may run across chunk borders (see
:mod:`zerohar.data.streaming`), embedded by the fast inference path and
named by a :class:`~zerohar.inference.index.LabelIndex` search. Each batch of windows is written out as soon as it is
labelled, so memory does not grow with the length of the recording. The output is written to a temporary
file and renamed into place at the end: an interrupted run leaves no half-written file.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from zerohar.data.layout import SensorLayout
from zerohar.data.streaming import CHUNK_ROWS, match_layout, open_recording, stream_windows
from zerohar.errors import ZeroharError
from zerohar.io import TableWriter, check_output

logger = logging.getLogger(__name__)

RATE = 30.0


# ---------------------------------------------------------------------------------------------- labels
def clean_labels(labels: Iterable[str], source: str = "--labels") -> list[str]:
    """Labels with whitespace normalised, duplicates (ignoring case) removed, and at least two left.

    Duplicates are reported once, in one warning. Zero-shot classification needs two candidates at least:
    with one, every window would get it.

    Raises:
        ZeroharError: no labels, an empty label, or a single label.
    """
    from zerohar.text.labels import normalize_label

    out: list[str] = []
    seen: dict[str, str] = {}
    repeated: Counter[str] = Counter()
    for i, raw in enumerate(labels):
        name = normalize_label(raw)
        if not name:
            raise ZeroharError(f"{source}: label {i + 1} is empty; expected a non-empty activity name")
        key = name.casefold()
        if key in seen:
            repeated[seen[key]] += 1
            continue
        seen[key] = name
        out.append(name)
    if not out:
        raise ZeroharError(f"{source}: the label list is empty; expected at least two activity labels")
    if repeated:
        logger.warning(
            "%s: repeated labels used once: %s", source, ", ".join(f"{k!r} (x{n + 1})" for k, n in repeated.items())
        )
    if len(out) == 1:
        raise ZeroharError(
            f"{source}: only one label ({out[0]!r}); zero-shot classification needs at least two candidate labels"
        )
    return out


def read_labels_file(path: str | Path) -> tuple[list[str], dict[str, list[str]]]:
    """Labels (and written descriptions, if any) from a file.

    A `.json` file is a label-description file (`metadata/labels/*.json` format, as `zerohar describe`
    writes); any other file is text with one label per line (blank lines and `#` comments skipped).

    Returns:
        (labels in file order, label -> descriptions for the labels the file describes)
    """
    p = Path(path)
    if not p.is_file():
        raise ZeroharError(f"labels file {p} does not exist")
    if p.suffix.lower() == ".json":
        from zerohar.text.labels import read_label_file

        _, descs = read_label_file(p)
        return list(descs), descs
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ZeroharError(f"labels file {p} is not a UTF-8 text file (expected one label per line)") from None
    lines = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
    return [ln for ln in lines if ln], {}


def label_descriptions(
    labels: Sequence[str],
    *,
    written: dict[str, list[str]] | None = None,
    known=None,
    label_text: str = "descriptions",
    describe: bool = False,
    llm_model: str | None = None,
    base_url: str | None = None,
) -> dict[str, list[str]]:
    """The texts of each label: given ones, else shipped ones (metadata/labels), else LLM or template ones.

    Args:
        labels: cleaned labels (see :func:`clean_labels`).
        written: descriptions supplied by the user (a labels JSON file); they win.
        known: where shipped descriptions come from (see :func:`zerohar.text.labels.descriptions_for`).
        label_text: "names" for a model trained on label names (the label is its own only text).
        describe: ask an LLM (`zerohar.text.describe`) for labels without written descriptions.
        llm_model, base_url: the LLM for `describe`.
    """
    from zerohar.text.labels import descriptions_for, template_descriptions

    if label_text == "names":
        return {lab: [lab] for lab in labels}
    written = dict(written or {})
    sources = [written, known] if written else known
    texts = descriptions_for(list(labels), known=sources)
    if describe:
        missing = [lab for lab in labels if texts[lab] == template_descriptions(lab)]
        if missing:
            texts.update(_describe(missing, llm_model, base_url))
    return texts


def _describe(labels: list[str], llm_model: str | None, base_url: str | None) -> dict[str, list[str]]:
    """LLM descriptions for `labels` via the text side's describe API."""
    if not llm_model:
        raise ZeroharError("--describe needs --llm-model (the model name of an OpenAI-compatible server)")
    from zerohar.text import describe as describe_mod

    logger.info("asking %s for descriptions of %s", llm_model, ", ".join(repr(lab) for lab in labels))
    result = describe_mod.describe_labels(labels, model=llm_model, base_url=base_url)
    return {lab: list(result[lab]) for lab in labels}


# ---------------------------------------------------------------------------------------------- summary
@dataclass
class ClassifyResult:
    """What :func:`classify_recording` wrote."""

    out: Path
    n_windows: int
    window_s: float
    step_s: float
    duration_s: float  # time covered by windows (each window counts for one step, the last for a whole window)
    seconds_per_label: dict[str, float] = field(default_factory=dict)

    def summary_lines(self) -> list[str]:
        """A table of time per label, largest first."""
        total = sum(self.seconds_per_label.values()) or 1.0
        width = max([5] + [len(k) for k in self.seconds_per_label])
        lines = [f"{'label':<{width}}  {'time':>10}  {'share':>6}"]
        for lab, s in sorted(self.seconds_per_label.items(), key=lambda kv: -kv[1]):
            lines.append(f"{lab:<{width}}  {format_duration(s):>10}  {100 * s / total:5.1f}%")
        return lines


def format_duration(seconds: float) -> str:
    """`HH:MM:SS` (with days as `Nd HH:MM:SS` beyond 24 h)."""
    s = int(round(seconds))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return f"{d}d {h:02d}:{m:02d}:{s:02d}" if d else f"{h:02d}:{m:02d}:{s:02d}"


def segments(starts: Sequence[float], labels: Sequence[str], step_s: float, window_s: float) -> list[tuple]:
    """Merge consecutive windows with one label into `(start_s, end_s, label)` segments.

    A window stands for the `step_s` seconds from its start; the last window before a gap (or the end)
    stands for its whole length. Windows further apart than one step start a new segment.
    """
    out: list[list] = []
    prev = None
    for t, lab in zip(np.asarray(starts, dtype=np.float64).tolist(), labels):
        contiguous = prev is not None and abs(t - prev - step_s) < 1e-6 * max(1.0, step_s)
        if prev is not None and not contiguous:
            out[-1][1] = prev + window_s
        if contiguous and out[-1][2] == lab:
            out[-1][1] = t + step_s
        else:
            out.append([t, t + step_s, lab])
        prev = t
    if out:
        out[-1][1] = prev + window_s
    return [tuple(x) for x in out]


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
):
    """A :class:`~zerohar.inference.index.LabelIndex` of the given labels, projected by the run's model.

    Exactly one of `labels`, `labels_file` or `dataset` (every label of a shipped dataset) names the labels.
    The texts follow the run: a model trained on label names gets names, else descriptions (the run's
    descriptions file first, then the shipped ones, then LLM descriptions with `describe`, else templates).
    """
    from zerohar.inference.index import LabelIndex
    from zerohar.text.encoder import get_text_encoder

    if sum(x is not None for x in (labels, labels_file, dataset)) != 1:
        raise ZeroharError("give the labels one way: --labels, --labels-file or --dataset")
    written: dict[str, list[str]] = {}
    if labels_file is not None:
        names, written = read_labels_file(labels_file)
        candidates = clean_labels(names, f"labels file {labels_file}")
    elif dataset is not None:
        from zerohar.text.labels import load_label_descriptions

        written = load_label_descriptions(dataset)
        candidates = clean_labels(list(written), f"dataset {dataset}")
    else:
        candidates = clean_labels(labels, "--labels")
    label_text = getattr(run.config.train, "label_text", "descriptions")
    known = [src for src in (run.config.data.descriptions, _shipped_dataset(run.dataset)) if src] + [None]
    texts = label_descriptions(
        candidates, written=written, known=known, label_text=label_text,
        describe=describe, llm_model=llm_model, base_url=base_url,
    )
    return LabelIndex.build(run.model, texts, get_text_encoder(run.text_encoder))


def _shipped_dataset(name: str | None) -> str | None:
    """`name` if zerohar ships label descriptions for it (so a run's own classes keep its training texts)."""
    from zerohar.text.labels import known_datasets

    return name if name and name in known_datasets() else None


def build_label_index(model_dir: str | Path, out: str | Path, *, force: bool = False, **labels):
    """`zerohar index`: build the label index of a run's model and save it to `out` (see
    :func:`label_index_for_run` for the label arguments)."""
    from zerohar.train.runs import load_run

    out = Path(out)
    if out.exists() and not force:
        raise ZeroharError(f"label index {out} already exists; pass --force to overwrite it")
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
    out: str | Path,
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
) -> ClassifyResult:
    """Name every window of a recording with the best of the candidate labels.

    Args:
        model_dir: a finished Stage II (or supervised) run directory.
        input_path: CSV (time column + channel columns), `.npy` or `.npz` recording.
        out: `.csv` (or `.parquet` with pyarrow) output: one row per window with `start_s` (seconds from the
            recording's first sample; plus `start_time` for datetime input), `label`, `score`, and the next
            `top_k - 1` labels and scores.
        labels / labels_file / index_dir: the candidates (exactly one of them).
        layout / placement / device / rate: how to read the input (see :func:`open_recording`).
        describe, llm_model, base_url: LLM descriptions for labels without written ones.
        top_k: labels per window in the output.
        step_s: seconds between window starts, at most one window (default: half a window, as in BENCHMARK.md;
            a whole window halves the work on long recordings).
        batch_size, precision: the inference path (`zerohar.inference.embed.embed_windows`).
        force: overwrite an existing output.
        progress: show a progress bar.
        run: an already loaded :class:`zerohar.train.runs.Run` (skips loading `model_dir`).
        chunk_rows: raw rows read per chunk (memory use; the result does not depend on it).

    Returns:
        A :class:`ClassifyResult` (time per label for the summary).
    """
    from tqdm.auto import tqdm

    from zerohar.data.transforms import canonical_stream
    from zerohar.inference.embed import embed_windows, sensor_context
    from zerohar.inference.index import LabelIndex
    from zerohar.train.runs import load_run

    out = check_output(out, force=force, suffixes=(".csv", ".parquet"))
    given = [x is not None for x in (labels, labels_file, index_dir)]
    if sum(given) != 1:
        raise ZeroharError("give the candidate labels one way: --labels, --labels-file or --index")
    if top_k < 1:
        raise ZeroharError(f"--top-k must be at least 1, found {top_k}")
    run = run or load_run(model_dir)
    window_s = run.window_s
    length = int(round(window_s * RATE))
    step = length // 2 if step_s is None else int(round(step_s * RATE))
    if step_s is not None and not (0 < step_s and 1 <= step <= length):
        raise ZeroharError(f"--step must be more than 0 and at most the model's window ({window_s:g} s), "
                           f"found {step_s:g}")
    step_s = step / RATE
    if run.model is None:
        raise ZeroharError(f"run {run.path} is a {run.stage} run without a zero-shot model; use a Stage II run")
    model = run.model

    if index_dir is not None:
        index = LabelIndex.load(index_dir, model=model)
        candidates = clean_labels(index.labels, f"label index {index_dir}")
    else:
        index = label_index_for_run(
            run, labels=labels, labels_file=labels_file, describe=describe, llm_model=llm_model, base_url=base_url
        )
        candidates = list(index.labels)
    k = min(top_k, len(candidates))

    rec = open_recording(input_path, layout=layout, placement=placement, device=device, rate=rate,
                         chunk_rows=chunk_rows)
    keep, used_layout = match_layout(run.layout, rec.layout.canonical(), str(rec.path))
    context = sensor_context(model, used_layout)  # (S, d_text): embedded once, not per chunk
    pieces = canonical_stream(rec.chunks, rec.layout, RATE, max_gap_s=window_s, source=str(rec.path))

    columns = ["start_s"] + (["start_time"] if rec.absolute_time else []) + ["label", "score"]
    for j in range(2, k + 1):
        columns += [f"label_{j}", f"score_{j}"]
    writer = TableWriter(out, columns)
    per_label: Counter[str] = Counter()
    n = 0
    last_label = None
    bar = tqdm(desc="classifying", unit="window", disable=not progress)
    try:
        for X, starts in stream_windows(pieces, length, step, keep):
            emb = embed_windows(model, X, context, kinds=used_layout, batch_size=batch_size,
                                precision=precision)  # (n, E)
            scores, top = index.search(np.asarray(emb, dtype=np.float32), k, candidates=candidates)
            cols: dict = {"start_s": starts - rec.t_first, "label": top[:, 0], "score": scores[:, 0]}
            if rec.absolute_time:
                cols["start_time"] = [
                    datetime.fromtimestamp(t, tz=timezone.utc).isoformat(timespec="milliseconds") for t in starts
                ]
            for j in range(2, k + 1):
                cols[f"label_{j}"], cols[f"score_{j}"] = top[:, j - 1], scores[:, j - 1]
            writer.write(cols)
            per_label.update({lab: c * step_s for lab, c in Counter(top[:, 0].tolist()).items()})
            n += len(X)
            last_label = str(top[-1, 0])
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
    # The last window stands for its whole length, not just one step.
    per_label[last_label] += window_s - step_s
    duration = float(sum(per_label.values()))
    logger.info("classified %d windows of %s into %s", n, rec.path, out)
    return ClassifyResult(out, n, window_s, step_s, duration, dict(per_label))
