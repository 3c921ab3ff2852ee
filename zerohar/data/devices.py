"""Raw wearable device files (Axivity `.cwa` / `.cwa.gz`, ActiGraph `.gt3x`, GENEActiv `.bin`) through actipy.

:func:`open_device` reads a device file with the PyPI package `actipy` (the reader of OxWearables' stepcount
and actinet; it runs the vendors' formats through small Java parsers, so it needs a Java runtime) as a stream
of chunks, with:

- **gravity calibration** (van Hees et al. 2014, `actipy.processing.calibrate_gravity` defaults: stationary
  10 s windows with a standard deviation below 15 mg on every axis, at least 50 of them, calibration cube
  0.3 g). actipy skips the calibration (and says why) when a recording has too few stationary windows; the
  error before / after (mg) and whether it was applied are in the returned info.
- **non-wear detection** (`actipy.processing.find_nonwear_segments` defaults, which zerohar relies on: a
  stationary episode, every axis' standard deviation below ``stdtol = 15 mg`` over ``window = 10 s`` windows,
  lasting longer than ``patience = 90 min``, is non-wear). The samples actipy would set to NaN become
  non-wear intervals (:attr:`DeviceStream.nonwear`); they keep their measured values (the device lay still),
  so the stream stays continuous and the resampling filter does not ring at non-wear borders. Non-wear
  windows are never classified. Samples a parser wrote as NaN (actipy's readers write none) are filled
  forward from the last finite one and count as non-wear too.

**Memory does not grow with the recording.** actipy's `read_device` holds the whole file (a week of an AX3 at
100 Hz: about 1.5 GB), and its `start_time` / `end_time` only slice that frame after the read, so zerohar runs
actipy's Java parser itself, in its streaming mode (8,192 rows at a time), twice:

1. a first pass keeps only per-window sums of every 10 s window (counts, sums, squares, and the axes'
   products with the temperature: about 7 MB for a week), from which actipy's own `calibrate_gravity` and
   `find_nonwear_segments` find the calibration coefficients and the non-wear episodes of the **whole file**,
   exactly as on the whole frame. Both only read 10 s window means and standard deviations, so they are handed
   a frame of one or two samples per window that have exactly those; the standard deviations of the
   calibrated signal (``a + b x + c T`` per axis) follow from the sums without a second look at the samples;
2. a second pass applies the coefficients chunk by chunk (in float32, as actipy does) and yields the samples.

So the result does not depend on the chunk size, and equals whole-file actipy up to float round-off (a
window sum split across parser chunks). The second pass costs one more parse of the file (a few seconds per
day of 30 Hz data, against minutes of model time); a `.cwa.gz` is decompressed once, to a temporary folder kept
until the stream ends.

No low-pass and no resampling in actipy: the samples go at the device's own rate through zerohar's one
resampling path (:func:`zerohar.data.transforms.canonical_stream`: anti-alias Butterworth at 80 % of the 15 Hz
Nyquist frequency, linear interpolation onto the 30 Hz grid), exactly as a CSV recording and the training data
do. actipy's own resampling would be a second, different path, and its default 20 Hz low-pass lies above the
15 Hz Nyquist frequency of 30 Hz anyway. actipy's quality control is kept: samples whose time does not
increase are dropped, and counted as read errors.

Gyroscopes: actipy returns ``gyro_x, gyro_y, gyro_z`` (deg/s) for an Axivity AX6, so an AX6 gives two sensors
(accelerometer in g and gyroscope in deg/s, which zerohar converts to rad/s). Calibration applies to the
accelerometer only; non-wear masks both. Temperature is used by the calibration only; light not at all.

Timestamps: actipy gives the device clock as written (naive; devices keep the clock they were set to and do
not change it at daylight saving). They are returned as seconds since the Unix epoch *of the naive clock
reading* (the clock read as if it were UTC), the convention of zerohar's CSV reader for naive datetimes.

:func:`read_device` reads a whole (short) file into a :class:`DeviceRecording`, through the same stream.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import logging
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from zerohar.data import actipy_stream
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
#: Raw rows per chunk of :meth:`DeviceStream.chunks` (a day of 30 Hz data is 2.6 M rows).
CHUNK_ROWS = 100_000
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


@dataclass
class DeviceRecording:
    """A device file read whole (:func:`read_device`; :func:`open_device` streams it instead).

    Attributes:
        path: the file.
        time: `(n,)` seconds since the epoch of the naive device clock (see the module docstring).
        signals: `(n, C)` float32 in the layout's units (acc in g, calibrated; gyro in deg/s).
        layout: the sensors (accelerometer, plus the gyroscope of an AX6).
        nonwear: `(n,)` bool, True where actipy's rule finds non-wear.
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


