"""Generic recordings: CSV files (one recording, or a folder of them for a whole dataset) and .npy / .npz.

This is how a user brings data zerohar has never heard of, and what ``zerohar classify`` reads.

A CSV file has a header row and:

- a time column (``time``, ``timestamp``, ``t``, ``seconds``, ``datetime``): seconds (any origin) or ISO 8601
  datetimes (naive ones are a wall clock as written: ``classify`` reads them as local time of ``--timezone``, as it
  reads a device's clock; times with an offset are instants);
- channel columns, by default ``acc_x, acc_y, acc_z, gyro_x, ..., mag_z``; common aliases are recognised
  (``ax``, ``accel_x``, ``x_acc``, ``AccX``; ``gx``, ``wx``, ``gyr_x``; ``mx``, ``mag_x``), or a sensor layout
  file (``metadata/sensors/`` format) names them with ``column:`` keys;
- optional ``label`` (activity text; empty = unlabelled) and ``subject`` columns.

Without a layout file, ``placement`` and ``device`` describe every sensor and units are canonical (g, rad/s,
uT); a layout file declares other units (m/s^2, deg/s, mT, gauss). Every other column is an error: a
silently ignored column would hide a typo. Comma, semicolon or tab delimited.

An ActiLife CSV export (ActiGraph's vendor format: a 10-line preamble, ``Accelerometer X,Y,Z`` columns, no time
column) is read too: its start and sampling rate come from the preamble (:func:`actilife_preamble`).

Large files are read in chunks (:func:`open_csv_stream`), never whole. A ``.npz`` holds ``signals (T, C)``
and ``time (T,)`` seconds or a scalar ``rate``; a ``.npy`` is ``signals (T, C)`` and needs ``rate``.
"""

from __future__ import annotations

import csv as csv_module
import itertools
import logging
import math
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from zerohar.data.layout import AXES, UNITS, Channel, SensorLayout, check_layout_flags
from zerohar.data.windows import Recording
from zerohar.errors import ZeroharError
from zerohar.io import check_input_file, note_input

logger = logging.getLogger(__name__)

NAME = "csv"
URL = None
DEFAULT_LAYOUT = None
CHUNK_ROWS = 200_000
SUFFIXES = (".csv", ".tsv")
TIME_NAMES = ("time", "timestamp", "t", "times", "seconds", "datetime", "date")
LABEL_NAMES = ("label", "labels", "activity", "class")
SUBJECT_NAMES = ("subject", "subjectid", "user", "userid", "participant", "participantid")
#: Column-name stems of each sensor kind; a channel column is stem + axis or axis + stem (case, spaces,
#: underscores, hyphens and dots ignored): acc_x, accX, x_acc, ax; gyro_x, gx, wx; mag_x, mx.
PREFIXES = {
    "acc": ("acc", "accel", "acceleration", "accelerometer", "a"),
    "gyro": ("gyro", "gyr", "gyroscope", "angvel", "w", "g"),
    "mag": ("mag", "magn", "magnetometer", "m"),
}
_MIN_RATE, _MAX_RATE = 0.5, 5000.0  # plausible sampling rates, to catch a time column in ms


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-.()\[\]]", "", name.strip().lower())


_CHANNEL_NAMES = {p + a: (s, a) for s, ps in PREFIXES.items() for p in ps for a in AXES} | {
    a + p: (s, a) for s, ps in PREFIXES.items() for p in ps for a in AXES
}


def channel_of(column: str) -> tuple[str, str] | None:
    """`(sensor, axis)` a column name stands for (``acc_x``, ``AccX``, ``x_acc``, ``ax``, ``gx`` ...), else None."""
    return _CHANNEL_NAMES.get(_norm(column))


# ---------------------------------------------------------------------------------------------- column plan
@dataclass
class _Plan:
    """Which CSV column is what: resolved once from the header and the layout."""

    path: Path
    delimiter: str
    header: list[str]
    layout: SensorLayout  # declared units, channels in canonical order
    channel_cols: list[int]  # header index of each layout channel
    time_col: int | None
    label_col: int | None
    subject_col: int | None
    time_is_datetime: bool = False  # the first row's time is not a number: ISO 8601 datetimes
    time_aware: bool | None = None  # the datetimes carry a time zone (set by the first chunk)
    time_first: tuple[int, str] | None = None  # line and text of the first datetime
    time_offset_s: float | None = None  # the first datetime's UTC offset as written (times with a zone)
    skip: int = 0  # lines before the header row (an ActiLife export's preamble)
    start: float | None = None  # an ActiLife export's start (UTC-naive epoch seconds): times are absolute
    rate: float | None = None  # an ActiLife export's sampling rate (Hz), from its first line


