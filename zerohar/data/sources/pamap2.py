"""PAMAP2 Physical Activity Monitoring, protocol part (Reiss & Stricker 2012; UCI dataset 231).

Raw format, as the archive distributes it (``PAMAP2_Dataset/Protocol/subject101.dat`` ... ``subject109.dat``):
one file per subject, space-separated text, 54 columns, one row every 0.01 s (100 Hz)::

    1 timestamp (s)   2 activityID   3 heart rate (bpm, ~9 Hz: NaN on most rows)
    4-20 hand IMU   21-37 chest IMU   38-54 ankle IMU, each 17 columns:
      temperature (C), 3D acc +-16 g (m/s^2), 3D acc +-6 g (m/s^2), 3D gyro (rad/s), 3D mag (uT),
      4 orientation (documented as invalid)

Three Colibri wireless IMUs: over the wrist of the dominant arm, on the chest, on the dominant side's ankle.
activityID 0 marks transient periods between activities (-> -1, unlabelled); ids outside the 12 protocol
classes of ``metadata/folds/pamap2.yaml`` (9-11, 18-20 belong to the optional part) are -1 too. Dropped
wireless packets appear as NaN in an IMU's columns; they are left as NaN for the transforms to handle.

The shipped layout uses the +-16 g accelerometer (the +-6 g one saturates during running and jumping), the
gyroscope and the magnetometer of each IMU: 9 triads, 27 channels. Column names for a custom layout are
``{hand,chest,ankle}_{acc16,acc6,gyro,mag}_{x,y,z}``.
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

NAME = "pamap2"
URL = "https://archive.ics.uci.edu/static/public/231/pamap2+physical+activity+monitoring.zip"
DEFAULT_LAYOUT = metadata_dir() / "sensors" / "pamap2.yaml"
RATE = 100.0
N_COLUMNS = 54

#: activityID -> class name of metadata/folds/pamap2.yaml (protocol activities only).
ACTIVITIES = {
    1: "lying", 2: "sitting", 3: "standing", 4: "walking", 5: "running", 6: "cycling", 7: "nordic walking",
    12: "ascending stairs", 13: "descending stairs", 16: "vacuum cleaning", 17: "ironing", 24: "rope jumping",
}
TRANSIENT = 0

IMUS = ("hand", "chest", "ankle")
_IMU_FIELDS = (
    ["temperature"]
    + [f"{s}_{a}" for s in ("acc16", "acc6", "gyro", "mag") for a in "xyz"]
    + [f"orientation_{i}" for i in range(1, 5)]
)
#: raw column name -> 0-based column index in a subjectNNN.dat file.
COLUMNS = {"timestamp": 0, "activity_id": 1, "heart_rate": 2} | {
    f"{imu}_{field}": 3 + 17 * i + j for i, imu in enumerate(IMUS) for j, field in enumerate(_IMU_FIELDS)
}
_SIGNAL_COLUMNS = {k: v for k, v in COLUMNS.items() if any(s in k for s in ("_acc", "_gyro", "_mag"))}


def label_map() -> dict[int, int]:
    """activityID -> class id (index into the class list of metadata/folds/pamap2.yaml)."""
    classes = list(load_folds(NAME).classes)
    return {code: classes.index(name) for code, name in ACTIVITIES.items()}


def read(root: str | Path, progress: bool = True, layout: SensorLayout | str | Path | None = None) -> list[Recording]:
    """One Recording per subject file of ``Protocol/``, 100 Hz, with its timestamps.

    Args:
        root: the unpacked archive (the folder holding ``PAMAP2_Dataset/``, that folder, or its parent).
        progress: show a progress bar over the files.
        layout: the channels to read (default: ``metadata/sensors/pamap2.yaml``), a SensorLayout or a YAML path.

    Returns:
        Recordings with signals `(T, C)` float32 in the layout's declared units, labels indexing the classes
        of ``metadata/folds/pamap2.yaml`` (-1 = transient or non-protocol activity), subject = "101" ... .
    """
    base = _rawio.dataset_dir(root, "PAMAP2", "Protocol/subject*.dat", prefixes=("PAMAP2_Dataset",))
    files = sorted((base / "Protocol").glob("subject*.dat"))
    lay = _rawio.resolve_layout(layout, DEFAULT_LAYOUT)
    cols = _rawio.column_indices(lay, _SIGNAL_COLUMNS, "PAMAP2")
    codes = label_map()
    recs = []
    for path in _rawio.progress_bar(files, progress, "pamap2"):
        table = _rawio.read_table(path, N_COLUMNS)
        t = table[:, COLUMNS["timestamp"]]
        _rawio.check_times(t, path)
        ids = table[:, COLUMNS["activity_id"]]
        if np.isnan(ids).any():
            line = int(np.flatnonzero(np.isnan(ids))[0]) + 1
            raise ZeroharError(f"{path} line {line}: activityID is NaN; expected an integer activity id")
        labels = _rawio.map_codes(ids.astype(np.int64), codes)
        recs.append(
            Recording(
                signals=table[:, cols].astype(np.float32),
                layout=lay,
                labels=labels,
                subject=path.stem.removeprefix("subject"),
                name=f"{NAME}/{path.stem}",
                rate=RATE,
                timestamps=t,
                meta={"path": str(path), "nan_fraction": float(np.isnan(table[:, cols]).mean())},
            )
        )
        del table
    _log_summary(recs)
    return recs


def _log_summary(recs: list[Recording]) -> None:
    n = sum(r.n_samples for r in recs)
    unlabelled = sum(int((r.labels < 0).sum()) for r in recs)
    logger.info(
        "pamap2: %d recordings, %d subjects, %d samples (%.1f%% transient or non-protocol, label -1)",
        len(recs), len({r.subject for r in recs}), n, 100.0 * unlabelled / max(n, 1),
    )


def download(root: str | Path, progress: bool = True) -> Path:
    """Download and unpack the UCI archive into `root`, a new or empty folder (it wraps ``PAMAP2_Dataset.zip``).

    Returns `root`; pass it to :func:`read`.
    """
    return fetch_archive(URL, root, progress)
