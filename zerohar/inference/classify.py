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
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from zerohar.data.layout import SensorLayout
from zerohar.data.streaming import CHUNK_ROWS, match_layout, open_recording, stream_windows
from zerohar.data.transforms import canonical_stream
from zerohar.errors import ZeroharError
from zerohar.inference.embed import embed_windows, sensor_context
from zerohar.inference.index import LabelIndex
from zerohar.inference.summaries import ClassifyResult
from zerohar.io import TableWriter, check_output
from zerohar.text.encoder import get_text_encoder
from zerohar.text.labels import clean_labels, load_label_descriptions, read_labels_file
from zerohar.train.runs import load_run

logger = logging.getLogger(__name__)

RATE = 30.0


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
        candidates = clean_labels(index.labels, f"label index {index_dir}", at_least=2)
    else:
        index = label_index_for_run(
            run, labels=labels, labels_file=labels_file, describe=describe, llm_model=llm_model, base_url=base_url,
            progress=None if progress else False,
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
