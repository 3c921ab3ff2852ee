"""WISDM Smartphone and Smartwatch Activity and Biometrics Dataset (Weiss 2019; UCI dataset 507).

Raw format, as the archive distributes it (``wisdm-dataset/raw/{phone,watch}/{accel,gyro}/``, one file per
subject and stream, ``data_<subject>_<sensor>_<device>.txt``, subjects 1600-1650)::

    1600,A,252207666810782,-0.36476135,8.793503,1.0550842;

subject id, activity code, timestamp (ns, the device's own clock), x, y, z; every line ends with ``;``.
Accelerometers are in m/s^2, gyroscopes in rad/s; the nominal rate is 20 Hz but sampling is irregular.
Each subject performed 18 activities for about 3 minutes, with the phone in the trouser pocket and the watch
on the dominant wrist. Codes A-S without N are the classes of ``metadata/folds/wisdm.yaml`` in order.

Alignment: one Recording per subject and activity with all the streams the layout asks for (by default
phone accel + gyro and watch accel + gyro, 12 channels). Streams of one device share its clock and are aligned
by timestamp; phone and watch clocks are unrelated (different epochs), so the two devices are aligned at the
start of the activity. The recording covers the span where every stream has data, on the timestamps of the
layout's first stream (irregular, as recorded); the other streams are interpolated linearly at those times
and left NaN across their own gaps longer than `max_gap`. A subject-activity pair lacking one of the
layout's streams is skipped with a warning: read a layout without that device (e.g. phone only) to keep it.
"""

from __future__ import annotations

import io
import logging
import re
from collections import Counter
from pathlib import Path

import numpy as np

from zerohar.data.folds import load_folds
from zerohar.data.layout import SensorLayout
from zerohar.data.sources import _rawio, fetch_archive
from zerohar.data.windows import Recording
from zerohar.errors import ZeroharError
from zerohar.paths import metadata_dir

logger = logging.getLogger(__name__)

NAME = "wisdm"
URL = "https://archive.ics.uci.edu/static/public/507/wisdm+smartphone+and+smartwatch+activity+and+biometrics+dataset.zip"
DEFAULT_LAYOUT = metadata_dir() / "sensors" / "wisdm.yaml"
NOMINAL_RATE = 20.0

#: activity code -> class name of metadata/folds/wisdm.yaml (activity_key.txt; there is no code N).
ACTIVITIES = {
    "A": "walking", "B": "jogging", "C": "stairs", "D": "sitting", "E": "standing", "F": "typing",
    "G": "brushing teeth", "H": "eating soup", "I": "eating chips", "J": "eating pasta", "K": "drinking from cup",
    "L": "eating sandwich", "M": "kicking soccer ball", "O": "playing catch with tennis ball",
    "P": "dribbling basketball", "Q": "writing", "R": "clapping", "S": "folding clothes",
}
DEVICES = ("phone", "watch")
SENSORS = ("accel", "gyro")
#: column name -> (device, sensor, axis index)
COLUMNS = {f"{d}_{s}_{a}": (d, s, i) for d in DEVICES for s in SENSORS for i, a in enumerate("xyz")}

_DTYPE = [("subject", "i8"), ("code", "U2"), ("t", "i8"), ("x", "f8"), ("y", "f8"), ("z", "f8")]
_FILE = re.compile(r"^data_(\d+)_(accel|gyro)_(phone|watch)\.txt$")
#: devices whose streams start further apart than this are treated as unsynchronised (aligned by start).
_SAME_CLOCK_S = 60.0


def label_map() -> dict[str, int]:
    """Activity code -> class id (index into the class list of metadata/folds/wisdm.yaml)."""
    classes = list(load_folds(NAME).classes)
    return {code: classes.index(name) for code, name in ACTIVITIES.items()}


def device_layout(*devices: str) -> SensorLayout:
    """The shipped layout restricted to some devices, "phone" and/or "watch" (e.g. to keep pairs lacking a watch).

    Raises:
        ZeroharError: an unknown device name.
    """
    unknown = [d for d in devices if d not in DEVICES]
    if unknown or not devices:
        raise ZeroharError(f"WISDM devices {list(devices)}: expected one or both of {', '.join(DEVICES)}")
    full = SensorLayout.from_yaml(DEFAULT_LAYOUT)
    keep = [ch.sensor_key for ch in full.channels if COLUMNS[ch.column][0] in devices]
    return full.select(list(dict.fromkeys(keep)))


