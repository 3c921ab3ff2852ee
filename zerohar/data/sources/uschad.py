"""USC-HAD, the USC human activity dataset (Zhang & Sawchuk 2012).

Raw format, as the archive distributes it (``USC-HAD/Subject1/a1t1.mat`` ... ``Subject14/a12t5.mat``): one
MATLAB file per trial, named ``a<activity>t<trial>.mat``, each holding one activity. Fields (character
strings unless noted): ``title``, ``version``, ``date``, ``subject``, ``age``, ``height``, ``weight``,
``activity``, ``activity_number`` (spelt ``activity_numbr`` in some files), ``trial``, ``sensor_location``,
``sensor_orientation`` and ``sensor_readings``, a numeric `(N, 6)` array sampled at 100 Hz: accelerometer x, y, z
in g, then gyroscope x, y, z in deg/s. The sensor is a MotionNode IMU worn at the front right hip.

Activity numbers 1-12 are the classes of ``metadata/folds/uschad.yaml`` in order. There are no timestamps:
the recording has a constant rate.

**A file whose header disagrees with its name is labelled by its name**, with a logged line. The one such file
of the release is ``Subject14/a3t2.mat``: named a3 (walking right), its header says ``activity='walking-left'``,
``activity_number='2'``. Its signal is a walking-right trial: the mean of gyro x separates the two classes
without exception over all 140 walking-left / walking-right trials of the release (walking left +2.8 to
+45.5 deg/s, walking right -60.7 to -8.1 deg/s), and this file's is -17.8 deg/s (Subject14's a2 trials:
+13.1 to +24.4; its other a3 trials: -13.6 to -8.1). Labelling it by its header would also leave Subject14 six
walking-left trials and four walking-right ones, where the protocol recorded five of each.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import scipy.io

from zerohar.data.folds import load_folds
from zerohar.data.layout import SensorLayout
from zerohar.data.sources import _rawio, fetch_archive
from zerohar.data.windows import Recording
from zerohar.errors import ZeroharError
from zerohar.paths import metadata_dir

logger = logging.getLogger(__name__)

NAME = "uschad"
DIRNAME = "usc-had"  # its folder in ../shared/data (the archive unpacks to USC-HAD/ inside it)
URL = "https://sipi.usc.edu/had/USC-HAD.zip"
DEFAULT_LAYOUT = metadata_dir() / "sensors" / "uschad.yaml"
RATE = 100.0

#: activity_number -> class name of metadata/folds/uschad.yaml.
ACTIVITIES = {
    1: "walking forward", 2: "walking left", 3: "walking right", 4: "walking upstairs", 5: "walking downstairs",
    6: "running forward", 7: "jumping", 8: "sitting", 9: "standing", 10: "sleeping", 11: "elevator up",
    12: "elevator down",
}
#: column name -> column of `sensor_readings`.
COLUMNS = {"acc_x": 0, "acc_y": 1, "acc_z": 2, "gyro_x": 3, "gyro_y": 4, "gyro_z": 5}

_FILE = re.compile(r"^a(\d+)t(\d+)\.mat$")
_SUBJECT_DIR = re.compile(r"^Subject(\d+)$")


def label_map() -> dict[int, int]:
    """activity_number -> class id (index into the class list of metadata/folds/uschad.yaml)."""
    classes = list(load_folds(NAME).classes)
    return {code: classes.index(name) for code, name in ACTIVITIES.items()}


def read(root: str | Path, progress: bool = True, layout: SensorLayout | str | Path | None = None) -> list[Recording]:
    """One Recording per trial file, 100 Hz, labelled throughout with its activity.

    Args:
        root: the unpacked archive (the folder holding ``USC-HAD/``, that folder, or its parent).
        progress: show a progress bar over the files.
        layout: the channels to read (default: ``metadata/sensors/uschad.yaml``), a SensorLayout or a YAML path.

    Returns:
        Recordings with signals `(T, C)` float32 (acc in g, gyro in deg/s), labels indexing the classes of
        ``metadata/folds/uschad.yaml``, subject = "1" ... "14", name ``uschad/Subject<n>/a<k>t<j>``.
    """
    base = _rawio.dataset_dir(root, "USC-HAD", "Subject*/a*t*.mat", prefixes=("USC-HAD",))
    files = sorted(
        (p for d in base.glob("Subject*") if _SUBJECT_DIR.match(d.name) for p in d.glob("*.mat")),
        key=_order,
    )
    lay = _rawio.resolve_layout(layout, DEFAULT_LAYOUT)
    cols = _rawio.column_indices(lay, COLUMNS, "USC-HAD")
    codes = label_map()
    recs = []
    for path in _rawio.progress_bar(files, progress, "uschad"):
        readings, activity, subject = _read_mat(path)
        recs.append(
            Recording(
                signals=readings[:, cols].astype(np.float32),
                layout=lay,
                labels=np.full(len(readings), codes[activity], dtype=np.int64),
                subject=subject,
                name=f"{NAME}/{path.parent.name}/{path.stem}",
                rate=RATE,
                meta={"path": str(path), "trial": path.stem},
            )
        )
    logger.info("uschad: %d trials, %d subjects, %d samples",
                len(recs), len({r.subject for r in recs}), sum(r.n_samples for r in recs))
    return recs


def _order(path: Path) -> tuple:
    """Subject, activity, trial as numbers (Subject2 before Subject10, a2t1 before a10t1)."""
    m = _FILE.match(path.name)
    return (int(_SUBJECT_DIR.match(path.parent.name).group(1)), *(map(int, m.groups()) if m else (0, 0)), path.name)


def _read_mat(path: Path) -> tuple[np.ndarray, int, str]:
    """`sensor_readings` (N, 6) float64, the activity number and the subject id of one trial file."""
    try:
        mat = scipy.io.loadmat(path)
    except Exception as e:  # scipy raises ValueError, TypeError, MatReadError ... for a file it cannot parse
        raise ZeroharError(f"{path} is not a readable MATLAB .mat file ({e.__class__.__name__})") from None
    if "sensor_readings" not in mat:
        raise ZeroharError(f"{path} has no 'sensor_readings' variable; expected a USC-HAD trial file")
    x = mat["sensor_readings"]
    if x.ndim != 2 or x.shape[1] != 6 or x.shape[0] == 0:
        raise ZeroharError(f"{path}: sensor_readings has shape {x.shape}, expected (N, 6) (acc x y z, gyro x y z)")
    if x.dtype.kind not in "fiu":
        raise ZeroharError(f"{path}: sensor_readings holds {x.dtype} values, expected numbers")
    m = _FILE.match(path.name)
    named = int(m.group(1)) if m else None
    key = "activity_number" if "activity_number" in mat else "activity_numbr"  # both spellings occur
    header = _integer(mat[key], path, key) if key in mat else None
    if header is not None and header not in ACTIVITIES:
        raise ZeroharError(f"{path}: activity_number is {header}; expected 1 to 12")
    if header is None and named is None:
        raise ZeroharError(f"{path} has no activity_number and its name is not a<activity>t<trial>.mat")
    activity = header if named is None or named not in ACTIVITIES else named
    if header is not None and activity != header:
        # Subject14/a3t2.mat of the release (module docstring): the name is right, the header is a copy.
        logger.info("uschad: %s/%s says activity_number %d (%s) but is named a%d: labelled %s, as its name says",
                    path.parent.name, path.name, header, ACTIVITIES[header], named, ACTIVITIES[named])
    sub = _SUBJECT_DIR.match(path.parent.name)
    subject = str(_integer(mat["subject"], path, "subject")) if "subject" in mat else (sub.group(1) if sub else "")
    if not subject:
        raise ZeroharError(f"{path} has no subject variable and is not inside a Subject<n> folder")
    return np.asarray(x, dtype=np.float64), activity, subject


def _integer(v, path: Path, key: str) -> int:
    """An integer stored either as a MATLAB string ('7') or as a number."""
    flat = np.asarray(v).ravel()
    try:
        return int(float(str(flat[0]).strip()))
    except (IndexError, ValueError):
        raise ZeroharError(f"{path}: {key} is {flat[:1]!r}, expected an integer") from None


def download(root: str | Path, progress: bool = True) -> Path:
    """Download and unpack the USC-HAD archive (USC SIPI site) into `root`, a new or empty folder.

    Returns `root`; pass it to :func:`read`.
    """
    return fetch_archive(URL, root, progress)
