"""sp-sw-har: a smartphone in the trouser pocket and a smartwatch on the wrist, recorded at once.

Reads ``DATA/sNN/sNN_YY_{sp,sw}.csv`` (x_acc, y_acc, z_acc in m/s^2; x_gyro, y_gyro, z_gyro in rad/s;
timestamp in Unix ms; label), about 100 Hz with jitter and batches of equal timestamps. The two files of one
execution share the clock: both are interpolated onto one 100 Hz time base over the interval both cover, giving
one recording with 12 channels (phone acc, phone gyro, watch acc, watch gyro); `to_canonical` then brings it
to 30 Hz. A sample whose two labels disagree (within a few ms of a transition) is unlabelled.

Matey-Sanz, Casteleyn, Granell (2023), Data in Brief 109809, doi:10.5281/zenodo.8398688, CC BY 4.0.
"""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from zerohar.data.folds import load_folds
from zerohar.data.layout import SensorLayout
from zerohar.data.sources import fetch_archive, find_dir, layout_file
from zerohar.data.transforms import interp_rows, merge_duplicate_times, nearest_labels
from zerohar.data.windows import Recording
from zerohar.errors import ZeroharError

logger = logging.getLogger(__name__)

NAME = "spswhar"
DIRNAME = "sp-sw-har"
URL = "https://github.com/GeoTecINIT/sp-sw-har-dataset/archive/refs/heads/main.zip"
DEFAULT_LAYOUT = layout_file(NAME)
RATE = 100.0  # common time base of the two devices (their nominal rate)
#: One window per labelled segment (see `make_windows`): the executions chain activities of 1-3 s (a seated
#: stretch, standing up, turning, sitting down), so a 5 s sliding window is almost never more than half one
#: of them and only walking would remain.
PER_TRIAL = "segment"
COLUMNS = ["x_acc", "y_acc", "z_acc", "x_gyro", "y_gyro", "z_gyro", "timestamp", "label"]
#: Raw label -> class name of metadata/folds/spswhar.yaml.
LABELS = {
    "SEATED": "seated", "STANDING_UP": "standing up", "WALKING": "walking", "TURNING": "turning",
    "SITTING_DOWN": "sitting down",
}
_FILE = re.compile(r"^(s\d+)_(\d+)_sp\.csv$")


def _read_device(path: Path, class_of: dict[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Times (s), signals (n, 6), class ids of one device file (repeated timestamps averaged) and how many
    samples were merged that way."""
    with open(path) as f:
        header = f.readline().strip().split(",")
        if header != COLUMNS:
            raise ZeroharError(f"{NAME}: {path} has columns {header}; expected {COLUMNS}")
        lines = f.readlines()
    if not lines:
        raise ZeroharError(f"{NAME}: {path} has no data rows")
    try:
        a = np.loadtxt(lines, delimiter=",", usecols=range(7), dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise ZeroharError(f"{NAME}: {path} has a non-numeric value ({str(e).splitlines()[0]})") from None
    raw = np.loadtxt(lines, delimiter=",", usecols=7, dtype=str, ndmin=1)
    names, inv = np.unique(raw, return_inverse=True)
    unknown = [n for n in names.tolist() if n not in class_of]
    if unknown:
        raise ZeroharError(f"{NAME}: {path} has label {unknown[0]!r}; expected one of {', '.join(LABELS)}")
    labels = np.array([class_of[n] for n in names], dtype=np.int64)[inv]
    t = a[:, 6] / 1000.0
    back = np.flatnonzero(np.diff(t) < 0)
    if len(back):
        raise ZeroharError(
            f"{NAME}: {path} line {int(back[0]) + 3}: timestamp goes backwards; expected non-decreasing Unix ms"
        )
    t, x, labels = merge_duplicate_times(t, a[:, :6], labels)
    if len(t) < 2:
        raise ZeroharError(f"{NAME}: {path} has fewer than 2 distinct timestamps; expected a recording")
    return t, x, labels, len(a) - len(t)


def _execution_info(data: Path) -> dict[str, dict]:
    path = data / "executions_info.csv"
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        return {row["execution_id"]: dict(row) for row in csv.DictReader(f)}


def read(root: str | Path, progress: bool = True) -> list[Recording]:
    """Read every execution with both a phone and a watch file.

    Args:
        root: the folder holding ``DATA/`` (or ``DATA/`` itself).
        progress: show a progress bar.

    Returns:
        One raw recording per execution: 12 channels at 100 Hz over the interval both devices cover,
        `meta["start_unix_s"]` its start, execution info (phone orientation, turn directions) in meta.
    """
    data = find_dir(root, "DATA", NAME)
    classes = list(load_folds(NAME).classes)
    class_of = {raw: classes.index(name) for raw, name in LABELS.items()}
    files = sorted(p for p in data.glob("s*/s*_sp.csv") if _FILE.match(p.name))
    if not files:
        raise ZeroharError(f"{NAME}: {data} holds no sNN/sNN_YY_sp.csv files")
    info = _execution_info(data)
    layout = SensorLayout.from_yaml(DEFAULT_LAYOUT)
    recs, unpaired, merged = [], [], 0
    for sp_path in tqdm(files, desc="spswhar", unit="rec", disable=not progress):
        sw_path = sp_path.with_name(sp_path.name.replace("_sp.csv", "_sw.csv"))
        if not sw_path.is_file():
            unpaired.append(sp_path.name)
            continue
        tp, xp, lp, mp = _read_device(sp_path, class_of)
        tw, xw, lw, mw = _read_device(sw_path, class_of)
        merged += mp + mw
        lo, hi = max(tp[0], tw[0]), min(tp[-1], tw[-1])
        if hi - lo < 1.0 / RATE:
            raise ZeroharError(f"{NAME}: {sp_path.name} and {sw_path.name} do not overlap in time; "
                               "expected two devices recording at once")
        grid = lo + np.arange(int(np.floor((hi - lo) * RATE + 1e-6)) + 1) / RATE
        signals = np.concatenate([interp_rows(grid, tp, xp), interp_rows(grid, tw, xw)], axis=1)  # (T, 12)
        a = nearest_labels(grid, tp, lp)
        labels = np.where(a == nearest_labels(grid, tw, lw), a, -1)
        m = _FILE.match(sp_path.name)
        execution = f"{m[1]}_{m[2]}"
        meta = {"path": str(sp_path), "start_unix_s": float(lo), **{k: v for k, v in info.get(execution, {}).items()
                                                           if k != "execution_id"}}
        recs.append(Recording(signals, layout, labels, m[1], execution, rate=RATE, meta=meta))
    if unpaired:
        logger.warning("%s: %d phone files without a watch file skipped (%s)", NAME, len(unpaired), unpaired[0])
    logger.info("%s: %d executions, %d subjects; %d samples with a repeated timestamp averaged into one", NAME,
                len(recs), len({r.subject for r in recs}), merged)
    return recs


def download(root: str | Path) -> Path:
    """Fetch the dataset's GitHub archive (DATA/ inside) into `root`."""
    return fetch_archive(URL, root)