def read(
    root: str | Path,
    progress: bool = True,
    layout: SensorLayout | str | Path | None = None,
    max_gap: float = 0.5,
) -> list[Recording]:
    """One Recording per subject and activity, aligned across the layout's streams (see the module docstring).

    Args:
        root: the unpacked archive (the folder holding ``wisdm-dataset/``, that folder, or its parent).
        progress: show a progress bar over the subjects.
        layout: the channels to read (default: ``metadata/sensors/wisdm.yaml``, phone + watch); column names
            ``<phone|watch>_<accel|gyro>_<x|y|z>``. ``device_layout("phone")`` gives the phone-only layout.
        max_gap: seconds; an interpolated stream is NaN where its own samples are further apart than this.

    Returns:
        Recordings with irregular `timestamps` (seconds from the start), signals `(T, C)` float32 in m/s^2 and
        rad/s, one label throughout (the class of the activity code), subject = "1600" ... "1650".
    """
    base = _rawio.dataset_dir(root, "WISDM", "raw/*/*/data_*_*_*.txt", prefixes=("wisdm-dataset",))
    lay = _rawio.resolve_layout(layout, DEFAULT_LAYOUT)
    wanted = _rawio.column_indices(lay, COLUMNS, "WISDM")  # (device, sensor, axis) per channel
    streams = list(dict.fromkeys((d, s) for d, s, _ in wanted))  # layout order
    files: dict[tuple[str, str], dict[str, Path]] = {}
    for d, s in streams:
        folder = base / "raw" / d / s
        if not folder.is_dir():
            raise ZeroharError(f"WISDM folder {folder} does not exist; the layout needs the {d} {s} stream")
        files[(d, s)] = {m.group(1): p for p in sorted(folder.glob("data_*.txt")) if (m := _FILE.match(p.name))}
    subjects = sorted(set().union(*(f.keys() for f in files.values())), key=int)
    codes = label_map()
    recs, skipped = [], Counter()
    for sid in _rawio.progress_bar(subjects, progress, "wisdm", total=len(subjects)):
        data = {st: _read_stream(files[st][sid], sid) if sid in files[st] else {} for st in streams}
        for code in sorted(set().union(*(v.keys() for v in data.values()))):
            if code not in codes:
                skipped[f"unknown activity code {code!r}"] += 1
                continue
            missing = [f"{d} {s}" for (d, s) in streams if code not in data[(d, s)]]
            if missing:
                skipped[f"no {' / '.join(missing)} data"] += 1
                logger.debug("wisdm: subject %s activity %s lacks %s; skipped", sid, code, missing)
                continue
            rec = _align(sid, code, {st: data[st][code] for st in streams}, wanted, lay, codes[code], max_gap)
            if rec is None:
                skipped["streams do not overlap in time"] += 1
                continue
            rec.meta["files"] = {f"{d}_{s}": str(files[(d, s)][sid]) for d, s in streams}
            rec.meta["path"] = f"{files[streams[0]][sid]} (activity {code})"
            recs.append(rec)
    if skipped:
        logger.warning("wisdm: skipped subject-activity pairs: %s",
                       ", ".join(f"{n} x {why}" for why, n in skipped.most_common()))
    if not recs:
        raise ZeroharError(
            f"WISDM under {base}: no subject and activity has all the streams the layout needs "
            f"({', '.join(f'{d} {s}' for d, s in streams)})"
        )
    logger.info("wisdm: %d recordings (subject x activity), %d subjects, %d samples",
                len(recs), len({r.subject for r in recs}), sum(r.n_samples for r in recs))
    return recs