# ---------------------------------------------------------------------------------------------- the stream
@dataclass
class DeviceStream:
    """A device file opened by :func:`open_device`: what the first pass found, and the samples chunk by chunk.

    Attributes:
        path: the file.
        layout: the sensors (accelerometer, plus the gyroscope of an AX6).
        nonwear: `(k, 2)` start and end (s, the time base of the chunks' times) of each non-wear run: from its
            first sample to one sample period after its last.
        info: as :attr:`DeviceRecording.info`.
    """

    path: Path
    layout: SensorLayout
    nonwear: np.ndarray
    info: dict
    _source: Path = field(repr=False, default=None)
    _workdir: tempfile.TemporaryDirectory | None = field(repr=False, default=None)
    _coef: tuple | None = field(repr=False, default=None)
    _nonwear_ns: np.ndarray = field(repr=False, default=None)

    def chunks(self, chunk_rows: int = CHUNK_ROWS) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The samples, `chunk_rows` at a time (the last chunk shorter): `(time (n,) s, signals (n, C) float32,
        non-wear (n,) bool)`. Each iteration parses the file again; the temporary folder (a decompressed
        `.cwa.gz`) goes when the stream is garbage-collected, or on :meth:`close`."""
        n = 0
        parts: list[tuple[np.ndarray, np.ndarray]] = []
        held = 0
        run = actipy_stream.ParserPass(self._source, self._workdir.name)
        iv = self._nonwear_ns
        try:
            for t, x, temp, _ in run:
                if self._coef is not None:  # actipy's arithmetic: float32, x * slope + intercept + T * slope_t
                    a, b, c = self._coef
                    acc = x[:, :3] * b
                    acc += a
                    if c is not None:
                        acc += temp[:, None] * c
                    x = np.concatenate([acc, x[:, 3:]], axis=1) if x.shape[1] > 3 else acc
                parts.append((t, x))
                held += len(t)
                while held >= chunk_rows:
                    yield self._emit(parts, chunk_rows, iv)
                    held = sum(len(p[0]) for p in parts)
                n += len(t)
        except ZeroharError:
            raise
        except Exception as e:
            detail = "; ".join(run.stderr()[-3:]) or f"{type(e).__name__}: {e}"
            raise ZeroharError(f"{self.path}: actipy cannot read this device file ({detail})") from None
        if held:
            yield self._emit(parts, held, iv)
        if n != self.info["samples"]:
            raise ZeroharError(f"{self.path}: the file changed while it was read ({self.info['samples']} samples "
                               f"in the first pass, {n} in the second)")

    @staticmethod
    def _emit(parts: list, rows: int, iv: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The first `rows` rows of `parts` (removed from it) as seconds, signals and their non-wear mask."""
        t = np.concatenate([p[0] for p in parts])
        x = np.concatenate([p[1] for p in parts])
        parts[:] = [(t[rows:], x[rows:])] if len(t) > rows else []
        t, x = t[:rows], x[:rows]
        mask = np.zeros(len(t), dtype=bool)
        if len(iv):
            near = iv[(iv[:, 1] >= t[0]) & (iv[:, 0] <= t[-1])]
            for a, b in near.tolist():
                mask[np.searchsorted(t, a, "left") : np.searchsorted(t, b, "right")] = True
        return t / 1e9, x, mask

    def close(self) -> None:
        """Remove the temporary folder now."""
        if self._workdir is not None:
            self._workdir.cleanup()


def _import_actipy(p: Path):
    try:
        import actipy
        from actipy import processing, reader
    except ImportError:
        raise ZeroharError(f"{p}: reading device files needs actipy (pip install 'actipy>=3.8')") from None
    private = ("_JAVA_STREAM_MAGIC", "_JAVA_STREAM_SCHEMAS", "_java_reader_class", "_read_java_info", "decompr",
               "get_device_info")
    if not all(hasattr(reader, a) for a in private) or not hasattr(processing, "find_nonwear_segments"):
        raise ZeroharError(f"{p}: actipy {getattr(actipy, '__version__', '?')} has no streaming parser zerohar "
                           "knows; install actipy 3.8 (pip install 'actipy>=3.8,<3.9')")
    return actipy, processing, reader


