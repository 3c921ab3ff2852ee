"""OPPORTUNITY Activity Recognition, mid-level gestures (Roggen et al. 2010; UCI dataset 226).

Raw format, as the archive distributes it (``OpportunityUCIDataset/dataset/S1-ADL1.dat`` ... ``S4-Drill.dat``,
column meanings in ``dataset/column_names.txt``): one file per session (5 ADL runs and 1 drill run per subject,
4 subjects), space-separated text, 250 columns, one row per 1/30 s::

    1 MILLISEC (ms)
    2-37    12 body-worn 3D accelerometers (RKN^ HIP LUA^ RUA_ LH BACK RKN_ RWR RUA^ LUA_ LWR RH), milli g
    38-102  5 Xsens IMUs (BACK RUA RLA LUA LLA), 13 columns each: acc X/Y/Z in milli g
            (value = round(m/s^2 / 9.8 * 1000)), gyro X/Y/Z and magnetic X/Y/Z (value * 1000, "unit = unknown"),
            4 quaternion components
    103-243 shoe IMUs, object and ambient sensors, location tags
    244 Locomotion  245 HL_Activity  246 LL_Left_Arm  247 LL_Left_Arm_Object  248 LL_Right_Arm
    249 LL_Right_Arm_Object  250 ML_Both_Arms

Missing samples (lost wireless packets) are ``NaN`` and stay NaN. Labels come from ML_Both_Arms: its 17 gesture
codes are merged into the 11 classes of ``metadata/folds/opportunity.yaml`` (door 1/2 and drawer 1/2/3
merged, as the ZeroHAR paper); 0 (null, no gesture) is -1.

Units: only accelerometers have a documented unit (milli g). The parser divides every accelerometer column by
1000 so the channels are in g, the unit the layout declares; the IMU gyroscope and magnetometer columns are
left out because column_names.txt gives their unit as unknown. The shipped layout reads the accelerometers of
the 5 IMUs (15 channels); a custom layout may add the 12 body-worn accelerometers (column names as in
column_names.txt, e.g. ``Accelerometer RWR accX``), though those lose many packets.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from zerohar.data.folds import load_folds
from zerohar.data.layout import SensorLayout
from zerohar.data.sources import _rawio, fetch_archive
from zerohar.data.windows import Recording
from zerohar.errors import ZeroharError
from zerohar.paths import metadata_dir

logger = logging.getLogger(__name__)

NAME = "opportunity"
URL = "https://archive.ics.uci.edu/static/public/226/opportunity+activity+recognition.zip"
DEFAULT_LAYOUT = metadata_dir() / "sensors" / "opportunity.yaml"
RATE = 30.0
N_COLUMNS = 250
TIME_COLUMN = 0
LABEL_COLUMN = 249  # ML_Both_Arms (column 250 of column_names.txt)
LABEL_TRACKS = {  # 0-based column -> track name (label_legend.txt)
    243: "Locomotion", 244: "HL_Activity", 245: "LL_Left_Arm", 246: "LL_Left_Arm_Object",
    247: "LL_Right_Arm", 248: "LL_Right_Arm_Object", 249: "ML_Both_Arms",
}
MILLI_G = 1000.0

#: ML_Both_Arms code -> class name of metadata/folds/opportunity.yaml (0 = null -> -1).
GESTURES = {
    406516: "open door", 406517: "open door",  # Open Door 1, Open Door 2
    404516: "close door", 404517: "close door",  # Close Door 1, Close Door 2
    406520: "open fridge", 404520: "close fridge",
    406505: "open dishwasher", 404505: "close dishwasher",
    406519: "open drawer", 406511: "open drawer", 406508: "open drawer",  # Drawer 1, 2, 3
    404519: "close drawer", 404511: "close drawer", 404508: "close drawer",
    408512: "clean table", 407521: "drink from cup", 405506: "toggle switch",
}
NULL = 0

BODY_ACCELEROMETERS = ("RKN^", "HIP", "LUA^", "RUA_", "LH", "BACK", "RKN_", "RWR", "RUA^", "LUA_", "LWR", "RH")
IMUS = ("BACK", "RUA", "RLA", "LUA", "LLA")
#: accelerometer column name (as in column_names.txt) -> 0-based column index. Only columns with a known unit.
COLUMNS = {
    f"Accelerometer {loc} acc{a}": 1 + 3 * i + j
    for i, loc in enumerate(BODY_ACCELEROMETERS)
    for j, a in enumerate("XYZ")
} | {
    f"InertialMeasurementUnit {imu} acc{a}": 37 + 13 * i + j  # 13 columns per IMU: acc, gyro, magnetic, quaternion
    for i, imu in enumerate(IMUS)
    for j, a in enumerate("XYZ")
}

_FILE = re.compile(r"^(S\d+)-(ADL\d+|Drill)\.dat$")


def label_map() -> dict[int, int]:
    """ML_Both_Arms code -> class id (index into the class list of metadata/folds/opportunity.yaml)."""
    classes = list(load_folds(NAME).classes)
    return {code: classes.index(name) for code, name in GESTURES.items()}


def read(
    root: str | Path,
    progress: bool = True,
    layout: SensorLayout | str | Path | None = None,
    sessions: tuple[str, ...] = ("ADL", "Drill"),
) -> list[Recording]:
    """One Recording per session file (``S<n>-ADL<k>.dat``, ``S<n>-Drill.dat``), 30 Hz, with timestamps.

    Args:
        root: the unpacked archive (the folder holding ``OpportunityUCIDataset/``, that folder, or its parent).
        progress: show a progress bar over the files.
        layout: the channels to read (default: ``metadata/sensors/opportunity.yaml``), a SensorLayout or a YAML
            path; every channel must be an accelerometer column (see COLUMNS), unit g.
        sessions: which runs to read: "ADL" (the five daily-living runs), "Drill" (the gesture drill), or both.

    Returns:
        Recordings with signals `(T, C)` float32 in g (NaN where packets were lost), labels indexing the classes
        of ``metadata/folds/opportunity.yaml`` (-1 = null), subject = "S1" ... "S4".
    """
    if not sessions or set(sessions) - {"ADL", "Drill"}:
        raise ZeroharError(f"Opportunity sessions {tuple(sessions)}: expected 'ADL' and/or 'Drill'")
    base = _rawio.dataset_dir(root, "Opportunity", "dataset/S*-*.dat", prefixes=("OpportunityUCIDataset",))
    files = [
        p for p in sorted((base / "dataset").glob("S*-*.dat"))
        if (m := _FILE.match(p.name)) and m.group(2).rstrip("0123456789") in sessions
    ]
    if not files:
        raise ZeroharError(f"{base / 'dataset'} holds no {' or '.join(sessions)} session files (S<n>-ADL<k>.dat)")
    lay = _rawio.resolve_layout(layout, DEFAULT_LAYOUT)
    cols = _rawio.column_indices(lay, COLUMNS, "Opportunity")
    wrong = [c.column for c in lay.channels if c.unit != "g"]
    if wrong:
        raise ZeroharError(
            f"Opportunity sensor layout declares {wrong} in a unit other than g; the parser converts the raw "
            "milli-g accelerometer columns to g, so declare unit: g"
        )
    codes = label_map()
    recs = []
    for path in _rawio.progress_bar(files, progress, "opportunity"):
        table = _rawio.read_table(path, N_COLUMNS)
        t_ms = table[:, TIME_COLUMN]
        _rawio.check_times(t_ms, path)
        raw = table[:, LABEL_COLUMN]
        unknown = set(np.unique(raw[np.isfinite(raw)]).astype(np.int64).tolist()) - set(codes) - {NULL}
        if unknown:
            logger.warning("%s: ML_Both_Arms codes %s are not gestures of the class list; labelled -1", path,
                           sorted(unknown))
        subject, session = _FILE.match(path.name).groups()
        recs.append(
            Recording(
                signals=(table[:, cols] / MILLI_G).astype(np.float32),
                layout=lay,
                labels=_rawio.map_codes(raw, codes),
                subject=subject,
                name=f"{NAME}/{path.stem}",
                rate=RATE,
                timestamps=t_ms / 1000.0,
                meta={"path": str(path), "session": session,
                      "nan_fraction": float(np.isnan(table[:, cols]).mean())},
            )
        )
        del table
    n = sum(r.n_samples for r in recs)
    labelled = sum(int((r.labels >= 0).sum()) for r in recs)
    logger.info("opportunity: %d sessions, %d subjects, %d samples (%.1f%% in a gesture)",
                len(recs), len({r.subject for r in recs}), n, 100.0 * labelled / max(n, 1))
    return recs


def download(root: str | Path, progress: bool = True) -> Path:
    """Download and unpack the UCI archive into `root`, a new or empty folder (a nested zip is unpacked too).

    Returns `root`; pass it to :func:`read`.
    """
    return fetch_archive(URL, root, progress)