# ---------------------------------------------------------------------------------------------- parsing
def _read_stream(path: Path, subject: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """activity code -> (timestamps ns int64 sorted and unique, values (n, 3) float64) of one raw file."""
    text = path.read_text(errors="replace")
    if not text.strip():
        raise ZeroharError(f"{path} is empty; expected lines 'subject,activity,timestamp,x,y,z;'")
    try:
        a = np.loadtxt(io.StringIO(text.replace(";", "")), delimiter=",", dtype=_DTYPE, ndmin=1)
    except ValueError:
        raise _diagnose(path) from None
    bad = np.flatnonzero(a["subject"] != int(subject))
    if bad.size:
        raise ZeroharError(
            f"{path} line {bad[0] + 1}: subject {a['subject'][bad[0]]}, expected {subject} as in the file name"
        )
    out = {}
    a_codes = np.char.strip(a["code"])
    for code in np.unique(a_codes):
        sel = a[a_codes == code]
        t = sel["t"]
        xyz = np.stack([sel["x"], sel["y"], sel["z"]], axis=1)  # (n, 3)
        if np.any(np.diff(t) < 0):
            # Sensor events can be delivered in batches out of order; time order is what they mean.
            order = np.argsort(t, kind="stable")
            n_back = int((np.diff(t) < 0).sum())
            logger.debug("%s activity %s: %d samples out of time order, sorted", path, code, n_back)
            t, xyz = t[order], xyz[order]
        keep = np.concatenate([[True], np.diff(t) > 0])
        if not keep.all():
            logger.debug("%s activity %s: %d duplicate timestamps dropped", path, code, int((~keep).sum()))
            t, xyz = t[keep], xyz[keep]
        out[str(code)] = (t, xyz)
    return out


def _diagnose(path: Path) -> ZeroharError:
    with open(path, errors="replace") as f:
        for lineno, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            fields = line.rstrip(";").split(",")
            if len(fields) != 6:
                return ZeroharError(
                    f"{path} line {lineno} has {len(fields)} fields, expected 6 (subject,activity,timestamp,x,y,z;)"
                )
            checks = [(0, int, "a subject id"), (2, int, "an integer timestamp in ns")]
            checks += [(i, float, "a number") for i in (3, 4, 5)]
            for i, conv, what in checks:
                try:
                    conv(fields[i])
                except ValueError:
                    return ZeroharError(
                        f"{path} line {lineno} field {i + 1} holds {fields[i][:30]!r}, expected {what}"
                    )
            if not (len(fields[1].strip()) == 1 and fields[1].strip().isalpha()):
                return ZeroharError(
                    f"{path} line {lineno} field 2 holds {fields[1][:30]!r}, expected an activity letter"
                )
    return ZeroharError(f"{path} is not a WISDM raw file (lines 'subject,activity,timestamp,x,y,z;')")


# ---------------------------------------------------------------------------------------------- alignment
def _align(sid, code, data, wanted, lay, label, max_gap) -> Recording | None:
    """Put the streams of one subject-activity pair on the timestamps of the first stream (see module doc)."""
    rel = {}
    for dev in dict.fromkeys(d for d, _ in data):
        dev_streams = {st: v for st, v in data.items() if st[0] == dev}
        starts = [v[0][0] for v in dev_streams.values()]
        if (max(starts) - min(starts)) / 1e9 > _SAME_CLOCK_S:
            logger.debug("wisdm: subject %s activity %s: %s streams start %.0f s apart; aligned by start",
                         sid, code, dev, (max(starts) - min(starts)) / 1e9)
            for st, (t, xyz) in dev_streams.items():
                rel[st] = ((t - t[0]) / 1e9, xyz)
        else:
            t0 = min(starts)
            for st, (t, xyz) in dev_streams.items():
                rel[st] = ((t - t0) / 1e9, xyz)
    start = max(t[0] for t, _ in rel.values())
    end = min(t[-1] for t, _ in rel.values())
    if end - start < 1.0:
        return None
    ref_t, _ = rel[next(iter(data))]
    ref_t = ref_t[(ref_t >= start) & (ref_t <= end)]
    signals = np.empty((len(ref_t), len(wanted)), dtype=np.float32)
    for c, (d, s, axis) in enumerate(wanted):
        t, xyz = rel[(d, s)]
        signals[:, c] = _interp(ref_t, t, xyz[:, axis], max_gap)
    return Recording(
        signals=signals,
        layout=lay,
        labels=np.full(len(ref_t), label, dtype=np.int64),
        subject=sid,
        name=f"{NAME}/{sid}/{code}",
        timestamps=ref_t - ref_t[0],
        meta={"activity_code": code, "nominal_rate": NOMINAL_RATE},
    )


def _interp(at: np.ndarray, t: np.ndarray, v: np.ndarray, max_gap: float) -> np.ndarray:
    """Linear interpolation of (t, v) at `at`; NaN where the enclosing samples are more than max_gap apart."""
    out = np.interp(at, t, v)
    right = np.clip(np.searchsorted(t, at, side="left"), 0, len(t) - 1)
    left = np.clip(right - 1, 0, len(t) - 1)
    exact = t[right] == at
    out[~exact & (t[right] - t[left] > max_gap)] = np.nan
    return out


def download(root: str | Path, progress: bool = True) -> Path:
    """Download and unpack the UCI archive into `root`, a new or empty folder (a nested zip is unpacked too).

    Returns `root`; pass it to :func:`read`.
    """
    return fetch_archive(URL, root, progress)