def open_device(
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
) -> DeviceStream:
    """Open an Axivity (`.cwa`, `.cwa.gz`), ActiGraph (`.gt3x`) or GENEActiv (`.bin`) file for streaming: a
    first pass of actipy's parser finds the calibration and the non-wear of the whole file in bounded memory
    (see the module docstring); :meth:`DeviceStream.chunks` then yields the calibrated samples.

    Args:
        path: the device file.
        calibrate: gravity calibration (van Hees 2014) by actipy; skipped by actipy, with a warning, when the
            recording has fewer than 50 stationary 10 s windows.
        detect_nonwear: actipy's non-wear detection: stationary (std < `nonwear_stdtol` g on every axis over
            `nonwear_window` windows) for longer than `nonwear_patience` (defaults 15 mg, 10 s, 90 min).
        layout: a sensor layout whose acc (and gyro) sensor give placement and device (units come from the
            reader: g and deg/s).
        placement, device: instead of a layout; default :data:`DEFAULT_PLACEMENT` and the file type's device
            name (announced in one logged line).

    Returns:
        A :class:`DeviceStream`; what actipy reported (read errors, skipped blocks, a truncated file, skipped
        calibration) is logged as warnings and listed in `info["warnings"]`.

    Raises:
        ZeroharError: the file is missing, has another suffix, or actipy cannot read it.
    """
    import pandas as pd

    p = Path(path)
    suffix = device_suffix(p)
    if suffix is None:
        raise ZeroharError(f"{p}: not a device file; expected a suffix {', '.join(SUFFIXES)}")
    check_input_file(p, "input file")
    note_input(p)
    check_layout_flags(layout, placement, device)
    if layout is not None and not isinstance(layout, SensorLayout):
        layout = SensorLayout.from_yaml(layout)  # refused before the (slow) read, not after
    actipy, processing, reader = _import_actipy(p)
    nonwear_kw = {"patience": nonwear_patience, "window": nonwear_window, "stdtol": nonwear_stdtol}
    workdir = tempfile.TemporaryDirectory(prefix="zerohar-device-")
    try:
        source = Path(reader.decompr(str(p), workdir.name)) if suffix == ".cwa.gz" else p
        with contextlib.redirect_stdout(io.StringIO()):  # actipy prints when a header has no serial number
            try:
                ident = reader.get_device_info(str(source))
            except Exception:  # a damaged header: the parser says what is wrong
                ident = {}
        widths = {"calibration": pd.Timedelta(actipy_stream.CALIBRATION_WINDOW).value if calibrate else None,
                  "nonwear": pd.Timedelta(nonwear_window).value if detect_nonwear else None}
        sums: dict[int, actipy_stream.WindowSums] = {}
        nan_runs: list[np.ndarray] = []
        scan = actipy_stream.ParserPass(source, workdir.name)
        try:
            for t, x, temp, nan in scan:
                for w in set(filter(None, widths.values())):  # equal widths (10 s both) share one set of sums
                    sums.setdefault(w, actipy_stream.WindowSums(w, scan.temperature)).add(t, x[:, :3], temp, nan)
                if nan.any():
                    nan_runs.append(actipy_stream.sample_runs(t, nan))
        except FileNotFoundError:
            raise ZeroharError(f"{p}: reading device files needs a Java runtime (java), which is not on the "
                               "PATH") from None
        except Exception as e:  # the parser fails with an exit status, a broken stream, ... for a bad file
            detail = "; ".join(scan.stderr()[-3:]) or f"{type(e).__name__}: {e}"
            raise ZeroharError(f"{p}: actipy cannot read this device file ({detail})") from None
        notes = _collapse([ln for ln in scan.stderr() if not ln.lower().startswith("reading file")])
        rows = scan.rows
        java_errors = int(scan.java.get("ReadErrors") or 0)
        rate = float(scan.java.get("SampleRate") or 0.0)
        if rate <= 0 and rows > 1:
            rate = (rows - 1) / ((scan.last_ns - scan.first_ns) / 1e9)
        read_errors = java_errors + (int(np.ceil(scan.nonincreasing / rate)) if scan.nonincreasing and rate else 0)
        if java_errors and suffix.startswith(".cwa"):
            bad = _cwa_bad_blocks(p)
            if bad:
                notes.insert(0, f"{len(bad)} corrupted data block(s) skipped: {', '.join(map(str, bad))} (counting "
                                f"data blocks of {CWA_BLOCK} bytes from 0 after the header)")
        elif read_errors:
            notes.insert(0, f"actipy reported {read_errors} read error(s)")
        pages = next((re.search(r"expected (\d+) but found (\d+)", n) for n in notes if "page count differs" in n),
                     None)
        if pages and int(pages[2]) < int(pages[1]):
            span = (scan.last_ns - scan.first_ns) / 1e9 if rows > 1 else 0.0
            notes.insert(0, f"truncated file: its header announces {pages[1]} pages but it holds {pages[2]}; read "
                            f"the {rows} samples it holds ({span:.0f} s)")
        if rows == 0:
            detail = "; ".join(notes) or "no detail"
            raise ZeroharError(f"{p}: actipy read no samples from this device file ({detail})")
        if scan.dropped:
            notes.append(f"{scan.dropped} sample(s) before the first finite one dropped")

        ainfo = {"Filename": str(p), "Filesize(MB)": round(p.stat().st_size / 2**20, 1), **ident, **scan.java,
                 "ReadErrors": read_errors, "NumTicks": rows, "StartTime": _clock(scan.first_ns),
                 "EndTime": _clock(scan.last_ns), "DataSpan(days)": (scan.last_ns - scan.first_ns) / 1e9 / 86400}
        coef = None
        if calibrate:
            cal_info, coef, cal_notes = actipy_stream.calibration(sums[widths["calibration"]], processing)
            ainfo.update(cal_info)
            notes += cal_notes
        segments = np.zeros((0, 2), dtype=np.int64)
        if detect_nonwear:
            segments, nw_info = actipy_stream.nonwear_segments(sums[widths["nonwear"]], coef, processing, nonwear_kw)
            ainfo.update(nw_info)
            segments = np.concatenate([segments, *nan_runs])
        period = 1.0 / rate if rate else 1.0 / 30
        segments = actipy_stream.merge_runs(segments, int(period * 1e9))
        intervals = np.stack([segments[:, 0] / 1e9, segments[:, 1] / 1e9 + period], axis=1).reshape(-1, 2)
    except BaseException:
        workdir.cleanup()
        raise

    kinds = ["acc"] + (["gyro"] if scan.columns[3:] else [])
    lay, defaulted = _layout(kinds, suffix, p, layout, placement, device)
    if defaulted:
        s = lay.sensors[0]
        logger.info("%s: reading as %s worn on the %s (set --placement / --device or --layout otherwise)",
                    p.name, s.device, s.placement)
    info = {
        "device": lay.sensors[0].device,
        "placement": lay.sensors[0].placement,
        "file_type": suffix,
        "reader": f"actipy {getattr(actipy, '__version__', '?')}",
        "sensors": kinds,
        "sample_rate_hz": rate,
        "samples": int(rows),
        "start": ainfo["StartTime"],
        "end": ainfo["EndTime"],
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
            "nonwear_s": float((intervals[:, 1] - intervals[:, 0]).sum()),
        },
        "read_errors": read_errors,
        "warnings": notes,
        "actipy": {k: _json_value(v) for k, v in ainfo.items()},
    }
    for n in notes:
        logger.warning("%s: %s", p.name, n)
    return DeviceStream(p, lay, intervals, info, source, workdir, coef, segments)


def _clock(ns: int) -> str:
    """A device-clock time as actipy's info writes it (`2026-01-01 10:00:00`)."""
    return str(np.datetime64(ns, "ns").astype("datetime64[s]")).replace("T", " ")


def read_device(path: str | Path, **kw) -> DeviceRecording:
    """A whole device file in memory (for short files; `zerohar classify` streams with :func:`open_device`).

    Args:
        path, kw: as for :func:`open_device`.
    """
    dev = open_device(path, **kw)
    try:
        parts = list(dev.chunks())
    finally:
        dev.close()
    t, x, m = (np.concatenate([c[i] for c in parts]) for i in range(3))
    return DeviceRecording(dev.path, t, x, dev.layout, m, dev.info)
