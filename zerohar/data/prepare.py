"""Raw files -> canonical recordings -> windows, cached; and :func:`load_windowset`, what every consumer calls.

A prepared WindowSet is cached as `.npz` under `cache_dir()/windows`, keyed by the source, every setting and
a fingerprint of the raw files (relative paths, sizes, modification times), so editing or replacing a file
prepares again and nothing stale is ever read.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import math
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from zerohar.config import VARIANTS
from zerohar.data.folds import load_folds
from zerohar.data.layout import SensorLayout
from zerohar.data.sources import default_root, get_source
from zerohar.data.sources import embedded as embedded_source
from zerohar.data.transforms import CANONICAL_RATE, CanonicalStats, make_windows, to_canonical
from zerohar.data.windows import WindowSet, cache_key
from zerohar.errors import ZeroharError
from zerohar.io import check_input_file, check_output
from zerohar.paths import cache_dir

logger = logging.getLogger(__name__)

#: Bump when transforms or sources change what a prepared set holds: old cache entries are then never read.
CACHE_VERSION = 3  # 2: window sets record per-window sample classes (sample_classes); 3: jittered timestamps
# resample through a uniform grid at the source rate in whole Hz (zerohar.data.transforms._resample)


def _fingerprint(path: Path) -> str:
    """Hash of relative path, size and mtime of every file under `path` (or of the file itself)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for p in files:
        st = p.stat()
        h.update(f"{p.relative_to(path) if p != path else p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _file_hash(path: str | Path | None) -> str | None:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16] if path is not None else None


def _check_out(out: str | Path | None, force: bool) -> Path | None:
    if out is None:
        return None
    out = Path(out)
    if out.suffix != ".npz":
        raise ZeroharError(f"output {out}: expected a .npz file name")
    return check_output(out, force=force)


def check_window(window_s, step_s) -> tuple[float, float]:
    """A window length of a HARNet variant (5, 10 or 30 s) and a positive step (default half a window)."""
    lengths = sorted(n / CANONICAL_RATE for n in VARIANTS.values())
    shown = ", ".join(f"{v:g}" for v in lengths[:-1]) + f" or {lengths[-1]:g}"
    if window_s is None or not math.isfinite(window_s) or window_s <= 0:
        raise ZeroharError(f"window length must be positive, found {window_s}; expected {shown} s (--window)")
    if not any(abs(window_s - v) < 1e-9 for v in lengths):
        raise ZeroharError(
            f"window length {window_s:g} s: expected {shown} s (--window), the windows of the HARNet variants"
        )
    step_s = window_s / 2 if step_s is None else float(step_s)
    if not math.isfinite(step_s) or step_s <= 0:
        raise ZeroharError(f"window step must be positive, found {step_s:g} s (--step)")
    return float(window_s), step_s


def _source_options(source, dataset: str, options: dict) -> dict:
    """The options (layout, placement, ...) a source's `read` accepts; one it does not is an error if given."""
    accepted = inspect.signature(source.read).parameters
    given = {k: v for k, v in options.items() if v is not None}
    bad = [k for k in given if k not in accepted]
    if bad:
        raise ZeroharError(
            f"dataset {dataset!r} does not take the option {bad[0]!r}; it reads its sensors from its own files"
        )
    return given


def prepare(
    dataset: str,
    root: str | Path | None = None,
    window_s: float = 5.0,
    step_s: float | None = None,
    per_trial: bool | str | None = None,
    out: str | Path | None = None,
    force: bool = False,
    progress: bool = True,
    *,
    layout: str | Path | None = None,
    placement: str | None = None,
    device: str | None = None,
    folds: str | Path | None = None,
    rate: float | None = None,
    download: bool = False,
) -> WindowSet:
    """Read a dataset's raw files and cut them into canonical windows (cached).

    Args:
        dataset: a source name (see `zerohar.data.sources.SOURCES`).
        root: the dataset folder (for `csv`: a file or folder). None: for `hapt` the embedded derivative,
            otherwise `$ZEROHAR_DATA/<dir>` or `../shared/data/<dir>`.
        window_s: window length in seconds (5, 10 or 30 match the HARNet variants).
        step_s: step between windows; None = half a window.
        per_trial: windowing mode (see `make_windows`); None = the source's default.
        out: also write the WindowSet to this .npz (refused if it exists, unless `force`).
        force: overwrite `out` and prepare again even when a cached set exists.
        progress: show progress bars.
        layout, placement, device, rate: how to read a `csv` dataset (sources that take them).
        folds: a folds file whose class list orders the labels (default: `metadata/folds/<dataset>.yaml`;
            for `csv`, the sorted label texts).
        download: fetch the archive into `root` when it does not exist.

    Returns:
        The WindowSet (canonical 30 Hz, `(N, C, T)`, y = -1 where no label covers half a window).
    """
    source = get_source(dataset)
    window_s, step_s = check_window(window_s, step_s)
    out = _check_out(out, force)
    if per_trial is None:
        per_trial = getattr(source, "PER_TRIAL", False)
    embedded = dataset == "hapt" and root is None
    if embedded:
        source, root = embedded_source, embedded_source.path()  # the shipped derivative stands in
    elif root is None:
        root = default_root(dataset)
        if root is None:
            raise ZeroharError(f"no data folder for dataset {dataset!r}: pass --root DIR (or set $ZEROHAR_DATA)")
    root = Path(root).expanduser()
    if not root.exists():
        if download and getattr(source, "URL", None):
            source.download(root)
        else:
            if root.is_symlink():
                check_input_file(root, f"{dataset}: data file")  # a broken link or a loop, said as such
            hint = f"; pass --download to fetch {source.URL}" if getattr(source, "URL", None) else ""
            raise ZeroharError(f"{dataset}: data directory or file {root} does not exist{hint}")
    options = _source_options(source, dataset, {"layout": layout, "placement": placement, "device": device,
                                                "rate": rate})
    if layout is not None:
        SensorLayout.from_yaml(layout)  # a bad layout file is refused before any file is read
    class_names = list(load_folds(folds).classes) if folds is not None else None
    if class_names is not None and "class_names" in inspect.signature(source.read).parameters:
        options["class_names"] = class_names

    key = cache_key(
        version=CACHE_VERSION, dataset=dataset, embedded=embedded, files=_fingerprint(root), window_s=window_s,
        step_s=step_s, per_trial=per_trial, rate=CANONICAL_RATE, layout=_file_hash(layout), folds=_file_hash(folds),
        options={k: v for k, v in options.items() if k != "layout"},
    )
    cached = cache_dir() / "windows" / f"{dataset}-{window_s:g}s-{key}.npz"
    ws = None
    if cached.is_file() and not force:
        try:
            ws = WindowSet.load(cached)
            logger.info("%s: %d windows from the cache %s", dataset, len(ws), cached)
        except ZeroharError:
            logger.warning("cache entry %s is unreadable; preparing again", cached)
    if ws is None:
        ws = _build(source, dataset, root, options, class_names, window_s, step_s, per_trial, progress)
        ws.save(cached)
    if out is not None:
        ws.save(out)
        logger.info("wrote %s", out)
    return ws


def _build(source, dataset, root, options, class_names, window_s, step_s, per_trial, progress) -> WindowSet:
    recs = source.read(root, progress=progress, **options)
    if not recs:
        raise ZeroharError(f"{dataset}: {root} holds no recordings")
    if class_names is None:
        # Sources without a folds file of their own (csv, embedded) say which classes their labels index.
        meta = recs[0].meta
        class_names = list(meta["class_names"]) if "class_names" in meta else list(load_folds(dataset).classes)
    pieces, stats = [], CanonicalStats(recordings=0)
    for rec in tqdm(recs, desc="canonical", unit="rec", disable=not progress):
        # A gap longer than one window splits a recording: no window may bridge it.
        parts = to_canonical(rec, CANONICAL_RATE, max_gap_s=window_s)
        if parts:
            stats.add(CanonicalStats(**parts[0].meta["canonical_stats"]))
        pieces.extend(parts)
    if stats.any():
        logger.warning("%s: %s", dataset if root.is_dir() else root, stats.describe())
    if not pieces:
        raise ZeroharError(f"{dataset}: no recording under {root} has two valid samples (rows without a missing or "
                           "non-finite value)")
    ws = make_windows(pieces, class_names, window_s, step_s, CANONICAL_RATE, per_trial)
    ws.meta.update(
        dataset=dataset, root=str(root), n_raw_recordings=len(recs), canonical_stats=vars(stats),
        subjects=len(np.unique(ws.subject)),
    )
    logger.info("%s: %d windows (%d labelled) from %d recordings of %d subjects", dataset, len(ws),
                int((ws.y >= 0).sum()), len(recs), ws.meta["subjects"])
    return ws


def load_windowset(
    dataset: str | None = None,
    *,
    root: str | Path | None = None,
    data: str | Path | None = None,
    window_s: float = 5.0,
    progress: bool = False,
    **kwargs,
) -> WindowSet:
    """THE way trainers and evaluators get windows.

    Args:
        dataset: a source name; `"hapt"` without `root` is the embedded HAPT derivative (works offline on a
            fresh clone); other datasets default to `$ZEROHAR_DATA/<dir>` or `../shared/data/<dir>`.
        root: the dataset's raw folder.
        data: a `.npz` written by `zerohar prepare` (then `dataset` and `root` are not needed).
        window_s: window length in seconds; a prepared `data` file must have been cut with it.
        progress: show progress bars while preparing.
        **kwargs: further `prepare` options (step_s, per_trial, layout, placement, device, folds).

    Returns:
        A WindowSet `(N, C, T)` at 30 Hz.
    """
    if data is not None:
        ws = WindowSet.load(data)
        want = int(round(window_s * ws.rate))
        if ws.window_length != want:
            raise ZeroharError(
                f"{data} holds windows of {ws.window_length} samples ({ws.window_length / ws.rate:g} s); "
                f"expected {want} ({window_s:g} s)"
            )
        if dataset is not None and ws.meta.get("dataset") not in (None, dataset):
            raise ZeroharError(f"{data} was prepared from dataset {ws.meta['dataset']!r}, not {dataset!r}")
        return ws
    if dataset is None:
        raise ZeroharError("give a dataset name or a prepared window set (.npz from `zerohar prepare`)")
    return prepare(dataset, root=root, window_s=window_s, progress=progress, **kwargs)


def class_table(ws: WindowSet) -> str:
    """A per-class table of window and subject counts, with totals (what `zerohar prepare` prints)."""
    counts = ws.class_counts()
    width = max([5, *(len(c) for c in ws.class_names)])
    lines = [f"{'class':<{width}}  {'windows':>8}  {'subjects':>8}"]
    for i, c in enumerate(ws.class_names):
        subjects = len(np.unique(ws.subject[ws.y == i]))
        lines.append(f"{c:<{width}}  {counts[c]:>8,}  {subjects:>8}")
    lines.append(f"{'(no label)':<{width}}  {int((ws.y < 0).sum()):>8,}  {'':>8}")
    lines.append(f"{'total':<{width}}  {len(ws):>8,}  {len(np.unique(ws.subject)):>8}")
    return "\n".join(lines)
