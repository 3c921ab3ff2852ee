"""Shoulder physiotherapy exercises, a smartwatch on the wrist (Burns et al. 2018).

Reads the plain-file form of the release: ``index.csv`` (file, subject, side, code, exercise, samples; one row
per recording) and ``series/NNN.csv`` (ax, ay, az in g; wx, wy, wz in rad/s; 50 Hz). Each file is one
exercise set, labelled as a whole. ``side`` (0/1, the arm, as released) is kept in ``meta["side"]``.

Burns, Leung, Hardisty, Whyne, Henry, McLachlan (2018), Physiological Measurement 39(7); released with the
seglearn package (BSD-3-Clause) as ``watch_dataset.npy``.
"""

from __future__ import annotations

import csv
import logging
import tempfile
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from zerohar.data.folds import load_folds
from zerohar.data.layout import SensorLayout
from zerohar.data.sources import fetch_file, layout_file, require_file
from zerohar.data.windows import Recording
from zerohar.errors import ZeroharError

logger = logging.getLogger(__name__)

NAME = "shoulder"
DIRNAME = "shoulder-exercises"
URL = "https://github.com/dmbee/seglearn/raw/master/seglearn/data/watch_dataset.npy"
DEFAULT_LAYOUT = layout_file(NAME)
RATE = 50.0
INDEX_COLUMNS = ["file", "subject", "side", "code", "exercise", "samples"]
SERIES_COLUMNS = ["ax", "ay", "az", "wx", "wy", "wz"]
#: Exercise codes of the release -> class names of metadata/folds/shoulder.yaml.
CODES = {
    "PEN": "pendulum", "ABD": "abduction", "FEL": "forward elevation", "IR": "internal rotation",
    "ER": "external rotation", "TRAP": "lower trapezius row", "ROW": "bent-over row",
}


