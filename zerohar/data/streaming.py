"""Reading a user's recording for `zerohar classify`: layout matching and streamed windows.

:func:`open_recording` opens a CSV (time column + channel columns), `.npy` / `.npz` or a device file (`.cwa`,
`.gt3x`, `.bin`, through :mod:`zerohar.data.devices`) as a stream of chunks; :func:`stream_windows` cuts the
canonical stream into windows that may run across chunk borders, at most `max_windows` at a time, so memory
does not grow with the recording. The labelled windows are written by :class:`zerohar.io.TableWriter`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zerohar.data import devices
from zerohar.data.layout import SENSOR_NAMES, SensorLayout
from zerohar.data.sources import csv as csv_source
from zerohar.errors import ZeroharError
from zerohar.io import check_input_file

logger = logging.getLogger(__name__)

#: Windows labelled per batch (embedding + search + write); bounds memory independently of the recording length.
BATCH_WINDOWS = 4096
#: Raw rows read per chunk.
CHUNK_ROWS = 100_000
#: Suffixes of the csv source's files (device files: zerohar.data.devices.SUFFIXES).
INPUT_SUFFIXES = (".csv", ".tsv", ".npy", ".npz")

# ---------------------------------------------------------------------------------------------- layouts
def _sensor_phrase(s) -> str:
    return f"{SENSOR_NAMES.get(s.sensor, s.sensor)} at {s.placement} on {s.device}"


def match_layout(model_layout: SensorLayout, layout: SensorLayout, source: str, *, several: bool = False
                 ) -> tuple[list[int], SensorLayout]:
    """Which channels of a recording the model can use, with a warning when the layouts differ.

    The model takes any number of sensors, each with its text context, so a recording may lack some of the
    model's sensors or bring sensors at other placements: those are used as they are (with a warning). A
    sensor *kind* the model never saw (e.g. a magnetometer for a model trained on acc + gyro) is dropped.
    `several`: the model was trained on several sources (`model_layout` is the union of their sensors, and no
    recording has them all), so only sensors it never met are worth a warning.

    Returns:
        (channel indices to keep, in canonical order; the layout of the kept channels)

    Raises:
        ZeroharError: no sensor of the recording is of a kind the model knows.
    """
    have = {s.key for s in layout.sensors}
    want = {s.key for s in model_layout.sensors}
    kinds = {s.sensor for s in model_layout.sensors}
    missing = [] if several else [s for s in model_layout.sensors if s.key not in have]
    unknown_kind = [s for s in layout.sensors if s.sensor not in kinds]
    new = [s for s in layout.sensors if s.key not in want and s.sensor in kinds]
    keep = [s.key for s in layout.sensors if s.sensor in kinds]
    if not keep:
        raise ZeroharError(
            f"{source}: none of its sensors ({'; '.join(_sensor_phrase(s) for s in layout.sensors)}) is of a kind "
            f"the model was trained on ({', '.join(sorted(SENSOR_NAMES[k] for k in kinds))})"
        )
    if missing or new or unknown_kind:
        parts = []
        if missing:
            parts.append(f"lacks the model's {'; '.join(_sensor_phrase(s) for s in missing)}")
        if new:
            parts.append(f"has sensors the model was not trained on: {'; '.join(_sensor_phrase(s) for s in new)}")
        if unknown_kind:
            parts.append(f"ignoring {'; '.join(_sensor_phrase(s) for s in unknown_kind)} (a sensor kind the model "
                         "does not know)")
        used = [s for s in layout.sensors if s.key in set(keep)]
        logger.warning(
            "%s %s; classifying with the sensors present (%s)", source, ", ".join(parts),
            "; ".join(_sensor_phrase(s) for s in used),
        )
    return layout.channel_indices(keep), layout.select(keep)


# ---------------------------------------------------------------------------------------------- input
@dataclass
class InputRecording:
    """A recording opened for streaming: its declared layout and a chunk iterator (times, signals, None)."""

    path: Path
    layout: SensorLayout
    chunks: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray | None]]
    absolute_time: bool = False  # times are seconds since the Unix epoch (a datetime column)
    nonwear: np.ndarray | None = None  # (k, 2) start, end (s, the input's time base) of non-wear runs (devices)
    info: dict | None = None  # what a device reader found (zerohar.data.devices.DeviceStream.info)
    device_clock: bool = False  # times are a naive clock as written (read as if UTC), not instants: a device's,
    # or a CSV's naive datetimes or ActiLife start (set once the first chunk is read, from `clock`)
    clock: Callable[[], tuple[bool, float | None]] | None = None  # a CSV's (wall clock, UTC offset as written)

    def __post_init__(self):
        self.t_first: float | None = None  # time of the first sample, known once the first chunk is read
        self.rate_found: float | None = None  # mean sampling rate of the first chunk (Hz)
        self.written_offset_s: float | None = None  # datetimes with a zone: the first one's UTC offset as written
        self.chunks = self._track(self.chunks)

    def _track(self, chunks):
        for t, x, lab in chunks:
            if self.t_first is None and len(t):
                self.t_first = float(t[0])
                span = float(t[-1]) - float(t[0])  # mean rate: robust to timestamps rounded to milliseconds
                self.rate_found = (len(t) - 1) / span if span > 0 else None
                if self.clock is not None:
                    self.device_clock, self.written_offset_s = self.clock()
            yield t, x, lab


def open_recording(
    path: str | Path,
    *,
    layout: str | Path | SensorLayout | None = None,
    placement: str | None = None,
    device: str | None = None,
    rate: float | None = None,
    chunk_rows: int = CHUNK_ROWS,
    calibrate: bool = True,
    detect_nonwear: bool = True,
) -> InputRecording:
    """Open a CSV, `.npy` (`(T, C)`, needs `rate`) or `.npz` recording (the csv source's reader), or a device file
    (`.cwa`, `.cwa.gz`, `.gt3x`, `.bin`: :func:`zerohar.data.devices.open_device`), for streaming.

    Args:
        path: the recording.
        layout: its sensor layout (a YAML file in the format of `metadata/sensors/`, or a SensorLayout).
        placement, device: instead of a layout, the placement and device of every sensor (the columns name
            the sensor kinds; see :mod:`zerohar.data.sources.csv`).
        rate: sampling rate in Hz of a file without times.
        chunk_rows: rows per chunk.
        calibrate, detect_nonwear: device files only (see :func:`zerohar.data.devices.open_device`: two
            passes of the parser, neither holding the file).
    """
    p = check_input_file(path, "input file")
    if devices.is_device_file(p):
        dev = devices.open_device(p, calibrate=calibrate, detect_nonwear=detect_nonwear, layout=layout,
                                  placement=placement, device=device)
        chunks = ((t, x, None) for t, x, _ in dev.chunks(chunk_rows))  # the second pass starts at the first chunk
        return InputRecording(p, dev.layout, chunks, True, dev.nonwear, dev.info, True)
    if p.suffix.lower() not in INPUT_SUFFIXES:
        raise ZeroharError(f"{p}: unknown recording type {p.suffix or '(no suffix)'!r}; expected one of "
                           f"{', '.join(INPUT_SUFFIXES + devices.SUFFIXES)}")
    opened = csv_source.open_stream(p, layout=layout, placement=placement, device=device, rate=rate,
                                    chunk_rows=chunk_rows)
    return InputRecording(p, opened.layout, opened.chunks, bool(opened.absolute_time), clock=opened.clock)


# ---------------------------------------------------------------------------------------------- windows
def stream_windows(
    pieces: Iterable, length: int, step: int, keep: Sequence[int] | None = None, max_windows: int = BATCH_WINDOWS
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Cut canonical pieces (from `canonical_stream`) into windows, in batches.

    Consecutive pieces of one segment (`meta["segment"]`) are one signal on one grid, so windows run across
    their borders; a new segment (after a long gap) starts a new window grid, as `make_windows` does for
    the pieces of `to_canonical`.

    Args:
        pieces: canonical Recordings with `meta["t0"]` (grid time of the first sample) and `meta["segment"]`.
        length, step: window length and step in samples.
        keep: channel indices to keep (None = all).
        max_windows: windows per yielded batch.

    Yields:
        `(X (n, C, length) float32, start times (n,) in the input's time base)`.
    """
    buf = None  # (m, C) samples not yet consumed by a window
    buf_t0 = 0.0
    segment = None
    rate = None
    out_x: list[np.ndarray] = []
    out_t: list[np.ndarray] = []
    n_out = 0
    for piece in pieces:
        x = np.asarray(piece.signals, dtype=np.float32)
        if keep is not None:
            x = x[:, keep]
        rate = float(piece.rate)
        seg = piece.meta.get("segment", id(piece))
        if seg != segment or buf is None:
            segment, buf, buf_t0 = seg, x, float(piece.meta["t0"])
        else:
            buf = np.concatenate([buf, x])
        n = (len(buf) - length) // step + 1 if len(buf) >= length else 0
        if n > 0:
            starts = np.arange(n) * step
            win = np.lib.stride_tricks.sliding_window_view(buf, length, axis=0)[starts]  # (n, C, T)
            out_x.append(np.ascontiguousarray(win, dtype=np.float32))
            out_t.append(buf_t0 + starts / rate)
            n_out += n
            buf = buf[n * step :]
            buf_t0 += n * step / rate
        while n_out >= max_windows:
            X, T = np.concatenate(out_x), np.concatenate(out_t)
            yield X[:max_windows], T[:max_windows]
            out_x, out_t = [X[max_windows:]], [T[max_windows:]]
            n_out -= max_windows
    if n_out:
        yield np.concatenate(out_x), np.concatenate(out_t)
