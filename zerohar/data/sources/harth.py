"""HARTH, the Human Activity Recognition Trondheim dataset (Logacjov et al. 2021; UCI dataset 779, v1.2).

Raw format, as the archive distributes it (``harth/S006.csv`` ... ``harth/S029.csv``, 22 subjects): one CSV
per subject with a header line::

    timestamp,back_x,back_y,back_z,thigh_x,thigh_y,thigh_z,label
    2019-01-12 00:00:00.000,-0.760242,0.29957,0.46214,-5.007812,-0.291016,-0.009766,6

timestamp is a date and time (milliseconds in most files; nanoseconds in some), then two Axivity AX3
three-axial accelerometers in g sampled at 50 Hz, one on the lower back and one on the right thigh, then the
label code. Some files carry an extra first column, a row index named ``index`` (S015) or with an empty name
(S023); it is ignored.

Label codes -> classes of ``metadata/folds/harth.yaml``: 1 walking, 2 running, 3 shuffling, 4 stairs
(ascending), 5 stairs (descending), 6 standing, 7 sitting, 8 lying, 13 cycling (sit), 14 cycling (stand),
130 cycling (sit, inactive), 140 cycling (stand, inactive). Any other code (the older GitHub release also used
18/19 for transport) is -1.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from zerohar.data.folds import load_folds
from zerohar.data.layout import SensorLayout
from zerohar.data.sources import _rawio, fetch_archive
from zerohar.data.windows import Recording
from zerohar.errors import ZeroharError
from zerohar.paths import metadata_dir

logger = logging.getLogger(__name__)

NAME = "harth"
URL = "https://archive.ics.uci.edu/static/public/779/harth.zip"
DEFAULT_LAYOUT = metadata_dir() / "sensors" / "harth.yaml"
RATE = 50.0

#: label code -> class name of metadata/folds/harth.yaml.
ACTIVITIES = {
    1: "walking", 2: "running", 3: "shuffling", 4: "ascending stairs", 5: "descending stairs", 6: "standing",
    7: "sitting", 8: "lying", 13: "cycling (sit)", 14: "cycling (stand)", 130: "cycling (sit, inactive)",
    140: "cycling (stand, inactive)",
}
HEADER = ("timestamp", "back_x", "back_y", "back_z", "thigh_x", "thigh_y", "thigh_z", "label")
_INDEX_NAMES = ("index", "", "Unnamed: 0")
#: signal column name -> position among the 6 accelerometer columns.
COLUMNS = {name: i for i, name in enumerate(HEADER[1:7])}


def label_map() -> dict[int, int]:
    """Label code -> class id (index into the class list of metadata/folds/harth.yaml)."""
    classes = list(load_folds(NAME).classes)
    return {code: classes.index(name) for code, name in ACTIVITIES.items()}


def read(root: str | Path, progress: bool = True, layout: SensorLayout | str | Path | None = None) -> list[Recording]:
    """One Recording per subject file, 50 Hz, with timestamps (seconds from the file's first sample).

    Args:
        root: the unpacked archive (the folder holding ``harth/``, that folder, or its parent).
        progress: show a progress bar over the files.
        layout: the channels to read (default: ``metadata/sensors/harth.yaml``), a SensorLayout or a YAML path.

    Returns:
        Recordings with signals `(T, C)` float32 in g, labels indexing the classes of
        ``metadata/folds/harth.yaml`` (-1 = a code outside them), subject = "S006" ..., ``meta["start"]`` the
        first timestamp (ISO 8601).
    """
    base = _rawio.dataset_dir(root, "HARTH", "S*.csv", prefixes=("harth",))
    files = sorted(base.glob("S*.csv"))
    lay = _rawio.resolve_layout(layout, DEFAULT_LAYOUT)
    cols = _rawio.column_indices(lay, COLUMNS, "HARTH")
    codes = label_map()
    recs = []
    for path in _rawio.progress_bar(files, progress, "harth"):
        t, acc, raw_labels = _read_csv(path)
        unknown = sorted(set(np.unique(raw_labels).tolist()) - set(codes))
        if unknown:
            logger.warning("%s: label codes %s are not classes of harth; labelled -1", path, unknown)
        recs.append(
            Recording(
                signals=acc[:, cols].astype(np.float32),
                layout=lay,
                labels=_rawio.map_codes(raw_labels, codes),
                subject=path.stem,
                name=f"{NAME}/{path.stem}",
                rate=RATE,
                timestamps=(t - t[0]).astype(np.float64) / 1e9,
                meta={"path": str(path), "start": str(t[0].astype("datetime64[ms]"))},
            )
        )
    logger.info("harth: %d recordings, %d samples", len(recs), sum(r.n_samples for r in recs))
    return recs


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(timestamps datetime64[ns], accelerations (T, 6) float64, label codes (T,) int64) of one subject file."""
    with open(path, errors="replace") as f:
        header = [h.strip().strip('"') for h in f.readline().rstrip("\r\n").split(",")]
    offset = 1 if header and header[0] in _INDEX_NAMES and len(header) == len(HEADER) + 1 else 0
    if tuple(header[offset:]) != HEADER:
        missing = [h for h in HEADER if h not in header]
        extra = [h for h in header[offset:] if h not in HEADER]
        detail = f"lacks {missing}" if missing else f"has extra columns {extra}" if extra else "has another order"
        raise ZeroharError(
            f"{path}: header {','.join(header)!r} {detail}; expected {','.join(HEADER)!r} "
            "(optionally after an index column)"
        )
    dtype = [("index", "f8")] * offset + [("timestamp", "U40")] + [(h, "f8") for h in HEADER[1:]]
    try:
        with open(path, errors="replace") as f:
            a = np.loadtxt(f, delimiter=",", skiprows=1, dtype=dtype, ndmin=1)
    except ValueError:
        raise _rawio.diagnose(path, len(header), ",", 1, text_columns=(offset,)) from None
    if a.size == 0:
        raise ZeroharError(f"{path} has a header but no data rows")
    try:
        t = np.char.strip(a["timestamp"]).astype("datetime64[ns]")
    except ValueError:
        bad = next(i for i, s in enumerate(a["timestamp"]) if not _is_datetime(s))
        raise ZeroharError(
            f"{path} line {bad + 2}: timestamp {a['timestamp'][bad].strip()[:40]!r} is not a date and time; "
            "expected e.g. '2019-01-12 00:00:00.000'"
        ) from None
    _rawio.check_times((t - t[0]).astype(np.float64) / 1e9, path, first_line=2)
    acc = np.stack([a[h] for h in HEADER[1:7]], axis=1)  # (T, 6)
    labels = a["label"]
    if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
        i = int(np.flatnonzero(~np.isfinite(labels) | (labels != np.round(labels)))[0])
        raise ZeroharError(f"{path} line {i + 2}: label {labels[i]!r} is not an integer code")
    return t, acc, labels.astype(np.int64)


def _is_datetime(s: str) -> bool:
    try:
        np.datetime64(s.strip(), "ns")
        return True
    except ValueError:
        return False


def download(root: str | Path, progress: bool = True) -> Path:
    """Download and unpack the UCI archive into `root`, a new or empty folder (it unpacks to ``harth/S0NN.csv``).

    Returns `root`; pass it to :func:`read`.
    """
    return fetch_archive(URL, root, progress)