def _read_index(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or [c.strip() for c in rows[0]] != INDEX_COLUMNS:
        found = rows[0] if rows else []
        raise ZeroharError(f"{NAME}: {path} has columns {found}; expected {INDEX_COLUMNS}")
    out = []
    for i, r in enumerate(rows[1:], start=2):
        if len(r) != len(INDEX_COLUMNS):
            raise ZeroharError(f"{NAME}: {path} line {i} has {len(r)} fields; expected {len(INDEX_COLUMNS)}")
        d = dict(zip(INDEX_COLUMNS, (c.strip() for c in r)))
        if d["code"] not in CODES:
            raise ZeroharError(f"{NAME}: {path} line {i} has exercise code {d['code']!r}; expected one of "
                               f"{', '.join(CODES)}")
        try:
            d["subject"], d["samples"] = int(d["subject"]), int(d["samples"])
        except ValueError:
            raise ZeroharError(f"{NAME}: {path} line {i}: subject and samples must be integers") from None
        out.append(d)
    return out


def _read_series(path: Path) -> np.ndarray:
    with open(path) as f:
        header = [c.strip() for c in f.readline().strip().split(",")]
        if header != SERIES_COLUMNS:
            raise ZeroharError(f"{NAME}: {path} has columns {header}; expected {SERIES_COLUMNS}")
        try:
            a = np.loadtxt(f, delimiter=",", dtype=np.float64, ndmin=2)
        except ValueError as e:
            raise ZeroharError(f"{NAME}: {path} has a non-numeric value ({str(e).splitlines()[0]})") from None
    if a.shape[1] != 6:
        raise ZeroharError(f"{NAME}: {path} rows have {a.shape[1]} values; expected 6")
    return a


def read(root: str | Path, progress: bool = True) -> list[Recording]:
    """Read every exercise set listed in ``index.csv``.

    Args:
        root: the folder holding ``index.csv`` and ``series/``.
        progress: show a progress bar.

    Returns:
        One raw recording per exercise set (50 Hz, 6 channels), every sample labelled with the exercise.
    """
    root = Path(root)
    if not root.is_dir():
        raise ZeroharError(f"{NAME}: data directory {root} does not exist")
    index = _read_index(require_file(root / "index.csv", NAME, "index file"))
    classes = list(load_folds(NAME).classes)
    layout = SensorLayout.from_yaml(DEFAULT_LAYOUT)
    recs = []
    for row in tqdm(index, desc="shoulder", unit="rec", disable=not progress):
        path = require_file(root / row["file"], NAME, "series file")
        sig = _read_series(path)
        if len(sig) != row["samples"]:
            raise ZeroharError(
                f"{NAME}: {path} has {len(sig)} samples but index.csv says {row['samples']}; expected equal"
            )
        label = classes.index(CODES[row["code"]])
        # seglearn's load_watch documents side 1 = right arm, 0 = left arm.
        arm = {"1": "right", "0": "left"}.get(row["side"], row["side"])
        recs.append(
            Recording(
                sig, layout, np.full(len(sig), label, dtype=np.int64), f"{row['subject']:02d}", Path(row["file"]).stem,
                rate=RATE, meta={"path": str(path), "side": row["side"], "arm": arm, "exercise": row["exercise"]},
            )
        )
    logger.info("%s: %d recordings, %d subjects", NAME, len(recs), len({r.subject for r in recs}))
    return recs


def download(root: str | Path) -> Path:
    """Fetch seglearn's ``watch_dataset.npy`` and write it as ``index.csv`` + ``series/*.csv`` under `root`.

    The release is a pickled dict of arrays; it is unpacked with a restricted unpickler that only rebuilds
    numpy arrays, lists and plain values (never arbitrary objects).
    """
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise ZeroharError(f"download destination {root} is not empty; choose an empty or new folder")
    with tempfile.TemporaryDirectory() as tmp:
        npy = fetch_file(URL, Path(tmp) / "watch_dataset.npy")
        convert_release(npy, root)
    return root


def convert_release(npy: str | Path, root: str | Path) -> None:
    """Write the released ``watch_dataset.npy`` (dict: X, y, subject, side, y_labels) as plain files."""
    data = _restricted_load(Path(npy))
    try:
        xs, ys, subjects, sides = data["X"], data["y"], data["subject"], data["side"]
        names = list(data["y_labels"])
    except (KeyError, TypeError):
        raise ZeroharError(f"{npy} is not seglearn's watch dataset (expected keys X, y, subject, side)") from None
    root = Path(root)
    (root / "series").mkdir(parents=True, exist_ok=True)
    code_of = {v: k for k, v in CODES.items()}
    rows = []
    for i, (x, y, s, side) in enumerate(zip(xs, ys, subjects, sides)):
        code = str(names[int(y)])
        exercise = CODES.get(code) or code_of.get(code.lower(), code)
        code = code if code in CODES else code_of.get(exercise, code)
        rel = f"series/{i:03d}.csv"
        np.savetxt(root / rel, np.asarray(x, dtype=np.float64), delimiter=",", fmt="%.6f",
                   header=",".join(SERIES_COLUMNS), comments="")
        rows.append([rel, int(s), int(side), code, exercise, len(x)])
    with open(root / "index.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(INDEX_COLUMNS)
        w.writerows(rows)


def _restricted_load(path: Path):
    import io
    import pickle

    allowed = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"), ("builtins", "list"), ("builtins", "dict"),
        ("_codecs", "encode"),  # how protocol-2 pickles store bytes
    }

    class _Only(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) not in allowed:
                raise ZeroharError(f"{path} holds an object of type {module}.{name}; refusing to unpickle it")
            return super().find_class(module, name)

    with open(path, "rb") as f:
        raw = f.read()
    # An .npy of dtype object: skip its header, then the payload is one pickle.
    buf = io.BytesIO(raw)
    fmt = np.lib.format
    version = fmt.read_magic(buf)
    (fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0)(buf)
    obj = _Only(buf).load()
    return obj.item() if isinstance(obj, np.ndarray) and obj.dtype == object and obj.shape == () else obj
