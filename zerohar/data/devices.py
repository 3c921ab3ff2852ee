"""Raw wearable device files (Axivity `.cwa` / `.cwa.gz`, ActiGraph `.gt3x`, GENEActiv `.bin`) through actipy.

:func:`read_device` reads a device file with the PyPI package `actipy` (the reader of OxWearables' stepcount
and actinet; it runs the vendors' formats through small Java parsers, so it needs a Java runtime), with:

- **gravity calibration** (van Hees et al. 2014, `actipy.processing.calibrate_gravity` defaults: stationary
  10 s windows with a standard deviation below 15 mg on every axis, at least 50 of them, calibration cube
  0.3 g). actipy skips the calibration (and says why) when a recording has too few stationary windows; the
  error before / after (mg) and whether it was applied are in the returned info.
- **non-wear detection** (`actipy.processing.flag_nonwear` defaults, which zerohar relies on: a stationary
  episode, every axis' standard deviation below ``stdtol = 15 mg`` over rolling ``window = 10 s`` windows,
  lasting longer than ``patience = 90 min``, is non-wear). actipy sets those samples to NaN; zerohar turns
  that into a per-sample mask (:attr:`DeviceRecording.nonwear`) and fills the samples forward with the
  last worn value (the device lay still), so the stream stays continuous and the resampling filter does not
  ring at non-wear borders. Non-wear windows are never classified.

No low-pass and no resampling in actipy (``lowpass_hz=None, resample_hz=None``): the samples go at the
device's own rate through zerohar's one resampling path (:func:`zerohar.data.transforms.canonical_stream`:
anti-alias Butterworth at 80 % of the 15 Hz Nyquist frequency, linear interpolation onto the 30 Hz grid),
exactly as a CSV recording and the training data do. actipy's own resampling would be a second, different
path, and its default 20 Hz low-pass lies above the 15 Hz Nyquist frequency of 30 Hz anyway.

Gyroscopes: actipy returns ``gyro_x, gyro_y, gyro_z`` (deg/s) for an Axivity AX6, so an AX6 gives two sensors
(accelerometer in g and gyroscope in deg/s, which zerohar converts to rad/s). Calibration applies to the
accelerometer only; non-wear masks both. Temperature and light are not used.

Timestamps: actipy gives the device clock as written (naive; devices keep the clock they were set to and do
not change it at daylight saving). They are returned as seconds since the Unix epoch *of the naive clock
reading* (the clock read as if it were UTC), the convention of zerohar's CSV reader for naive datetimes.

The whole file is held in memory (as in actipy, stepcount and actinet): a week at 100 Hz of an AX3 is about
60 M samples, ~1.5 GB for actipy's frame during the read; zerohar then streams it in chunks.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from zerohar.data.layout import Channel, SensorLayout, check_layout_flags
from zerohar.errors import ZeroharError
from zerohar.io import check_input_file, note_input

logger = logging.getLogger(__name__)

#: Suffixes read as device files (lower case).
SUFFIXES = (".cwa", ".cwa.gz", ".gt3x", ".bin")
#: Device name of each file type (an AX6 is recognised by its gyroscope).
DEVICE_NAMES = {".cwa": "Axivity AX3", ".cwa.gz": "Axivity AX3", ".gt3x": "ActiGraph GT3X", ".bin": "GENEActiv"}
AX6_NAME = "Axivity AX6"
#: Where a device is worn when neither --placement nor --layout says (research wrist-worn devices).
DEFAULT_PLACEMENT = "left wrist"
#: actipy's non-wear defaults, stated so every output can record them.
NONWEAR_DEFAULTS = {"patience": "90m", "window": "10s", "stdtol": 15 / 1000}
CWA_BLOCK = 512


def device_suffix(path: str | Path) -> str | None:
    """The device suffix of a file name (`.cwa`, `.cwa.gz`, `.gt3x`, `.bin`), else None."""
    name = Path(path).name.lower()
    return next((s for s in sorted(SUFFIXES, key=len, reverse=True) if name.endswith(s)), None)


def is_device_file(path: str | Path) -> bool:
    return device_suffix(path) is not None


def recording_name(path: str | Path) -> str:
    """The file name without its recording suffix (`week.cwa.gz` -> `week`)."""
    p = Path(path)
    s = device_suffix(p)
    return p.name[: -len(s)] if s else p.stem


@dataclass
class DeviceRecording:
    """A device file read whole.

    Attributes:
        path: the file.
        time: `(n,)` seconds since the epoch of the naive device clock (see the module docstring).
        signals: `(n, C)` float32 in the layout's units (acc in g, gyro in deg/s); non-wear samples filled forward.
        layout: the sensors (accelerometer, plus the gyroscope of an AX6).
        nonwear: `(n,)` bool, True where actipy flagged non-wear.
        info: device, serial, sampling rate found, calibration before/after, non-wear thresholds and time,
            read errors and warnings (JSON-ready).
    """

    path: Path
    time: np.ndarray
    signals: np.ndarray
    layout: SensorLayout
    nonwear: np.ndarray
    info: dict = field(default_factory=dict)

    def nonwear_intervals(self) -> np.ndarray:
        """`(k, 2)` start and end (s, the time base of :attr:`time`) of each non-wear run."""
        m = self.nonwear
        if not m.any():
            return np.zeros((0, 2))
        d = np.diff(np.concatenate([[0], m.astype(np.int8), [0]]))
        s, e = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
        period = 1.0 / float(self.info.get("sample_rate_hz") or 30.0)
        return np.stack([self.time[s], self.time[e - 1] + period], axis=1)


@contextlib.contextmanager
def _capture_stderr():
    """Capture what the Java parsers print on file descriptor 2 (actipy's only report of skipped blocks)."""
    lines: list[str] = []
    try:
        fd = os.dup(2)
    except OSError:  # no stderr at all
        yield lines
        return
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        try:
            import sys

            sys.stderr.flush()
            os.dup2(tmp.fileno(), 2)
            yield lines
        finally:
            os.dup2(fd, 2)
            os.close(fd)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace")
            lines.extend(ln.strip() for ln in re.split(r"[\r\n]+", text) if ln.strip())


def _cwa_bad_blocks(path: Path) -> list[int]:
    """Indices (from 0, after the header) of CWA data blocks whose checksum fails (16-bit word sum != 0)."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    bad: list[int] = []
    with opener(path, "rb") as f:
        head = f.read(4)
        if len(head) < 4 or head[:2] != b"MD":
            return bad
        header_len = int.from_bytes(head[2:4], "little") + 4
        f.read(header_len - 4)
        k = 0
        while chunk := f.read(CWA_BLOCK * 8192):
            n = len(chunk) // CWA_BLOCK
            if n == 0:
                break
            words = np.frombuffer(chunk[: n * CWA_BLOCK], dtype="<u2").reshape(n, CWA_BLOCK // 2)
            bad.extend((k + np.flatnonzero(words.sum(axis=1, dtype=np.uint16) != 0)).tolist())
            k += n
    return bad


def _collapse(lines: list[str]) -> list[str]:
    """Repeated messages once, with their count."""
    counts: dict[str, int] = {}
    for ln in lines:
        counts[ln] = counts.get(ln, 0) + 1
    return [ln if c == 1 else f"{ln} (x{c})" for ln, c in counts.items()]


def _layout(kinds: list[str], suffix: str, path: Path, layout, placement, device) -> tuple[SensorLayout, bool]:
    """The layout of the device's sensors; True when the default placement / device name were used."""
    units = {"acc": "g", "gyro": "deg/s"}
    if layout is not None:
        if not isinstance(layout, SensorLayout):
            layout = SensorLayout.from_yaml(layout)
        by_kind = {s.sensor: s for s in layout.sensors}
        missing = [k for k in kinds if k not in by_kind]
        if missing:
            raise ZeroharError(
                f"sensor layout {layout.name or '(unnamed)'} has no {' or '.join(missing)} sensor, which {path} "
                "holds; add it to the layout, or give --placement and --device instead"
            )
        chans = [Channel(k, a, by_kind[k].placement, by_kind[k].device, units[k], f"{k}_{a}")
                 for k in kinds for a in "xyz"]
        return SensorLayout.from_channels(chans, layout.name or recording_name(path), str(path)), False
    name = device or (AX6_NAME if "gyro" in kinds else DEVICE_NAMES[suffix])
    where = placement or DEFAULT_PLACEMENT
    chans = [Channel(k, a, where, name, units[k], f"{k}_{a}") for k in kinds for a in "xyz"]
    return SensorLayout.from_channels(chans, recording_name(path), str(path)), not (placement and device)


def _json_value(v):
    if isinstance(v, (np.floating, float)):
        return None if not np.isfinite(v) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v if isinstance(v, (int, str, bool, type(None))) else str(v)


def read_device(
    path: str | Path,
    *,
    calibrate: bool = True,
    detect_nonwear: bool = True,
    layout: str | Path | SensorLayout | None = None,
    placement: str | None = None,
    device: str | None = None,
    nonwear_patience: str = NONWEAR_DEFAULTS["patience"],
    nonwear_window: str = NONWEAR_DEFAULTS["window"],
    nonwear_stdtol: float = NONWEAR_DEFAULTS["stdtol"],
) -> DeviceRecording:
    """Read an Axivity (`.cwa`, `.cwa.gz`), ActiGraph (`.gt3x`) or GENEActiv (`.bin`) file with actipy.

    Args:
        path: the device file.
        calibrate: gravity calibration (van Hees 2014) by actipy; skipped by actipy, with a warning, when the
            recording has fewer than 50 stationary 10 s windows.
        detect_nonwear: actipy's non-wear detection: stationary (std < `nonwear_stdtol` g on every axis over
            `nonwear_window` rolling windows) for longer than `nonwear_patience` (defaults 15 mg, 10 s, 90 min).
        layout: a sensor layout whose acc (and gyro) sensor give placement and device (units come from the
            reader: g and deg/s).
        placement, device: instead of a layout; default :data:`DEFAULT_PLACEMENT` and the file type's device
            name (announced in one logged line).

    Returns:
        A :class:`DeviceRecording`; what actipy reported (read errors, skipped blocks, a truncated file,
        skipped calibration) is logged as warnings and listed in `info["warnings"]`.

    Raises:
        ZeroharError: the file is missing, has another suffix, or actipy cannot read it.
    """
    p = Path(path)
    suffix = device_suffix(p)
    if suffix is None:
        raise ZeroharError(f"{p}: not a device file; expected a suffix {', '.join(SUFFIXES)}")
    check_input_file(p, "input file")
    note_input(p)
    check_layout_flags(layout, placement, device)
    if layout is not None and not isinstance(layout, SensorLayout):
        layout = SensorLayout.from_yaml(layout)  # refused before the (slow) read, not after
    try:
        import actipy
    except ImportError:
        raise ZeroharError(f"{p}: reading device files needs actipy (pip install 'actipy>=3.8')") from None
    nonwear_kw = {"patience": nonwear_patience, "window": nonwear_window, "stdtol": nonwear_stdtol}
    with warnings.catch_warnings(record=True) as caught, _capture_stderr() as printed:
        warnings.simplefilter("always")
        try:
            data, ainfo = actipy.read_device(
                str(p), lowpass_hz=None, calibrate_gravity=calibrate, detect_nonwear=detect_nonwear,
                resample_hz=None, flag_nonwear_kwargs=nonwear_kw if detect_nonwear else None, verbose=False,
            )
        except Exception as e:  # actipy raises CalledProcessError, ValueError, OSError... for a bad file
            detail = "; ".join(printed[-3:]) or f"{type(e).__name__}: {e}"
            raise ZeroharError(f"{p}: actipy cannot read this device file ({detail})") from None
    notes = _collapse([ln for ln in printed if not ln.lower().startswith("reading file")])
    notes += [str(w.message) for w in caught if not issubclass(w.category, (DeprecationWarning, FutureWarning))]
    read_errors = int(ainfo.get("ReadErrors") or 0)
    if read_errors and suffix.startswith(".cwa"):
        bad = _cwa_bad_blocks(p)
        if bad:
            notes.insert(0, f"{len(bad)} corrupted data block(s) skipped: {', '.join(map(str, bad))} (counting data "
                            f"blocks of {CWA_BLOCK} bytes from 0 after the header)")
    elif read_errors:
        notes.insert(0, f"actipy reported {read_errors} read error(s)")
    pages = next((re.search(r"expected (\d+) but found (\d+)", n) for n in notes if "page count differs" in n), None)
    if pages and int(pages[2]) < int(pages[1]):
        span = (data.index[-1] - data.index[0]).total_seconds() if len(data) > 1 else 0.0
        notes.insert(0, f"truncated file: its header announces {pages[1]} pages but it holds {pages[2]}; read the "
                        f"{len(data)} samples it holds ({span:.0f} s)")
    if len(data) == 0:
        raise ZeroharError(f"{p}: actipy read no samples from this device file ({'; '.join(notes) or 'no detail'})")

    kinds = ["acc"] + (["gyro"] if {"gyro_x", "gyro_y", "gyro_z"} <= set(data.columns) else [])
    cols = ["x", "y", "z"] + (["gyro_x", "gyro_y", "gyro_z"] if "gyro" in kinds else [])
    x = data[cols].to_numpy(dtype=np.float32)  # float32 at once: a week of float64 copies would be 0.4 GB more
    t = data.index.to_numpy().astype("datetime64[ns]").astype(np.int64) / 1e9  # (n,) float64 seconds
    del data
    nan = ~np.isfinite(x).all(axis=1)
    nonwear = nan.copy() if detect_nonwear else np.zeros(len(t), dtype=bool)
    if nan.all():
        raise ZeroharError(f"{p}: every sample is non-wear or missing; nothing to classify")
    if nan.any():
        # Forward fill (backward for a leading run): the device lay still, so this is close to what it measured.
        idx = np.where(~nan, np.arange(len(x)), 0)
        np.maximum.accumulate(idx, out=idx)
        first = int(np.flatnonzero(~nan)[0])
        idx[:first] = first
        x = x[idx]
    lay, defaulted = _layout(kinds, suffix, p, layout, placement, device)
    if defaulted:
        s = lay.sensors[0]
        logger.info("%s: reading as %s worn on the %s (set --placement / --device or --layout otherwise)",
                    p.name, s.device, s.placement)
    rate = float(ainfo.get("SampleRate") or (1.0 / np.median(np.diff(t)) if len(t) > 1 else 0.0))
    nonwear_s = float(nonwear.sum()) / rate if rate else 0.0
    info = {
        "device": lay.sensors[0].device,
        "placement": lay.sensors[0].placement,
        "file_type": suffix,
        "reader": f"actipy {getattr(actipy, '__version__', '?')}",
        "sensors": kinds,
        "sample_rate_hz": rate,
        "samples": int(len(t)),
        "start": str(ainfo.get("StartTime")),
        "end": str(ainfo.get("EndTime")),
        "calibration": {
            "requested": bool(calibrate),
            "applied": bool(ainfo.get("CalibOK")),
            "stationary_samples": _json_value(ainfo.get("CalibNumSamples")),
            "error_before_mg": _json_value(ainfo.get("CalibErrorBefore(mg)")),
            "error_after_mg": _json_value(ainfo.get("CalibErrorAfter(mg)")),
        },
        "nonwear": {
            "detected": bool(detect_nonwear),
            "rule": "stationary (std below stdtol g on every axis over rolling windows) for longer than patience",
            **nonwear_kw,
            "episodes": _json_value(ainfo.get("NumNonwearEpisodes")),
            "nonwear_s": nonwear_s,
        },
        "read_errors": read_errors,
        "warnings": notes,
        "actipy": {k: _json_value(v) for k, v in ainfo.items()},
    }
    for n in notes:
        logger.warning("%s: %s", p.name, n)
    return DeviceRecording(p, t, x, lay, nonwear, info)