def _find(header_norm: list[str], names: tuple[str, ...]) -> int | None:
    hits = [i for i, h in enumerate(header_norm) if h in names]
    return hits[0] if hits else None


#: The first line of an ActiLife CSV export ("------------ Data File Created By ActiGraph GT3X+ ActiLife v6.13.4
#: Firmware v2.5.0 date format M/d/yyyy at 30 Hz  Filter Normal -----------").
ACTILIFE_MARK = "Data File Created By ActiGraph"
#: Lines of an ActiLife preamble before the column names: 10 (the first line, 8 settings, a line of dashes).
ACTILIFE_LINES = 10


def actilife_preamble(path: Path) -> tuple[int, float, float] | None:
    """`(lines before the header, start in epoch seconds, rate in Hz)` of an ActiLife CSV export, else None.

    ActiLife writes the samples without a time column: the start comes from the `Start Time` / `Start Date`
    lines (in the export's own date format, named on its first line), the rate from "at 30 Hz" on the first line.
    The start is read as a naive local time, like a naive ISO datetime in a time column.
    """
    try:
        with open(path, encoding="utf-8-sig") as f:
            lines = [f.readline() for _ in range(ACTILIFE_LINES)]
    except (OSError, UnicodeDecodeError):
        return None  # the ordinary reader reports it
    if ACTILIFE_MARK not in lines[0]:
        return None
    rate = re.search(r"\bat\s+([0-9.]+)\s*Hz", lines[0])
    fmt = re.search(r"date format\s+(\S+)", lines[0])
    fields = {}
    for ln in lines:
        m = re.match(r"(Start Time|Start Date)\s+(\S+)", ln.strip())
        if m:
            fields[m.group(1)] = m.group(2)
    if not (rate and fmt and len(fields) == 2):
        raise ZeroharError(f"{path} looks like an ActiLife CSV export, but its header lacks the sampling rate, "
                           "the date format or the start time and date; export it again with the default header")
    py_fmt = re.sub(r"yyyy|MM?|dd?", lambda t: {"y": "%Y", "M": "%m", "d": "%d"}[t.group(0)[0]], fmt.group(1))
    try:
        start = datetime.strptime(f"{fields['Start Date']} {fields['Start Time']}", f"{py_fmt} %H:%M:%S")
    except ValueError:
        raise ZeroharError(f"{path}: ActiLife start {fields['Start Date']} {fields['Start Time']} does not match "
                           f"its date format {fmt.group(1)}") from None
    epoch = (np.datetime64(start, "us") - np.datetime64(0, "us")) / np.timedelta64(1, "s")
    return ACTILIFE_LINES, float(epoch), float(rate.group(1))


