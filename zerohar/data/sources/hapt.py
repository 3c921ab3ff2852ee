"""UCI HAPT (Smartphone-Based Recognition of Human Activities and Postural Transitions), raw signals.

Reads the release's ``RawData/`` folder: ``acc_expXX_userYY.txt`` (g) and ``gyro_expXX_userYY.txt`` (rad/s),
three space-separated values per line at 50 Hz from a phone on the waist, and ``labels.txt`` with one
labelled segment per line (experiment, user, activity id 1-12, first and last sample, 0-based inclusive).
Samples outside every segment are unlabelled (-1). One recording per experiment.

Reyes-Ortiz, Oneto, Sama, Parra, Anguita (2016), UCI Machine Learning Repository, CC BY 4.0.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from zerohar.data.folds import load_folds
from zerohar.data.layout import SensorLayout
from zerohar.data.sources import fetch_archive, find_dir, layout_file, require_file
from zerohar.data.windows import Recording
from zerohar.errors import ZeroharError

logger = logging.getLogger(__name__)

NAME = "hapt"
URL = (
    "https://archive.ics.uci.edu/static/public/341/"
    "smartphone+based+recognition+of+human+activities+and+postural+transitions.zip"
)
DEFAULT_LAYOUT = layout_file(NAME)
RATE = 50.0
#: Activity ids of activity_labels.txt -> class names of metadata/folds/hapt.yaml.
ACTIVITIES = {
    1: "walking", 2: "walking upstairs", 3: "walking downstairs", 4: "sitting", 5: "standing", 6: "lying",
    7: "stand-to-sit", 8: "sit-to-stand", 9: "sit-to-lie", 10: "lie-to-sit", 11: "stand-to-lie", 12: "lie-to-stand",
}
_FILE = re.compile(r"acc_exp(\d+)_user(\d+)\.txt$")


def _load_triad(path: Path) -> np.ndarray:
    try:
        a = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise ZeroharError(f"{NAME}: {path} is not three numbers per line ({str(e).splitlines()[0]})") from None
    if a.shape[1] != 3 or len(a) == 0:
        raise ZeroharError(f"{NAME}: {path} has {a.shape[1]} values per line; expected 3 (x y z)")
    return a


def _load_segments(path: Path) -> np.ndarray:
    try:
        seg = np.loadtxt(path, dtype=np.int64, ndmin=2)
    except ValueError as e:
        raise ZeroharError(f"{NAME}: {path} is not five integers per line ({str(e).splitlines()[0]})") from None
    if seg.shape[1] != 5:
        raise ZeroharError(
            f"{NAME}: {path} has {seg.shape[1]} columns; expected 5 (experiment, user, activity, start, end)"
        )
    bad = ~np.isin(seg[:, 2], list(ACTIVITIES))
    if bad.any():
        raise ZeroharError(f"{NAME}: {path} line {int(np.argmax(bad)) + 1} has activity id {seg[bad][0, 2]}; "
                           "expected 1-12")
    return seg


def read(root: str | Path, progress: bool = True) -> list[Recording]:
    """Read every experiment of a HAPT ``RawData/`` folder.

    Args:
        root: the folder holding ``RawData/`` (or ``RawData/`` itself).
        progress: show a progress bar.

    Returns:
        One raw recording per experiment (50 Hz, 6 channels), labels indexing the classes of
        ``metadata/folds/hapt.yaml``; `meta["n_segments"]` counts its labelled segments.
    """
    raw = find_dir(root, "RawData", NAME)
    classes = list(load_folds(NAME).classes)
    class_of = np.full(max(ACTIVITIES) + 1, -1, dtype=np.int64)
    for aid, name in ACTIVITIES.items():
        class_of[aid] = classes.index(name)
    segments = _load_segments(require_file(raw / "labels.txt", NAME, "label file"))
    files = sorted((int(m[1]), int(m[2]), p) for p in raw.glob("acc_exp*_user*.txt") if (m := _FILE.search(p.name)))
    if not files:
        raise ZeroharError(f"{NAME}: {raw} holds no acc_expXX_userYY.txt files")
    layout = SensorLayout.from_yaml(DEFAULT_LAYOUT)
    recs = []
    for exp, user, acc_path in tqdm(files, desc="hapt", unit="rec", disable=not progress):
        gyro_path = require_file(acc_path.with_name(f"gyro{acc_path.name[3:]}"), NAME, "gyroscope file")
        acc, gyro = _load_triad(acc_path), _load_triad(gyro_path)
        if len(acc) != len(gyro):
            raise ZeroharError(
                f"{NAME}: {gyro_path} has {len(gyro)} samples but {acc_path.name} has {len(acc)}; expected equal"
            )
        n = len(acc)
        labels = np.full(n, -1, dtype=np.int64)
        mine = segments[(segments[:, 0] == exp) & (segments[:, 1] == user)]
        if len(mine) and (mine[:, 4].max() >= n or (mine[:, 3] > mine[:, 4]).any() or mine[:, 3].min() < 0):
            raise ZeroharError(
                f"{NAME}: labels.txt has a segment of experiment {exp} outside samples 0-{n - 1} of {acc_path.name}"
            )
        for _, _, aid, a, b in mine:
            labels[a : b + 1] = class_of[aid]  # end sample is inclusive
        recs.append(
            Recording(
                np.concatenate([acc, gyro], axis=1), layout, labels, f"{user:02d}", f"exp{exp:02d}_user{user:02d}",
                rate=RATE, meta={"path": str(acc_path), "experiment": exp, "n_segments": int(len(mine))},
            )
        )
    n_seg = sum(r.meta["n_segments"] for r in recs)
    logger.info("%s: %d recordings, %d users, %s labelled segments", NAME, len(recs),
                len({r.subject for r in recs}), f"{n_seg:,}")
    return recs


def download(root: str | Path) -> Path:
    """Fetch the UCI archive (RawData/ inside) into `root`."""
    return fetch_archive(URL, root)
