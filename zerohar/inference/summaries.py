"""Summaries of labelled windows: time per label, segments of consecutive windows, durations for people; and
the study outputs of a timestamped recording: per-minute labels, days (local time, daylight saving) and a
timeline figure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from zerohar.errors import ZeroharError
from zerohar.io import atomic_write


@dataclass
class ClassifyResult:
    """What :func:`classify_recording` wrote."""

    out: Path
    n_windows: int
    window_s: float
    step_s: float
    duration_s: float  # time covered by windows (each window counts for one step, the last for a whole window)
    seconds_per_label: dict[str, float] = field(default_factory=dict)

    def summary_lines(self) -> list[str]:
        """A table of time per label, largest first."""
        total = sum(self.seconds_per_label.values()) or 1.0
        width = max([5] + [len(k) for k in self.seconds_per_label])
        lines = [f"{'label':<{width}}  {'time':>10}  {'share':>6}"]
        for lab, s in sorted(self.seconds_per_label.items(), key=lambda kv: -kv[1]):
            lines.append(f"{lab:<{width}}  {format_duration(s):>10}  {100 * s / total:5.1f}%")
        return lines


def format_duration(seconds: float) -> str:
    """`HH:MM:SS` (with days as `Nd HH:MM:SS` beyond 24 h)."""
    s = int(round(seconds))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return f"{d}d {h:02d}:{m:02d}:{s:02d}" if d else f"{h:02d}:{m:02d}:{s:02d}"


def segments(starts: Sequence[float], labels: Sequence[str], step_s: float, window_s: float) -> list[tuple]:
    """Merge consecutive windows with one label into `(start_s, end_s, label)` segments.

    A window stands for the `step_s` seconds from its start; the last window before a gap (or the end)
    stands for its whole length. Windows further apart than one step start a new segment.
    """
    out: list[list] = []
    prev = None
    for t, lab in zip(np.asarray(starts, dtype=np.float64).tolist(), labels):
        contiguous = prev is not None and abs(t - prev - step_s) < 1e-6 * max(1.0, step_s)
        if prev is not None and not contiguous:
            out[-1][1] = prev + window_s
        if contiguous and out[-1][2] == lab:
            out[-1][1] = t + step_s
        else:
            out.append([t, t + step_s, lab])
        prev = t
    if out:
        out[-1][1] = prev + window_s
    return [tuple(x) for x in out]


# ---------------------------------------------------------------------------------------------- study outputs
#: Label of windows a device flagged as not worn; they are never classified.
NONWEAR = "non-wear"
#: The label of a window that no candidate fits (see :mod:`zerohar.train.unknown`).
UNKNOWN = "unknown"
#: A day is valid when its wear time reaches this many hours (actinet / stepcount use 20 h).
MIN_WEAR_HOURS = 20.0
VALID_DAY_RULE = (
    "a day (local midnight to midnight: 23 or 25 h on daylight-saving days) is valid when its wear time, the time "
    "covered by windows not flagged non-wear, is at least {h:g} h (as in actinet / stepcount); time without data "
    "counts as not worn; the first and last days are marked partial when the recording starts after the day's "
    "midnight or ends before its end"
)


def resolve_timezone(name: str | None):
    """A `zoneinfo.ZoneInfo` for an IANA name (e.g. `Europe/London`), None for None.

    Raises:
        ZeroharError: the name is not a time zone.
    """
    if name is None:
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ZeroharError(
            f"--timezone {name!r} is not a time zone; expected an IANA name such as Europe/London or America/New_York"
        ) from None


def _offset(t: float, tz) -> float:
    """UTC offset in seconds of zone `tz` at the instant `t` (seconds since the epoch)."""
    return datetime.fromtimestamp(t, tz).utcoffset().total_seconds()


def clock_offset_s(t0: float, tz) -> float:
    """The UTC offset of a device clock set in zone `tz`: the zone's offset at the clock's first reading `t0`
    (a naive wall-clock time read as if UTC). Devices keep that clock; they do not change it at daylight saving."""
    if tz is None:
        return 0.0
    naive = datetime(1970, 1, 1) + timedelta(seconds=float(t0))
    return naive.replace(tzinfo=tz).utcoffset().total_seconds()


def to_instants(times, tz, *, device_clock: bool) -> np.ndarray:
    """Seconds since the epoch of real instants: a device clock (naive, read as if UTC) is shifted by the zone's
    offset at its first reading (:func:`clock_offset_s`); other times are instants already. Without a zone the
    times are used as they are (days of the clock as written)."""
    t = np.asarray(times, dtype=np.float64)
    if tz is None or not device_clock or not len(t):
        return t
    return t - clock_offset_s(float(t[0]), tz)


def local_offsets(instants, tz) -> np.ndarray:
    """`(n,)` UTC offsets (s) of zone `tz` at each instant (0 without a zone); computed once per minute."""
    t = np.asarray(instants, dtype=np.float64)
    if tz is None or not len(t):
        return np.zeros(len(t))
    minutes, inv = np.unique(np.floor(t / 60.0), return_inverse=True)
    return np.array([_offset(m * 60.0, tz) for m in minutes.tolist()])[inv.reshape(-1)]


def format_local(instants, tz) -> list[str]:
    """ISO 8601 local times (with the zone's offset), or naive clock times without a zone."""
    out = []
    for t in np.asarray(instants, dtype=np.float64).tolist():
        if tz is None:
            out.append((datetime(1970, 1, 1) + timedelta(seconds=t)).isoformat(timespec="seconds"))
        else:
            out.append(datetime.fromtimestamp(t, tz).isoformat(timespec="seconds"))
    return out


@dataclass
class MinuteTable:
    """Time per label in each minute that holds data.

    Attributes:
        start: `(m,)` instants (s since the epoch) of the minutes' starts, increasing.
        names: the label names (columns of `seconds`), :data:`NONWEAR` among them.
        seconds: `(m, L)` seconds of each label in each minute.
        offset: `(m,)` the zone's UTC offset (s) at each minute (0 without a zone).
    """

    start: np.ndarray
    names: list[str]
    seconds: np.ndarray
    offset: np.ndarray

    @property
    def label(self) -> np.ndarray:
        """The label holding most of each minute (non-wear included; ties to the first name)."""
        return np.asarray(self.names, dtype=object)[self.seconds.argmax(axis=1)]

    @property
    def covered_s(self) -> np.ndarray:
        return self.seconds.sum(axis=1)

    @property
    def nonwear_s(self) -> np.ndarray:
        return self.seconds[:, self.names.index(NONWEAR)] if NONWEAR in self.names else np.zeros(len(self.start))


def minute_table(instants, labels: Sequence[str], step_s: float, names: Sequence[str] | None = None,
                 tz=None) -> MinuteTable:
    """Per-minute time per label of labelled windows.

    Each window stands for the `step_s` seconds from its start (split at minute borders); minutes are whole
    minutes of the epoch, so whole-hour and half-hour zones share them with local time.

    Args:
        instants: `(n,)` window starts, seconds since the epoch (see :func:`to_instants`).
        labels: `(n,)` window labels (:data:`NONWEAR` for non-wear windows).
        step_s: seconds between window starts (at most 60).
        names: the label names in column order (default: in order of appearance, non-wear last).
        tz: the zone for :attr:`MinuteTable.offset`.
    """
    s = np.asarray(instants, dtype=np.float64)
    labels = [str(v) for v in labels]
    if not 0 < step_s <= 60:
        raise ZeroharError(f"minute summaries need a window step of at most 60 s, found {step_s:g}")
    if names is None:
        names = list(dict.fromkeys(v for v in labels if v != NONWEAR))
    names = list(names) + ([NONWEAR] if NONWEAR not in names else [])
    lookup = {n: i for i, n in enumerate(names)}
    unknown = sorted({v for v in labels if v not in lookup})
    if unknown:
        raise ZeroharError(f"window label {unknown[0]!r} is not one of the label names {names}")
    code = np.array([lookup[v] for v in labels], dtype=np.int64)
    e = s + step_s
    m0 = np.floor(s / 60.0)
    border = np.minimum(e, (m0 + 1.0) * 60.0)
    keys = np.concatenate([m0, m0 + 1.0])
    weights = np.concatenate([border - s, e - border])
    codes = np.concatenate([code, code])
    use = weights > 1e-9
    minutes, inv = np.unique(keys[use], return_inverse=True)
    seconds = np.zeros((len(minutes), len(names)))
    np.add.at(seconds, (inv.reshape(-1), codes[use]), weights[use])
    start = minutes * 60.0
    return MinuteTable(start, names, seconds, local_offsets(start, tz))


def _midnight(day: int, tz) -> float:
    """Instant of the local midnight that starts day `day` (days since 1970-01-01 in local dates)."""
    naive = datetime(1970, 1, 1) + timedelta(days=day)
    if tz is None:
        return day * 86400.0
    return naive.replace(tzinfo=tz).timestamp()


@dataclass
class DailyTable:
    """One row per local day: see :func:`daily_table`."""

    columns: list[str]
    rows: list[dict]
    rule: str

    def column(self, name: str) -> list:
        return [r[name] for r in self.rows]


def daily_table(minutes: MinuteTable, tz=None, *, first_s: float | None = None, last_s: float | None = None,
                min_wear_hours: float = MIN_WEAR_HOURS) -> DailyTable:
    """Minutes per label per local day, wear time and the valid-day flag (:data:`VALID_DAY_RULE`).

    Days run from local midnight to local midnight in zone `tz` (without a zone: days of the clock as written,
    24 h each), so a day on which daylight saving starts has 23 h and one on which it ends 25 h.

    Args:
        minutes: the :func:`minute_table`.
        tz: the zone.
        first_s, last_s: instants of the recording's first sample and of the end of its last window (default:
            the first and last minute with data), for the `partial` flag.
        min_wear_hours: wear time of a valid day.

    Returns:
        Columns `date, day_hours, covered_hours, wear_hours, nonwear_hours, <label>_min ..., partial, valid`.
    """
    labels = [n for n in minutes.names if n != NONWEAR]
    columns = ["date", "day_hours", "covered_hours", "wear_hours", "nonwear_hours"]
    columns += [f"{n}_min" for n in labels] + ["partial", "valid"]
    rows: list[dict] = []
    if len(minutes.start):
        day = np.floor((minutes.start + minutes.offset) / 86400.0).astype(np.int64)
        first_s = float(minutes.start[0]) if first_s is None else float(first_s)
        last_s = float(minutes.start[-1] + 60.0) if last_s is None else float(last_s)
        tol = 60.0
        for d in range(int(day[0]), int(day[-1]) + 1):
            sel = day == d
            a, b = _midnight(d, tz), _midnight(d + 1, tz)
            covered = float(minutes.covered_s[sel].sum())
            nonwear = float(minutes.nonwear_s[sel].sum())
            wear = covered - nonwear
            row = {"date": (datetime(1970, 1, 1) + timedelta(days=d)).date().isoformat(),
                   "day_hours": (b - a) / 3600.0, "covered_hours": covered / 3600.0, "wear_hours": wear / 3600.0,
                   "nonwear_hours": nonwear / 3600.0}
            for j, n in enumerate(minutes.names):
                if n != NONWEAR:
                    row[f"{n}_min"] = float(minutes.seconds[sel, j].sum()) / 60.0
            row["partial"] = bool(first_s > a + tol or last_s < b - tol)
            row["valid"] = bool(wear >= min_wear_hours * 3600.0 - 1e-6)
            rows.append(row)
    return DailyTable(columns, rows, VALID_DAY_RULE.format(h=min_wear_hours))


def timeline_figure(minutes: MinuteTable, tz, path: str | Path, title: str = "") -> Path:
    """A PNG timeline: one row per local day (0 to 23/24/25 h from midnight), a colour per label, non-wear grey,
    no data white. Written atomically through matplotlib's Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    labels = [n for n in minutes.names if n != NONWEAR]
    cmap = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
            "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5"]
    colour = {n: cmap[i % len(cmap)] for i, n in enumerate(labels)} | {NONWEAR: "#9e9e9e", UNKNOWN: "#d7ccc8"}
    day = np.floor((minutes.start + minutes.offset) / 86400.0).astype(np.int64) if len(minutes.start) else \
        np.zeros(0, dtype=np.int64)
    days = list(range(int(day[0]), int(day[-1]) + 1)) if len(day) else []
    fig = Figure(figsize=(11, 0.45 * max(len(days), 1) + 1.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    lab = minutes.label
    for r, d in enumerate(days):
        sel = np.flatnonzero(day == d)
        if not len(sel):
            continue
        x = (minutes.start[sel] - _midnight(d, tz)) / 3600.0
        # Runs of consecutive minutes with one label: one bar each.
        brk = np.flatnonzero((np.diff(x) > 1.5 / 60.0) | (lab[sel][1:] != lab[sel][:-1])) + 1
        for a, b in zip(np.concatenate([[0], brk]), np.concatenate([brk, [len(sel)]])):
            ax.broken_barh([(x[a], x[b - 1] - x[a] + 1.0 / 60.0)], (r - 0.4, 0.8), facecolors=colour[lab[sel][a]])
    ax.set_yticks(range(len(days)), [(datetime(1970, 1, 1) + timedelta(days=d)).strftime("%a %Y-%m-%d")
                                     for d in days])
    ax.set_ylim(len(days) - 0.5, -0.5)
    ax.set_xlim(0, 25 if any(_midnight(d + 1, tz) - _midnight(d, tz) > 86400 for d in days) else 24)
    ax.set_xticks(range(0, 25, 3))
    ax.set_xlabel(f"hours from local midnight ({getattr(tz, 'key', None) or 'clock as written'})")
    handles = [Patch(color=colour[n], label=n) for n in labels + [NONWEAR]]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.25 if days else -0.1),
              ncol=min(6, len(handles)), frameon=False, fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))


def nonwear_windows(starts, window_s: float, intervals) -> np.ndarray:
    """`(n,)` True for windows `[start, start + window_s)` more than half covered by the non-wear `intervals`
    (`(k, 2)` start, end; sorted, not overlapping)."""
    s = np.asarray(starts, dtype=np.float64)
    iv = np.asarray(intervals, dtype=np.float64).reshape(-1, 2)
    cover = np.zeros(len(s))
    if len(s) and len(iv):
        near = iv[(iv[:, 1] > s.min()) & (iv[:, 0] < s.max() + window_s)]
        for a, b in near.tolist():
            cover += np.clip(np.minimum(s + window_s, b) - np.maximum(s, a), 0.0, None)
    return cover > 0.5 * window_s + 1e-3  # a millisecond of timestamp round-off does not tip a half
