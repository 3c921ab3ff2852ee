"""The compact HAPT derivative shipped inside the package (``zerohar/data/embedded/hapt30.npz``).

All 61 UCI HAPT recordings (30 users) in canonical form: 30 Hz, acc in g, gyro in rad/s, stored as float16
signals and int8 labels in one ``.npz`` with a JSON header (no pickle). Built from the UCI raw files by
``scripts/build_embedded_hapt.py``; ``load_windowset("hapt")`` reads it when no data folder is given, so the
demo and core tests run on a fresh clone without network. Licence: CC BY 4.0 (see HAPT_ATTRIBUTION.md beside
the file).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from zerohar.data.layout import SensorLayout
from zerohar.data.windows import Recording
from zerohar.errors import ZeroharError
from zerohar.paths import embedded_dir

NAME = "hapt"
URL = None
FORMAT = "zerohar.EmbeddedRecordings/1"
FILENAME = "hapt30.npz"


def path() -> Path:
    """Where the embedded HAPT derivative lives."""
    return embedded_dir() / FILENAME


def write(recs: list[Recording], class_names: list[str], out: str | Path, provenance: dict) -> Path:
    """Store canonical recordings compactly (float16 signals, int8 labels, JSON header), atomically.

    Args:
        recs: canonical recordings with one layout and one rate.
        class_names: the class ordering their labels index (at most 127 classes).
        out: the .npz to write.
        provenance: source, licence and how it was built; stored in the header.
    """
    out = Path(out)
    if len(class_names) > 127:
        raise ValueError("int8 labels hold at most 127 classes")
    offsets = np.cumsum([0] + [r.n_samples for r in recs]).astype(np.int64)
    header = {
        "format": FORMAT,
        "rate": recs[0].rate,
        "class_names": list(class_names),
        "layout": recs[0].layout.to_dict(),
        "recordings": [{"name": r.name, "subject": r.subject} for r in recs],
        "provenance": provenance,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".tmp.npz")
    os.close(fd)
    try:
        with open(tmp, "wb") as f:
            np.savez_compressed(
                f,
                signals=np.concatenate([r.signals for r in recs]).astype(np.float16),
                labels=np.concatenate([r.labels for r in recs]).astype(np.int8),
                offsets=offsets,
                header=np.array(json.dumps(header)),
            )
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; a shipped file is readable by all
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def read(root: str | Path | None = None, progress: bool = True) -> list[Recording]:
    """The embedded recordings, canonical at 30 Hz (`root`: another file of the same format, for tests).

    Returns:
        Recordings (float32 signals, `rate` set); `meta["class_names"]` is the class ordering.
    """
    p = Path(root) if root is not None else path()
    if not p.is_file():
        raise ZeroharError(f"the embedded HAPT data {p} is missing; rebuild it with scripts/build_embedded_hapt.py")
    try:
        with np.load(p, allow_pickle=False) as z:
            header = json.loads(str(z["header"]))
            if header.get("format") != FORMAT:
                raise KeyError("format")
            signals, labels, offsets = z["signals"], z["labels"], z["offsets"]
    except Exception as e:  # noqa: BLE001 - a damaged or foreign file
        raise ZeroharError(f"{p} is not zerohar's embedded data ({e.__class__.__name__})") from None
    layout = SensorLayout.from_dict(header["layout"], str(p))
    classes = header["class_names"]
    recs = []
    for (a, b), info in zip(zip(offsets[:-1], offsets[1:]), header["recordings"]):
        recs.append(
            Recording(
                signals[a:b].astype(np.float32), layout, labels[a:b].astype(np.int64), info["subject"],
                info["name"], rate=float(header["rate"]), meta={"path": str(p), "class_names": classes},
            )
        )
    return recs


def download(root: str | Path) -> Path:
    raise ZeroharError("the embedded HAPT data ships with zerohar; there is nothing to download")