def _read_header(path: Path, skip: int = 0) -> tuple[str, list[str], str | None]:
    """Delimiter, column names and the first data row (None for a file without rows), after `skip` lines."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            for _ in range(skip):
                f.readline()
            first = f.readline()
            row = next((ln for ln in f if ln.strip()), None)
    except UnicodeDecodeError:
        raise ZeroharError(f"{path} is not a text (UTF-8) CSV file (line {_bad_utf8_line(path)})") from None
    except OSError as e:
        raise ZeroharError(f"cannot read input file {path}: {(e.strerror or str(e)).lower()}") from None
    if not first.strip():
        raise ZeroharError(f"{path} is empty; expected a header row (time, acc_x, acc_y, acc_z, ...)")
    delim = "\t" if "\t" in first else ";" if ";" in first and "," not in first else ","
    header = [h.strip().strip('"') for h in first.rstrip("\r\n").split(delim)]
    if "\x00" in first or any(not h for h in header):
        raise ZeroharError(f"{path} has no usable header row (found {first.strip()[:60]!r}); expected column names "
                           "such as time, acc_x, acc_y, acc_z")
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise ZeroharError(f"{path}: column {dup[0]!r} appears twice in the header")
    return delim, header, row


def _bad_utf8_line(path: Path) -> int:
    """Number of the first line of `path` that is not UTF-8 (only called once decoding has failed)."""
    with open(path, "rb") as f:
        for i, raw in enumerate(f, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return i
    return 1


def _plan(path: Path, layout: SensorLayout | None, placement: str | None, device: str | None) -> _Plan:
    acti = actilife_preamble(path)
    delim, header, row = _read_header(path, acti[0] if acti else 0)
    if row is None:
        raise ZeroharError(f"{path} has a header but no data rows")
    norm = [_norm(h) for h in header]
    time_col = _find(norm, TIME_NAMES)
    label_col = _find(norm, LABEL_NAMES)
    subject_col = _find(norm, SUBJECT_NAMES)
    if layout is None:
        if not (placement and device):
            raise ZeroharError(
                f"{path}: give a sensor layout file (--layout FILE.yaml), or the placement and device of its "
                "sensors (--placement, --device)"
            )
        found = [(i, channel_of(h)) for i, h in enumerate(header)]
        chans = [Channel(k[0], k[1], placement, device, UNITS[k[0]][0], header[i]) for i, k in found if k]
        if not chans:
            raise ZeroharError(
                f"{path} has no sensor columns (found {header}); expected columns such as acc_x, acc_y, acc_z"
            )
        layout = SensorLayout.from_channels(chans, path.stem, str(path))
        cols = [header.index(c) for c in layout.columns]
    elif layout.columns:
        index = {h: i for i, h in enumerate(header)} | {n: i for i, n in enumerate(norm)}
        missing = [c for c in layout.columns if c not in index and _norm(c) not in index]
        if missing:
            raise ZeroharError(
                f"{_layout_name(layout)} does not match {path}: its columns {missing} are not in the file, which "
                f"has {header}"
            )
        cols = [index.get(c, index.get(_norm(c))) for c in layout.columns]
    else:
        # A layout without `column` keys: find each channel by its sensor kind and axis.
        kinds = [s.sensor for s in layout.sensors]
        if len(set(kinds)) != len(kinds):
            raise ZeroharError(
                f"{_layout_name(layout)} has several sensors of one kind but no 'column' keys; add a 'column' to "
                f"each channel to say which column of {path} it is"
            )
        by_key = {channel_of(h): i for i, h in enumerate(header) if channel_of(h)}
        missing = [f"{c.sensor}_{c.axis}" for c in layout.channels if (c.sensor, c.axis) not in by_key]
        if missing:
            raise ZeroharError(
                f"{_layout_name(layout)} does not match {path}: no column for {missing}; the file has {header}"
            )
        cols = [by_key[(c.sensor, c.axis)] for c in layout.channels]
    used = set(cols) | {c for c in (time_col, label_col, subject_col) if c is not None}
    dup = [c for c in set(cols) if cols.count(c) > 1]
    if dup:
        raise ZeroharError(f"{_layout_name(layout)}: column {header[dup[0]]!r} of {path} is named by two channels")
    extra = [h for i, h in enumerate(header) if i not in used]
    if extra:
        raise ZeroharError(
            f"{path} has columns {extra} that are neither time, label, subject nor a channel of the sensor "
            f"layout; expected only those (remove them, or name them in a layout file)"
        )
    is_dt = time_col is not None and not _is_float(row.rstrip("\r\n").split(delim)[time_col].strip().strip('"'))
    extra_plan = {}  # an ActiLife export: skip its preamble; start and rate from it unless it has a time column
    if acti is not None:
        extra_plan = dict(skip=acti[0]) if time_col is not None else dict(skip=acti[0], start=acti[1], rate=acti[2])
    return _Plan(path, delim, header, layout, cols, time_col, label_col, subject_col, is_dt, **extra_plan)


def _layout_name(layout: SensorLayout) -> str:
    return layout.source or f"sensor layout {layout.name or '(unnamed)'}"


# ---------------------------------------------------------------------------------------------- parsing
def _check_fields(lines: list[str], plan: _Plan, first_line: int) -> None:
    """Every row has as many fields as the header (a row with more would otherwise be read silently): one count
    of delimiters per chunk, and a row-by-row look only when it differs."""
    n = len(plan.header)
    rows = sum(1 for ln in lines if ln.strip())
    if "".join(lines).count(plan.delimiter) == (n - 1) * rows:
        return
    for k, line in enumerate(lines):
        if not line.strip():
            continue
        found = len(next(csv_module.reader([line], delimiter=plan.delimiter)))
        if found != n:
            raise ZeroharError(
                f"{plan.path} line {first_line + k} has {found} fields; expected {n} like the header"
            )


def _numbers(lines: list[str], plan: _Plan, cols: list[int], first_line: int) -> np.ndarray:
    try:
        return np.loadtxt(lines, delimiter=plan.delimiter, usecols=cols, dtype=np.float64, ndmin=2, quotechar='"')
    except ValueError:
        pass
    # Empty cells are missing values (NaN); anything else non-numeric is an error naming line and column.
    for k, line in enumerate(lines):
        if not line.strip():
            continue  # blank lines are skipped, as numpy does
        fields = line.rstrip("\r\n").split(plan.delimiter)
        if len(fields) != len(plan.header):
            raise ZeroharError(
                f"{plan.path} line {first_line + k} has {len(fields)} fields; expected {len(plan.header)} like "
                "the header"
            )
        for c in cols:
            v = fields[c].strip().strip('"')
            if v:
                try:
                    float(v)
                except ValueError:
                    raise ZeroharError(
                        f"{plan.path} line {first_line + k}, column {plan.header[c]!r}: {v[:30]!r} is not a number"
                    ) from None

    def conv(s: str) -> float:
        s = s.strip().strip('"')
        return float(s) if s else np.nan

    return np.loadtxt(lines, delimiter=plan.delimiter, usecols=cols, dtype=np.float64, ndmin=2, converters=conv)


def _strings(lines: list[str], plan: _Plan, col: int) -> np.ndarray:
    out = np.loadtxt(lines, delimiter=plan.delimiter, usecols=[col], dtype=str, ndmin=1, quotechar='"')
    return np.char.strip(out)


def _aware(values: np.ndarray) -> np.ndarray:
    """Which ISO 8601 strings carry a time zone (``Z`` or an offset after the time of day)."""
    return (np.char.endswith(values, "Z") | (np.char.find(values, "+", 19) >= 0)
            | (np.char.find(values, "-", 19) >= 0))


def _datetimes(values: np.ndarray, plan: _Plan, first_line: int) -> np.ndarray:
    """ISO 8601 strings -> seconds since the Unix epoch (naive times read as UTC). One column holds one kind:
    naive times, or times with a zone (offsets may differ, e.g. at a daylight-saving change)."""
    col = plan.header[plan.time_col]
    try:
        first_dt = datetime.fromisoformat(values[0].replace("Z", "+00:00"))
    except ValueError:
        raise ZeroharError(
            f"{plan.path} line {first_line}, column {col!r}: {values[0][:40]!r} is neither seconds nor an ISO "
            "8601 datetime"
        ) from None
    aware = _aware(values)
    if plan.time_aware is None:
        plan.time_aware, plan.time_first = bool(aware[0]), (first_line, str(values[0]))
        if plan.time_aware:
            plan.time_offset_s = first_dt.utcoffset().total_seconds()
    other = np.flatnonzero(aware != plan.time_aware)
    if len(other):
        i = int(other[0])
        line, first = plan.time_first
        has, other_has = ("has a time zone", "has none") if aware[i] else ("has no time zone", "has one")
        raise ZeroharError(
            f"{plan.path} line {first_line + i}, column {col!r}: {values[i][:40]!r} {has}, but line {line}'s "
            f"{first!r} {other_has}; expected one kind in a column (naive and zoned times cannot be ordered)"
        )
    try:
        if not plan.time_aware:
            dt = values.astype("datetime64[us]")
            return (dt - np.datetime64(0, "us")).astype(np.float64) / 1e6
        return np.array([datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp() for v in values.tolist()])
    except ValueError:
        bad = next((i for i, v in enumerate(values.tolist()) if not _is_datetime(v)), 0)
        raise ZeroharError(
            f"{plan.path} line {first_line + bad}, column {col!r}: {values[bad][:40]!r} is not an ISO 8601 "
            "datetime like the first row"
        ) from None


def _is_datetime(v: str) -> bool:
    try:
        datetime.fromisoformat(v.replace("Z", "+00:00"))
        return True
    except ValueError:
        return False


def check_rate(rate: float | None, source: str) -> float | None:
    """A sampling rate given by the user (``--rate``): None, or a finite number of Hz in the plausible range."""
    if rate is None:
        return None
    if not (isinstance(rate, (int, float)) and math.isfinite(rate) and rate > 0):
        raise ZeroharError(f"{source}: --rate must be a positive number of Hz, found {rate}")
    if not _MIN_RATE <= rate <= _MAX_RATE:
        raise ZeroharError(f"{source}: --rate {rate:g} Hz is outside {_MIN_RATE:g}-{_MAX_RATE:g} Hz, the rates of "
                           "wearable sensors")
    return float(rate)


def _iter_rows(plan: _Plan, chunk_rows: int, rate: float | None):
    """Chunks `(times, signals, label strings | None, subject strings | None)` of one file, checked."""
    if plan.rate is not None:
        if rate is not None and abs(rate - plan.rate) > 1e-9:
            raise ZeroharError(f"{plan.path} is an ActiLife export at {plan.rate:g} Hz (its header); --rate "
                               f"{rate:g} contradicts it (leave --rate out)")
        rate = plan.rate
    if plan.time_col is None and not rate:
        raise ZeroharError(
            f"{plan.path} has no time column (expected one named {', '.join(TIME_NAMES[:4])}, in seconds or "
            f"ISO datetimes; found {plan.header}); give its sampling rate with --rate"
        )
    if plan.time_col is not None and rate is not None:
        raise ZeroharError(
            f"{plan.path} has a time column ({plan.header[plan.time_col]!r}); --rate is only for files without one "
            "(leave it out)"
        )
    try:
        f = open(plan.path, encoding="utf-8-sig")
    except OSError as e:
        raise ZeroharError(f"cannot read input file {plan.path}: {(e.strerror or str(e)).lower()}") from None
    with f:
        for _ in range(plan.skip + 1):  # an ActiLife preamble, then the header row
            f.readline()
        line_no, row0, last = plan.skip + 2, 0, None
        while True:
            try:
                lines = list(itertools.islice(f, chunk_rows))
            except UnicodeDecodeError:
                raise ZeroharError(f"{plan.path} line {_bad_utf8_line(plan.path)} is not UTF-8 text; expected a "
                                   "text (UTF-8) CSV file") from None
            if not lines:
                break
            _check_fields(lines, plan, line_no)
            raw = None
            if plan.time_col is None:
                x = _numbers(lines, plan, plan.channel_cols, line_no)
                t = (plan.start or 0.0) + (row0 + np.arange(len(x))) / rate
            elif plan.time_is_datetime:
                x = _numbers(lines, plan, plan.channel_cols, line_no)
                raw = _strings(lines, plan, plan.time_col)
                t = _datetimes(raw, plan, line_no)
            else:
                tx = _numbers(lines, plan, [plan.time_col, *plan.channel_cols], line_no)
                t, x = tx[:, 0], tx[:, 1:]
            if plan.time_col is not None and len(t):
                _check_chunk_times(t, plan, line_no, last, raw)
                last = (float(t[-1]), None if raw is None else str(raw[-1]))
            labels = _strings(lines, plan, plan.label_col) if plan.label_col is not None else None
            subjects = _strings(lines, plan, plan.subject_col) if plan.subject_col is not None else None
            yield t, x, labels, subjects
            line_no += len(lines)
            row0 += len(x)


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _check_chunk_times(t: np.ndarray, plan: _Plan, line_no: int, last: tuple | None, raw: np.ndarray | None) -> None:
    """Times of one chunk: finite, never going backwards (also from the previous chunk's `last` (t, text)), and
    in the first chunk a plausible sampling rate (times in seconds)."""
    col = plan.header[plan.time_col]
    if not np.isfinite(t).all():
        i = int(np.flatnonzero(~np.isfinite(t))[0])
        raise ZeroharError(f"{plan.path} line {line_no + i}, column {col!r}: the time is missing; expected a number")
    prev = np.concatenate([[last[0] if last is not None else t[0]], t[:-1]])
    back = np.flatnonzero(t < prev)
    if len(back):
        i = int(back[0])
        if raw is not None:  # datetimes: show them as written (two offsets can look alike as seconds)
            before = raw[i - 1] if i else last[1]
            shown, shown_prev = f"{raw[i]!r} ({t[i]:.3f} s since 1970)", f"{before!r} ({prev[i]:.3f} s)"
        else:
            shown, shown_prev = f"{t[i]:.10g}", f"{prev[i]:.10g}"
        raise ZeroharError(
            f"{plan.path} line {line_no + i}, column {col!r}: time {shown} is earlier than the previous row's "
            f"{shown_prev}; expected times that never go backwards"
        )
    if last is None and len(t) > 1:
        dt = np.diff(t)
        dt = dt[dt > 0]
        if len(dt):
            hz = 1.0 / np.median(dt)
            step = float(np.median(dt))
            if hz < _MIN_RATE:
                hint = "; times in milliseconds would give this" if 1.0 <= step <= 1000.0 else ""
                raise ZeroharError(
                    f"{plan.path}, column {col!r}: the median time step is {step:.6g} s, a sampling rate of "
                    f"{hz:.3g} Hz; expected at least {_MIN_RATE:g} Hz with times in seconds{hint}"
                )
            if hz > _MAX_RATE:
                raise ZeroharError(
                    f"{plan.path}, column {col!r}: the median time step is {step:.6g} s, a sampling rate of "
                    f"{hz:.3g} Hz; expected at most {_MAX_RATE:g} Hz with times in seconds"
                )


# ---------------------------------------------------------------------------------------------- streaming
@dataclass
class RecordingStream:
    """A recording opened for chunked reading: declared layout and `(times, signals, labels)` chunks.

    `signals` are in the layout's declared units and channel order; feed the chunks to
    :func:`zerohar.data.transforms.canonical_stream`. `labels` is None unless class names were given.
    """

    path: Path
    layout: SensorLayout
    chunks: Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]
    absolute_time: bool = False  # times are seconds since the Unix epoch (a datetime column)
    meta: dict = field(default_factory=dict)
    #: () -> (wall clock, UTC offset as written): naive datetimes and an ActiLife start are a wall clock (read as if
    #: UTC); datetimes with a zone are instants, the first one's offset as written (None without). Known once the
    #: first chunk is read; None: numbers, no clock.
    clock: Callable[[], tuple[bool, float | None]] | None = None


def _resolve_layout(layout: SensorLayout | str | Path | None, placement: str | None = None,
                    device: str | None = None) -> SensorLayout | None:
    check_layout_flags(layout, placement, device)
    if layout is None or isinstance(layout, SensorLayout):
        return layout
    return SensorLayout.from_yaml(layout)


def _check_file(path: str | Path, suffixes: tuple[str, ...]) -> Path:
    p = check_input_file(path, "input file")
    if p.suffix.lower() not in suffixes:
        raise ZeroharError(f"{p}: expected a {' or '.join(suffixes)} file, found suffix {p.suffix or '(none)'!r}")
    note_input(p)
    return p


def open_csv_stream(
    path: str | Path,
    layout: SensorLayout | str | Path | None = None,
    placement: str | None = None,
    device: str | None = None,
    chunk_rows: int = CHUNK_ROWS,
    class_names: list[str] | None = None,
    rate: float | None = None,
) -> RecordingStream:
    """Open a CSV recording for reading in chunks of `chunk_rows` rows (memory independent of file length).

    The header and layout are checked at once; the rows as the chunks are consumed.

    Args:
        path: the CSV file.
        layout: a SensorLayout or layout YAML file; or None with `placement` and `device`.
        placement, device: describe every sensor when there is no layout (units canonical).
        chunk_rows: rows per chunk.
        class_names: map the label column to these ids (a label outside them is an error); None: no labels.
        rate: sampling rate in Hz for a file without a time column.
    """
    p = _check_file(path, SUFFIXES)
    rate = check_rate(rate, str(p))
    plan = _plan(p, _resolve_layout(layout, placement, device), placement, device)
    lookup = {c: i for i, c in enumerate(class_names)} if class_names is not None else None

    def chunks():
        for t, x, labels, _ in _iter_rows(plan, chunk_rows, rate):
            yield t, x, (_map_labels(labels, lookup, p) if lookup is not None and labels is not None else None)

    def clock() -> tuple[bool, float | None]:
        """(a wall clock: naive datetimes or an ActiLife start; the first datetime's UTC offset as written), known
        once the first chunk is read."""
        return plan.start is not None or (plan.time_is_datetime and plan.time_aware is False), plan.time_offset_s

    return RecordingStream(p, plan.layout, chunks(), plan.time_is_datetime or plan.start is not None, clock=clock)


def iter_csv_chunks(
    path: str | Path,
    layout: SensorLayout | str | Path | None = None,
    chunk_rows: int = CHUNK_ROWS,
    placement: str | None = None,
    device: str | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """`(times (n,) s, signals (n, C) in declared units, None)` chunks of a CSV file (see :func:`open_csv_stream`)."""
    return open_csv_stream(path, layout, placement, device, chunk_rows).chunks


def _map_labels(labels: np.ndarray, lookup: dict[str, int], path: Path) -> np.ndarray:
    names, inv = np.unique(labels, return_inverse=True)
    unknown = [n for n in names.tolist() if n and n not in lookup]
    if unknown:
        raise ZeroharError(
            f"{path}: label {unknown[0]!r} is not one of the classes ({', '.join(list(lookup)[:12])}); expected "
            "labels from the folds file"
        )
    ids = np.array([lookup.get(n, -1) for n in names.tolist()], dtype=np.int64)
    return ids[inv]


# ---------------------------------------------------------------------------------------------- whole files
@dataclass
class _Table:
    """A whole CSV file: times, signals (declared units) and the label / subject texts if present."""

    path: Path
    plan: _Plan
    t: np.ndarray
    x: np.ndarray
    labels: np.ndarray | None
    subjects: np.ndarray | None

    def label_names(self) -> set[str]:
        return {v for v in np.unique(self.labels).tolist() if v} if self.labels is not None else set()

    def recordings(self, class_names: list[str]) -> list[Recording]:
        """One Recording per run of equal subject values (one for a file without a subject column)."""
        n = len(self.t)
        if self.labels is None:
            ids = np.full(n, -1, dtype=np.int64)
        else:
            ids = _map_labels(self.labels, {c: i for i, c in enumerate(class_names)}, self.path)
        if self.subjects is None:
            bounds, subjects = [0, n], [self.path.stem]
        else:
            bounds = [0, *(np.flatnonzero(self.subjects[1:] != self.subjects[:-1]) + 1).tolist(), n]
            subjects = [str(self.subjects[a]) or self.path.stem for a in bounds[:-1]]
        out = []
        for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            name = self.path.stem if len(subjects) == 1 else f"{self.path.stem}#{k}"
            meta = {"path": str(self.path), "class_names": list(class_names)}
            out.append(Recording(self.x[a:b], self.plan.layout, ids[a:b], subjects[k], name, timestamps=self.t[a:b],
                                 meta=meta))
        return out


def _read_file(path: Path, layout, placement, device, rate) -> _Table:
    plan = _plan(path, _resolve_layout(layout, placement, device), placement, device)
    parts = list(_iter_rows(plan, CHUNK_ROWS, rate))
    t, x, labels, subjects = (None if p[0] is None else np.concatenate(p) for p in zip(*parts))
    return _Table(path, plan, t, x, labels, subjects)


def read_csv_recording(
    path: str | Path,
    layout: SensorLayout | str | Path | None = None,
    placement: str | None = None,
    device: str | None = None,
    class_names: list[str] | None = None,
    rate: float | None = None,
) -> Recording:
    """Read a whole CSV recording (raw: declared units, its own timestamps).

    Args:
        path: the CSV file.
        layout, placement, device, rate: see :func:`open_csv_stream`.
        class_names: the class ordering for the label column; None: its sorted unique labels.

    Returns:
        A Recording with `timestamps`; `meta["class_names"]` is the class ordering its labels index.
    """
    p = _check_file(path, SUFFIXES)
    table = _read_file(p, layout, placement, device, rate)
    recs = table.recordings(sorted(table.label_names()) if class_names is None else class_names)
    if len(recs) > 1:
        raise ZeroharError(
            f"{p} holds {len(recs)} subjects; read it as a dataset (zerohar prepare --dataset csv) to keep them apart"
        )
    return recs[0]


def read(
    root: str | Path,
    progress: bool = True,
    layout: SensorLayout | str | Path | None = None,
    placement: str | None = None,
    device: str | None = None,
    class_names: list[str] | None = None,
    rate: float | None = None,
) -> list[Recording]:
    """Read a CSV file or a folder of them (searched recursively) as a dataset.

    Args:
        root: a .csv / .tsv file or a folder.
        progress: show a progress bar.
        layout, placement, device, rate: see :func:`open_csv_stream`; one layout for every file.
        class_names: the class ordering (from a folds file); None: the sorted unique labels of all files.

    Returns:
        Raw recordings (one per file and subject); `meta["class_names"]` is the class ordering of the labels.
    """
    root = Path(root)
    rate = check_rate(rate, str(root))
    if root.is_dir():
        files = _recording_files(root)
        if not files:
            raise ZeroharError(f"csv: {root} holds no .csv or .tsv files")
    else:
        files = [_check_file(root, SUFFIXES)]
    layout = _resolve_layout(layout, placement, device)
    tables = [_read_file(p, layout, placement, device, rate)
              for p in tqdm(files, desc="csv", unit="file", disable=not progress)]
    keys = {tuple(s.key for s in tab.plan.layout.sensors) for tab in tables}
    if len(keys) > 1:
        raise ZeroharError(f"csv: the files under {root} have different sensors ({sorted(keys)}); expected one layout")
    if class_names is None:
        class_names = sorted(set().union(*(tab.label_names() for tab in tables)))
    recs = [r for tab in tables for r in tab.recordings(class_names)]
    logger.info("csv: %d recordings from %d files, %d subjects, classes %s", len(recs), len(files),
                len({r.subject for r in recs}), class_names)
    return recs


def _recording_files(root: Path) -> list[Path]:
    """The .csv / .tsv files under `root`, recursively; hidden files and folders (``.name``, e.g. a temporary
    file of an interrupted write) are skipped, as a shell's ``*`` skips them."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=_walk_error):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if not name.startswith(".") and p.suffix.lower() in SUFFIXES and p.is_file():
                out.append(p)
    return sorted(out)


def _walk_error(e: OSError) -> None:
    raise ZeroharError(f"cannot list folder {e.filename}: {(e.strerror or str(e)).lower()}")


def download(root: str | Path) -> Path:
    raise ZeroharError("the csv source reads your own files; there is nothing to download")


# ---------------------------------------------------------------------------------------------- .npy / .npz
def _array_layout(p: Path, n_channels: int, layout, placement, device) -> SensorLayout:
    layout = _resolve_layout(layout, placement, device)
    if layout is None:
        if not (placement and device):
            raise ZeroharError(
                f"{p}: give its sensor layout (--layout FILE.yaml), or --placement and --device (then its columns "
                "are read as acc x, y, z [, gyro x, y, z [, mag x, y, z]] in g, rad/s, uT)"
            )
        kinds = {3: ["acc"], 6: ["acc", "gyro"], 9: ["acc", "gyro", "mag"]}.get(n_channels)
        if kinds is None:
            raise ZeroharError(
                f"{p}: {n_channels} columns cannot be read as acc [, gyro [, mag]] triads (expected 3, 6 or 9); "
                "give a sensor layout file"
            )
        chans = [Channel(k, a, placement, device, UNITS[k][0]) for k in kinds for a in AXES]
        layout = SensorLayout.from_channels(chans, p.stem, str(p))
    if layout.n_channels != n_channels:
        raise ZeroharError(
            f"{_layout_name(layout)} does not match {p}: the layout has {layout.n_channels} channels, the file "
            f"{n_channels} signal columns"
        )
    return layout


def _real(a: np.ndarray) -> bool:
    return a.dtype.kind in "iuf"


def open_array_stream(
    path: str | Path,
    layout: SensorLayout | str | Path | None = None,
    placement: str | None = None,
    device: str | None = None,
    rate: float | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> RecordingStream:
    """Open a `.npy` (`(T, C)`, memory-mapped; needs `rate`) or `.npz` (`signals`, `time` or `rate`) recording."""
    p = _check_file(path, (".npy", ".npz"))
    rate = check_rate(rate, str(p))
    file_rate = None
    try:
        if p.suffix.lower() == ".npy":
            signals, times = np.load(p, mmap_mode="r", allow_pickle=False), None
        else:
            with np.load(p, allow_pickle=False) as z:
                if "signals" not in z.files:
                    raise ZeroharError(
                        f"{p}: expected arrays 'signals' (T, C) and 'time' (T,) seconds or 'rate', found {z.files}"
                    )
                signals = z["signals"]
                times = z["time"] if "time" in z.files else None
                if "rate" in z.files:
                    r = z["rate"]
                    if r.shape != () or not _real(r):
                        raise ZeroharError(f"{p}: 'rate' must be one number (Hz), found an array of shape {r.shape}")
                    file_rate = check_rate(float(r), f"{p} ('rate')")
    except ZeroharError:
        raise
    except OSError as e:
        raise ZeroharError(f"cannot read input file {p}: {(e.strerror or str(e)).lower()}") from None
    except Exception as e:  # noqa: BLE001 - not a numpy file, pickled objects, truncated file
        raise ZeroharError(f"{p} is not a readable numpy file ({e.__class__.__name__})") from None
    if signals.ndim != 2 or not _real(signals):
        raise ZeroharError(f"{p}: expected a (T, C) array of real numbers as signals, found shape {signals.shape} "
                           f"of {signals.dtype}")
    if len(signals) == 0:
        raise ZeroharError(f"{p}: the signals array has no rows (samples)")
    if times is not None:
        if rate is not None or file_rate is not None:
            raise ZeroharError(f"{p} has a 'time' array; a rate ({'--rate' if rate else 'its rate'}) cannot go with "
                               "it")
        if times.shape != (len(signals),) or not _real(times):
            raise ZeroharError(f"{p}: 'time' has shape {times.shape} of {times.dtype}, expected ({len(signals)},) "
                               "numbers (seconds) like 'signals'")
    if file_rate is not None and rate is not None and abs(file_rate - rate) > 1e-9 * rate:
        raise ZeroharError(f"{p} says its rate is {file_rate:g} Hz, but --rate says {rate:g}; leave --rate out")
    rate = rate or file_rate
    if times is None and not rate:
        raise ZeroharError(f"{p}: has no 'time' array; give its sampling rate in Hz (--rate)")
    lay = _array_layout(p, signals.shape[1], layout, placement, device)

    def chunks():
        for a in range(0, len(signals), chunk_rows):
            b = min(a + chunk_rows, len(signals))
            t = np.asarray(times[a:b], np.float64) if times is not None else np.arange(a, b) / float(rate)
            yield t, np.asarray(signals[a:b], dtype=np.float64), None

    return RecordingStream(p, lay, chunks())


def read_array_recording(
    path: str | Path,
    layout: SensorLayout | str | Path | None = None,
    placement: str | None = None,
    device: str | None = None,
    rate: float | None = None,
) -> Recording:
    """A whole `.npy` / `.npz` recording (see :func:`open_array_stream`), unlabelled."""
    s = open_array_stream(path, layout, placement, device, rate, chunk_rows=1 << 62)
    t, x, _ = next(s.chunks, (np.zeros(0), np.zeros((0, s.layout.n_channels)), None))
    return Recording(x, s.layout, np.full(len(t), -1, dtype=np.int64), s.path.stem, s.path.stem, timestamps=t,
                     meta={"path": str(s.path)})


def open_stream(path: str | Path, **kwargs) -> RecordingStream:
    """:func:`open_csv_stream`, or :func:`open_array_stream` for `.npy` / `.npz`, by file suffix."""
    if Path(path).suffix.lower() in (".npy", ".npz"):
        kwargs.pop("class_names", None)
        return open_array_stream(path, **kwargs)
    return open_csv_stream(path, **kwargs)
