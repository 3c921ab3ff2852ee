"""The canonical form: resampled by time to 30 Hz, units g / rad/s / uT, gaps and NaNs handled, then windows.

Every source hands :func:`to_canonical` a raw :class:`~zerohar.data.windows.Recording` (any rate or jittered
timestamps, declared units); it returns regular-rate pieces (a long gap or a long NaN run splits a recording),
which :func:`make_windows` cuts into windows with the label rule of BENCHMARK.md. :func:`canonical_stream`
does the same as :func:`to_canonical` chunk by chunk, for recordings too long to hold in memory.

Resampling: duplicate timestamps are averaged; an irregular recording is first interpolated linearly onto a
uniform grid at its median rate (rounded to whole Hz, the grid anchored at the stream's first sample, so
chunks change nothing); when that rate is above the target, a zero-phase Butterworth low-pass at
80 % of the target Nyquist frequency removes what would alias; the result is interpolated linearly at the
target grid ``t0 + k / rate``. Labels follow the nearest original sample in time.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
from scipy import signal as sps

from zerohar.data.layout import SENSOR_NAMES, UNITS, SensorLayout
from zerohar.data.windows import Recording, WindowSet, window_class_sets
from zerohar.errors import ZeroharError

logger = logging.getLogger(__name__)

CANONICAL_RATE = 30.0
STANDARD_GRAVITY = 9.80665  # m/s^2 per g
#: Factor from a declared unit to the canonical unit of its sensor kind.
UNIT_FACTORS = {
    ("acc", "g"): 1.0,
    ("acc", "m/s^2"): 1.0 / STANDARD_GRAVITY,
    ("gyro", "rad/s"): 1.0,
    ("gyro", "deg/s"): math.pi / 180.0,
    ("mag", "uT"): 1.0,
    ("mag", "mT"): 1000.0,
    ("mag", "gauss"): 100.0,
}
_ANTI_ALIAS_FRACTION = 0.8  # low-pass cut-off as a fraction of the target Nyquist frequency
_STREAM_GUARD_S = 2.0  # raw signal kept on each side of a chunk boundary so filter edges never reach the output
#: Below this source rate a recording is upsampled with a warning: 30 Hz windows then hold interpolated motion.
LOW_RATE_HZ = 10.0

# Plausibility of each sensor kind, in canonical units, with thresholds far outside what wearables measure
# (checked on every shipped dataset: HAPT, SHOULDER, SPSW-HAR, USC-HAD, PAMAP2, WISDM, HARTH, Opportunity):
#: An accelerometer at rest reads gravity, 1 g; "rest" is the median norm of the quietest quarter of 16-sample
#: blocks, so a short recording that is all motion still shows about 1 g. Below 0.05 g: no gravity (zeros, or
#: linear acceleration with gravity removed); 6-14 g: m/s^2; above 50 g: milli-g (1000) or raw counts.
ACC_NO_GRAVITY_G, ACC_MAX_REST_G = 0.05, 50.0
#: A wearable gyroscope's range ends near 2000 deg/s (35 rad/s): a median above 20 rad/s, or a 99th percentile
#: above 50 rad/s, is deg/s declared rad/s.
GYRO_MAX_MEDIAN, GYRO_MAX_P99 = 20.0, 50.0
#: When the accelerometer on the same device moves clearly (95th percentile of |norm - rest| above 0.3 g), a
#: gyroscope's 95th percentile is above 0.4 rad/s in every dataset; below 0.1 rad/s it was declared deg/s but
#: holds rad/s (57 times too small).
ACC_MOVING_G, GYRO_MIN_P95_MOVING = 0.3, 0.1
#: The Earth's field is 25-65 uT (indoors 10-100): a median below 2 uT is gauss or mT, above 5000 uT is nT.
MAG_MIN_UT, MAG_MAX_UT = 2.0, 5000.0


@dataclass
class CanonicalStats:
    """What :func:`to_canonical` did to one recording (counted so a user can see what was repaired)."""

    duplicates: int = 0  # samples merged into another with the same timestamp
    nan_interpolated: int = 0  # samples in short NaN runs, filled by interpolation
    nan_runs_interpolated: int = 0
    nan_dropped: int = 0  # samples in long NaN runs or at the edges, removed
    nan_runs_dropped: int = 0
    nan_dropped_s: float = 0.0  # time those runs span
    gaps_bridged: int = 0  # timestamp gaps longer than 2 sampling periods but at most max_gap_s, interpolated
    gaps_bridged_s: float = 0.0  # the longest of them
    splits: int = 0  # places where a long gap or a long NaN run split the recording
    low_rate_hz: float = 0.0  # the lowest source rate below LOW_RATE_HZ (upsampled), 0 = none
    recordings: int = 1  # recordings these counts cover

    def add(self, other: CanonicalStats) -> None:
        for k, v in vars(other).items():
            if k == "low_rate_hz":
                self.low_rate_hz = min(x for x in (self.low_rate_hz, v) if x) if (self.low_rate_hz or v) else 0.0
            elif k == "gaps_bridged_s":
                self.gaps_bridged_s = max(self.gaps_bridged_s, v)
            else:
                setattr(self, k, getattr(self, k) + v)

    def any(self) -> bool:
        """True when something was repaired (a split alone repairs nothing)."""
        return bool(self.duplicates or self.nan_interpolated or self.nan_dropped or self.gaps_bridged
                    or self.low_rate_hz)

    def describe(self) -> str:
        """One clause per repair, e.g. "12 NaN samples in 2 runs interpolated, 1 NaN run of 3.2 s dropped"."""
        def n(k: int, word: str) -> str:
            return f"{k} {word}" + ("" if k == 1 else "s")

        parts = []
        if self.nan_interpolated:
            parts.append(f"{n(self.nan_interpolated, 'NaN sample')} in {n(self.nan_runs_interpolated, 'run')} "
                         "interpolated")
        if self.nan_dropped:
            span = f"of {self.nan_dropped_s:.1f} s" if self.nan_runs_dropped == 1 else \
                f"({self.nan_dropped_s:.1f} s in all)"
            parts.append(f"{n(self.nan_runs_dropped, 'NaN run')} {span} dropped ({n(self.nan_dropped, 'sample')})")
        if self.duplicates:
            parts.append(f"{n(self.duplicates, 'sample')} with the same time as the previous one averaged into it")
        if self.gaps_bridged:
            parts.append(f"{n(self.gaps_bridged, 'gap')} in the timestamps (up to {self.gaps_bridged_s:.2g} s) "
                         "bridged by interpolation")
        if self.low_rate_hz:
            parts.append(f"upsampled from {self.low_rate_hz:.3g} Hz to {CANONICAL_RATE:g} Hz (below "
                         f"{LOW_RATE_HZ:g} Hz, windows hold interpolated motion)")
        if self.splits:
            parts.append(f"split at {n(self.splits, 'place')} (long gaps or NaN runs)")
        where = f" in {self.recordings} recordings" if self.recordings > 1 else ""
        return ", ".join(parts) + where


@dataclass
class _Segment:
    """A stretch of raw samples with finite values and no long gap: times (n,), signals (n, C), labels (n,)."""

    t: np.ndarray
    x: np.ndarray
    labels: np.ndarray
    stats: CanonicalStats = field(default_factory=CanonicalStats)


# ---------------------------------------------------------------------------------------------- units
def _rest_norm(norm: np.ndarray) -> float:
    """Median norm of the quietest quarter of 16-sample blocks (the sensor at rest, as near as it gets)."""
    k = len(norm) // 16
    if k < 4:
        return float(np.median(norm))
    blocks = norm[: 16 * k].reshape(k, 16)
    quiet = blocks.std(axis=1) <= np.quantile(blocks.std(axis=1), 0.25)
    return float(np.median(blocks[quiet]))


def _unit_problem(kind: str, unit: str, v: np.ndarray, acc: np.ndarray | None) -> str | None:
    """What is wrong with one sensor's canonical values `v (n, 3)` declared in `unit`, or None.

    `acc` is the canonical accelerometer of the same device, if any (to tell a gyroscope at rest from one 57
    times too small).
    """
    norm = np.linalg.norm(v, axis=1)
    if kind == "acc":
        rest = _rest_norm(norm)
        shown = rest / UNIT_FACTORS[("acc", unit)]
        if rest < ACC_NO_GRAVITY_G:
            return (f"reads {shown:.3g} {unit} at rest, where gravity reads 1 g: no gravity (zeros, or linear "
                    "acceleration with gravity removed); zerohar needs the raw accelerometer")
        if unit == "g" and 6.0 <= rest < 14.0:
            return f"reads {shown:.3g} g at rest, which looks like m/s^2 (gravity is 9.81 m/s^2)"
        if unit == "m/s^2" and 0.06 <= rest < 0.15:
            return f"reads {shown:.3g} m/s^2 at rest, which looks like g (gravity is 1 g)"
        if rest > ACC_MAX_REST_G:
            guess = "milli-g (gravity would read 1000)" if 300 <= rest / (1 if unit == "g" else 9.81) < 3000 \
                else "raw counts or another unit"
            return f"reads {shown:.3g} {unit} at rest, where gravity reads 1 g; it looks like {guess}"
        return None
    if not np.any(v):
        return None  # a sensor that was not recording (warned about by check_units), not a unit mistake
    if kind == "gyro":
        med, p99 = float(np.median(norm)), float(np.quantile(norm, 0.99))
        if unit == "rad/s" and (med > GYRO_MAX_MEDIAN or p99 > GYRO_MAX_P99):
            return (f"turns at a median {med:.3g} rad/s (99th percentile {p99:.3g}), beyond any wearable "
                    "gyroscope's range (35 rad/s); it looks like deg/s")
        if unit == "deg/s" and (med > GYRO_MAX_MEDIAN or p99 > GYRO_MAX_P99):
            return (f"turns at a median {med / UNIT_FACTORS[('gyro', 'deg/s')]:.3g} deg/s, beyond any wearable "
                    "gyroscope's range (2000 deg/s)")
        if unit == "deg/s" and acc is not None:
            a = np.linalg.norm(acc, axis=1)
            moving = float(np.quantile(np.abs(a - _rest_norm(a)), 0.95))
            p95 = float(np.quantile(norm, 0.95))
            if moving > ACC_MOVING_G and p95 < GYRO_MIN_P95_MOVING:
                return (f"turns at most {p95 / UNIT_FACTORS[('gyro', 'deg/s')]:.3g} deg/s (95th percentile) while "
                        f"the accelerometer on the same device moves by {moving:.2g} g; it looks like rad/s")
        return None
    if kind == "mag":
        med = float(np.median(norm))
        shown = med / UNIT_FACTORS[("mag", unit)]
        if med < MAG_MIN_UT:
            other = "gauss or mT" if unit == "uT" else "uT or nT"
            return (f"reads a median field of {shown:.3g} {unit}, where the Earth's field is 25-65 uT; it looks "
                    f"like {other}")
        if med > MAG_MAX_UT:
            other = "nT" if unit == "uT" else "uT or nT"
            return (f"reads a median field of {shown:.3g} {unit}, where the Earth's field is 25-65 uT; it looks "
                    f"like {other}")
    return None


def check_units(signals: np.ndarray, layout: SensorLayout, source: str) -> None:
    """Raise a ZeroharError when a sensor's data is implausible in its declared unit (a unit mistake).

    See the thresholds above (ACC_*, GYRO_*, MAG_*): each is far outside what a wearable measures in the right
    unit, so a real recording (however short, however much it moves) is never refused.

    Args:
        signals: `(T, C)` raw values in the layout's channel order and declared units.
        layout: the declared layout.
        source: file or recording name for the message.
    """
    x = np.asarray(signals, dtype=np.float64)
    finite = np.isfinite(x).all(axis=1)
    if finite.sum() < 10:
        return
    x = x[finite] * unit_factors(layout)
    accs = {(s.placement, s.device): x[:, 3 * i : 3 * i + 3]
            for i, s in enumerate(layout.sensors) if s.sensor == "acc"}
    for i, s in enumerate(layout.sensors):
        v = x[:, 3 * i : 3 * i + 3]
        if s.sensor != "acc" and not np.any(v):
            logger.warning("%s: the %s at %s on %s reads exactly 0 in every sample (was it recording?)", source,
                           SENSOR_NAMES[s.sensor], s.placement, s.device)
        problem = _unit_problem(s.sensor, s.unit, v, accs.get((s.placement, s.device)))
        if problem:
            declared = f"declared in {s.unit}" + (f" by the {layout.source}" if layout.source else "")
            fix = "; declare the right unit in the sensor layout" if "looks like" in problem else ""
            raise ZeroharError(
                f"{source}: the {SENSOR_NAMES[s.sensor]} at {s.placement} on {s.device} ({declared}) {problem}{fix}"
            )


def unit_factors(layout: SensorLayout) -> np.ndarray:
    """`(C,)` factors that bring each channel from its declared unit to the canonical one."""
    out = []
    for s in layout.sensors:
        if (s.sensor, s.unit) not in UNIT_FACTORS:
            raise ZeroharError(f"unknown unit {s.unit!r} for {s.sensor}: expected one of {', '.join(UNITS[s.sensor])}")
        out.extend([UNIT_FACTORS[(s.sensor, s.unit)]] * 3)
    return np.asarray(out, dtype=np.float64)


# ---------------------------------------------------------------------------------------------- raw -> segments
def _check_times(t: np.ndarray, source: str) -> None:
    if not np.isfinite(t).all():
        i = int(np.flatnonzero(~np.isfinite(t))[0])
        raise ZeroharError(f"{source}: timestamp of sample {i} is {t[i]}; expected finite times in seconds")
    back = np.flatnonzero(np.diff(t) < 0)
    if len(back):
        i = int(back[0]) + 1
        raise ZeroharError(
            f"{source}: timestamps go backwards at sample {i} ({t[i]:.6g} s after {t[i - 1]:.6g} s); "
            "expected non-decreasing times"
        )


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) indices of the runs of True in a boolean vector."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


def merge_duplicate_times(
    t: np.ndarray, x: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Average samples that share a timestamp (phones deliver sensor events in batches); non-decreasing `t`.

    Returns:
        `(t, x, labels)` with strictly increasing times; a merged sample keeps the label of its first member.
    """
    keep = np.concatenate([[True], np.diff(t) > 0]) if len(t) else np.zeros(0, dtype=bool)
    if keep.all():
        return t, x, labels
    starts = np.flatnonzero(keep)
    counts = np.diff(np.concatenate([starts, [len(t)]]))
    return t[keep], np.add.reduceat(x, starts, axis=0) / counts[:, None], labels[keep]


def check_duplicate_times(t: np.ndarray, source: str) -> None:
    """Refuse timestamps where at least half of the samples repeat the previous one's time: merging them would
    halve the recording (a time column rounded too coarsely, or the same rows twice), not repair it."""
    if len(t) < 4:
        return
    repeats = int((np.diff(t) == 0).sum())
    if 2 * repeats >= len(t) - 1:
        raise ZeroharError(
            f"{source}: only {len(t) - repeats} distinct times for {len(t)} samples ({repeats} repeat the previous "
            "row's time); expected one time per sample (is the time column rounded, or are rows repeated?)"
        )


def _raw_segments(
    t: np.ndarray, x: np.ndarray, labels: np.ndarray, max_gap_s: float, max_nan_s: float, count_from: int = 0
) -> tuple[list[_Segment], CanonicalStats]:
    """Merge duplicate times, fill short NaN runs, drop long ones, split at long gaps (all vectorised).

    `count_from`: repairs are counted from this sample on (the samples before it were counted with the previous
    chunk of a stream).
    """
    stats = CanonicalStats()
    keep = np.concatenate([[True], np.diff(t) > 0]) if len(t) else np.zeros(0, dtype=bool)
    stats.duplicates = int((~keep[count_from:]).sum())
    first = int(keep[:count_from].sum())  # index of the first counted sample after merging
    t, x, labels = merge_duplicate_times(t, x, labels)

    brk = np.zeros(len(t), dtype=bool)  # brk[i]: a split between sample i-1 and sample i
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        s, e = _runs(bad)
        edge = (s == 0) | (e == len(t))
        inner_s, inner_e = np.clip(s - 1, 0, None), np.clip(e, None, len(t) - 1)
        long = edge | (t[inner_e] - t[inner_s] > max_nan_s)
        drop = np.zeros(len(t), dtype=bool)
        for a, b in zip(s[long], e[long]):
            drop[a:b] = True
        brk[e[long & (e < len(t))]] = True
        counted = s >= first
        stats.nan_dropped = int(drop[first:].sum())
        stats.nan_interpolated = int(bad[first:].sum() - drop[first:].sum())
        stats.nan_runs_dropped = int((long & counted).sum())
        stats.nan_runs_interpolated = int((~long & counted).sum())
        spans = t[np.clip(e, None, len(t) - 1)] - t[s]
        stats.nan_dropped_s = float(spans[long & counted].sum())
        t, x, labels, brk = t[~drop], x[~drop], labels[~drop], brk[~drop]
        first = int((~drop[:first]).sum())
        if len(t) and (~long).any():
            # Each remaining NaN lies in a short run bounded by fully finite samples: interpolate by time.
            x = x.copy()
            for c in np.flatnonzero(~np.isfinite(x).all(axis=0)):
                ok = np.isfinite(x[:, c])
                x[~ok, c] = np.interp(t[~ok], t[ok], x[ok, c])
    if len(t) < 2:
        return [], stats
    dt = np.diff(t)
    period = float(np.median(dt))
    brk[1:] |= dt > max_gap_s
    bridged = (dt > 2 * period) & ~brk[1:]
    bridged[: max(first - 1, 0)] = False
    stats.gaps_bridged = int(bridged.sum())
    stats.gaps_bridged_s = float(dt[bridged].max()) if bridged.any() else 0.0
    cuts = np.flatnonzero(brk)
    stats.splits = int((cuts >= max(first, 1)).sum())
    bounds = np.concatenate([[0], cuts, [len(t)]])
    segs = [_Segment(t[a:b], x[a:b], labels[a:b]) for a, b in zip(bounds[:-1], bounds[1:]) if b - a >= 2]
    rates = [1.0 / float(np.median(np.diff(g.t))) for g in segs if g.t[-1] > g.t[0]]
    low = [r for r in rates if r < LOW_RATE_HZ]
    stats.low_rate_hz = min(low) if low else 0.0
    return segs, stats


# ---------------------------------------------------------------------------------------------- resampling
def interp_rows(grid: np.ndarray, t: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Linear interpolation of every column of `x (n, C)` sampled at increasing `t` onto `grid` (clamped at the
    ends), in one vectorised pass."""
    i = np.clip(np.searchsorted(t, grid, side="right") - 1, 0, len(t) - 2)
    w = np.clip((grid - t[i]) / (t[i + 1] - t[i]), 0.0, 1.0)[:, None]
    return x[i] * (1.0 - w) + x[i + 1] * w


def nearest_labels(grid: np.ndarray, t: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The label of the sample nearest in time (`t` increasing, at least 2 samples) to each grid point."""
    j = np.clip(np.searchsorted(t, grid), 1, len(t) - 1)
    left_closer = (grid - t[j - 1]) <= (t[j] - grid)
    return labels[np.where(left_closer, j - 1, j)]


def _resample(seg: _Segment, rate: float, origin: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resample one raw segment onto the grid `origin + k / rate` (k integer) within the segment's span."""
    t, x = seg.t, seg.x
    k0 = math.ceil((t[0] - origin) * rate - 1e-6)
    k1 = math.floor((t[-1] - origin) * rate + 1e-6)
    grid = origin + np.arange(k0, k1 + 1) / rate
    labels = nearest_labels(grid, t, seg.labels)
    dt = np.diff(t)
    period = float(np.median(dt))
    regular = bool(np.all(np.abs(dt - period) <= 1e-3 * period))
    # Bursty timestamps (many near-zero intervals) must not blow up the intermediate grid.
    src_rate = min(1.0 / period, 4.0 * (len(t) - 1) / (t[-1] - t[0]))
    phase = (t[0] - origin) * rate
    if regular and abs(src_rate - rate) <= 1e-6 * rate and abs(phase - round(phase)) < 1e-6:
        # Already on the target grid: pass the samples through unchanged.
        return grid, x[: len(grid)].copy(), labels
    if src_rate > rate * (1 + 1e-6):
        if not regular:
            # Filters need a uniform grid: interpolate onto one first, at the source's rate rounded to whole Hz, on
            # the lattice origin + j / that rate. Both depend on the stream alone, not on where a chunk of it starts
            # or on its own median interval, so a recording read in chunks gives the samples of one read whole
            # (anchored at the chunk's first sample and at its median rate, they moved by up to 0.09 g).
            src_rate = float(max(1, round(src_rate)))
            j0 = math.ceil((t[0] - origin) * src_rate - 1e-6)
            j1 = math.floor((t[-1] - origin) * src_rate + 1e-6)
            tu = origin + np.arange(j0, j1 + 1) / src_rate
            xu = interp_rows(tu, t, x)
        else:
            tu, xu = t, x
        sos = sps.butter(4, _ANTI_ALIAS_FRACTION * rate / 2.0, fs=src_rate, output="sos")
        if len(tu) > 1:
            padlen = min(3 * (2 * len(sos) + 1), len(tu) - 1)
            xu = sps.sosfiltfilt(sos, xu, axis=0, padlen=padlen)
        t, x = tu, xu
    return grid, interp_rows(grid, t, x), labels


# ---------------------------------------------------------------------------------------------- to_canonical
def _source_name(rec: Recording) -> str:
    return str(rec.meta.get("path") or rec.name or "recording")


def to_canonical(
    rec: Recording,
    rate: float = CANONICAL_RATE,
    *,
    max_gap_s: float = 5.0,
    max_nan_s: float = 1.0,
    check: bool = True,
) -> list[Recording]:
    """Bring a raw recording to the canonical form.

    Args:
        rec: a raw recording (declared units, a rate or timestamps, possibly NaNs and gaps).
        rate: target sampling rate in Hz.
        max_gap_s: a timestamp gap longer than this splits the recording (use the window length; shorter
            gaps are bridged by interpolation).
        max_nan_s: a NaN run spanning at most this long is interpolated; a longer one is dropped and splits
            the recording (no invented signal over a long loss).
        check: raise a ZeroharError when a declared unit contradicts the data (see :func:`check_units`).

    Returns:
        Regular-rate recordings (`rate` set, `timestamps` None), canonical units and layout, in time order.
        `meta["t0"]` is the first sample's time in the raw time base, `meta["offset"]` its time in seconds
        from the raw recording's first sample, `meta["piece"]` the piece index and `meta["canonical_stats"]`
        the repairs made to the whole raw recording (the same dict on every piece).
    """
    source = _source_name(rec)
    t = rec.times()
    _check_times(t, source)
    check_duplicate_times(t, source)
    x = np.asarray(rec.signals, dtype=np.float64)
    if check:
        check_units(x, rec.layout, source)
    x = x * unit_factors(rec.layout)
    labels = np.asarray(rec.labels, dtype=np.int64)
    segs, stats = _raw_segments(t, x, labels, max_gap_s, max_nan_s)
    if stats.any():
        # Sources with many recordings warn once for all of them (zerohar.data.prepare); here, per recording.
        logger.debug("%s: %s", source, stats.describe())
    layout = rec.layout.canonical()
    out = []
    t_first = float(t[0]) if len(t) else 0.0
    for i, seg in enumerate(segs):
        grid, xs, ls = _resample(seg, rate, origin=float(seg.t[0]))
        meta = dict(rec.meta)
        meta.update(t0=float(grid[0]), offset=float(grid[0] - t_first), piece=i, canonical_stats=vars(stats))
        name = rec.name if len(segs) == 1 else f"{rec.name}#{i}"
        out.append(Recording(xs.astype(np.float32), layout, ls, rec.subject, name, rate=rate, meta=meta))
    return out


# ---------------------------------------------------------------------------------------------- streaming
def canonical_stream(
    chunks: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray | None]],
    layout: SensorLayout,
    rate: float = CANONICAL_RATE,
    *,
    max_gap_s: float = 5.0,
    max_nan_s: float = 1.0,
    source: str = "recording",
    check: bool = True,
) -> Iterator[Recording]:
    """:func:`to_canonical` for a recording read chunk by chunk (constant memory).

    Args:
        chunks: `(times (n,) seconds, signals (n, C) in declared units, labels (n,) int or None)` in time order.
        layout: the declared layout of the signals.
        rate, max_gap_s, max_nan_s, check: as for :func:`to_canonical`.
        source: file name for messages.

    Yields:
        Canonical pieces in time order. Consecutive pieces with the same `meta["segment"]` are one continuous
        stretch on one grid (`meta["t0"]` + k / rate): concatenated, they equal the resampling of the whole
        stretch (up to filter round-off), so windows may run across piece boundaries of one segment.

    When the stream ends, one WARNING says what was repaired (NaN runs, repeated times, bridged gaps, a low
    source rate), if anything was.
    """
    stats = CanonicalStats()
    yield from _canonical_stream(chunks, layout, rate, max_gap_s, max_nan_s, source, check, stats)
    if stats.any():
        logger.warning("%s: %s", source, stats.describe())


def _canonical_stream(chunks, layout, rate, max_gap_s, max_nan_s, source, check, stats: CanonicalStats):
    factors = unit_factors(layout)
    canon = layout.canonical()
    carry: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    origin = next_t = None
    segment = -1
    last_t = -math.inf
    checked = not check
    it = iter(chunks)
    nxt = next(it, None)
    while nxt is not None:
        cur, nxt = nxt, next(it, None)
        final = nxt is None
        t, x, lab = cur
        t = np.asarray(t, dtype=np.float64)
        x = np.asarray(x, dtype=np.float64)
        lab = np.full(len(t), -1, dtype=np.int64) if lab is None else np.asarray(lab, dtype=np.int64)
        if len(t) == 0:
            continue
        if t[0] < last_t:
            raise ZeroharError(
                f"{source}: timestamps go backwards at a chunk boundary ({t[0]:.6g} s after {last_t:.6g} s); "
                "expected non-decreasing times"
            )
        _check_times(t, source)
        last_t = float(t[-1])
        if not checked and (final or np.isfinite(x).all(axis=1).sum() >= 100):
            check_duplicate_times(t, source)
            check_units(x, layout, source)
            checked = True
        x = x * factors
        n_carry = 0
        if carry is not None:
            n_carry = len(carry[0])
            t, x, lab = (np.concatenate([a, b]) for a, b in zip(carry, (t, x, lab)))
        segs, chunk_stats = _raw_segments(t, x, lab, max_gap_s, max_nan_s, count_from=n_carry)
        chunk_stats.recordings = 0
        stats.add(chunk_stats)
        for i, seg in enumerate(segs):
            if next_t is not None and seg.t[-1] < next_t - 0.5 / rate:
                continue  # already emitted from the previous chunk's buffer
            if next_t is None or seg.t[0] > next_t + 0.5 / rate:
                origin, next_t, segment = float(seg.t[0]), float(seg.t[0]), segment + 1
            grid, xs, ls = _resample(seg, rate, origin)
            limit = math.inf if (final or i < len(segs) - 1) else seg.t[-1] - _STREAM_GUARD_S
            keep = (grid >= next_t - 0.5 / rate) & (grid < limit)
            if keep.any():
                g = grid[keep]
                next_t = float(g[-1] + 1.0 / rate)
                yield Recording(
                    xs[keep].astype(np.float32), canon, ls[keep], "", source, rate=rate,
                    meta={"t0": float(g[0]), "segment": segment, "path": source},
                )
        if final:
            break
        # Keep raw samples from a fully finite one at least a guard before the next grid point onwards (with
        # nothing emitted yet, from the last finite sample: what lies before it cannot start a segment).
        finite = np.isfinite(x).all(axis=1)
        j = np.flatnonzero(finite & (t <= next_t - _STREAM_GUARD_S)) if next_t is not None else np.flatnonzero(finite)
        j0 = int(j[-1]) if len(j) else (0 if next_t is not None else len(t))
        carry = (t[j0:], x[j0:], lab[j0:])


# ---------------------------------------------------------------------------------------------- windows
def window_labels(labels: np.ndarray, starts: np.ndarray, length: int, n_classes: int) -> np.ndarray:
    """Label of each window `labels[s : s + length]`: the class covering more than half its samples, else -1."""
    if n_classes == 0:
        return np.full(len(starts), -1, dtype=np.int64)
    onehot = np.zeros((len(labels) + 1, n_classes), dtype=np.int32)
    valid = labels >= 0
    onehot[1:][valid, labels[valid]] = 1
    cum = np.cumsum(onehot, axis=0)
    counts = cum[starts + length] - cum[starts]  # (N, K)
    best = counts.argmax(axis=1)
    return np.where(2 * counts[np.arange(len(starts)), best] > length, best, -1).astype(np.int64)


def make_windows(
    recs: list[Recording],
    class_names: list[str],
    length_s: float = 5.0,
    step_s: float = 2.5,
    rate: float = CANONICAL_RATE,
    per_trial: bool | str = False,
) -> WindowSet:
    """Cut canonical recordings into windows; no window straddles two recordings.

    Args:
        recs: canonical recordings at `rate` with one layout (see :func:`to_canonical`).
        class_names: the class ordering the recordings' labels index.
        length_s: window length in seconds (5, 10 or 30 for the HARNet variants).
        step_s: step between window starts in seconds.
        rate: the recordings' sampling rate.
        per_trial: False: sliding windows with `step_s`. True: one window per recording (a single short
            trial), centre-cropped or edge-padded to the window length. "segment": one window per labelled
            segment (a run of one label), centred on it inside its recording and labelled with it: for
            recordings that chain activities too short to fill half a window (e.g. a 2 s "standing up").

    Returns:
        A WindowSet; a window takes the label covering more than half of its samples, else y = -1
        (kept for self-supervised use; labelled consumers filter `y >= 0`), and records in `sample_classes`
        which classes occur in any of its samples (see :mod:`zerohar.data.windows`). Recordings shorter than one
        window are skipped (and logged) in sliding mode, edge-padded to one window otherwise.
    """
    mode = {False: "sliding", True: "trial", "segment": "segment"}.get(per_trial)
    if mode is None:
        raise ZeroharError(f"per-trial mode {per_trial!r}: expected false, true or 'segment'")
    if not recs:
        raise ZeroharError("no recordings to cut into windows")
    length = int(round(length_s * rate))
    step = max(1, int(round(step_s * rate)))
    if length < 1:
        raise ZeroharError(f"window length {length_s} s is shorter than one sample at {rate:g} Hz")
    layout = recs[0].layout
    n_classes = len(class_names)
    Xs, ys, subj, rec_idx, starts_s, held = [], [], [], [], [], []
    skipped = 0
    for r, rec in enumerate(recs):
        if rec.rate is None or abs(rec.rate - rate) > 1e-6 * rate:
            raise ZeroharError(f"recording {rec.name!r} is at {rec.rate} Hz, expected canonical {rate:g} Hz")
        if rec.layout.sensors != layout.sensors:
            raise ZeroharError(
                f"recording {rec.name!r} has sensors {[s.key for s in rec.layout.sensors]}, "
                f"but the first recording has {[s.key for s in layout.sensors]}; one window set needs one layout"
            )
        lab = np.asarray(rec.labels, dtype=np.int64)
        if len(lab) and lab.max() >= n_classes:
            raise ZeroharError(f"recording {rec.name!r} has label id {lab.max()} but only {n_classes} classes")
        sig = np.asarray(rec.signals, dtype=np.float32)
        n = len(sig)
        if n == 0 or (n < length and mode == "sliding"):
            skipped += 1
            continue
        if mode == "segment":
            bounds = np.concatenate([[0], np.flatnonzero(np.diff(lab) != 0) + 1, [n]])
            a, b = bounds[:-1], bounds[1:]
            a, b = a[lab[a] >= 0], b[lab[a] >= 0]
            y = lab[a]
        shift = 0
        if n < length:
            # A recording shorter than a window becomes one window, edge-padded on both sides.
            shift = (length - n) // 2
            pad = ((shift, length - n - shift), (0, 0))
            sig, lab = np.pad(sig, pad, mode="edge"), np.pad(lab, pad[0], mode="edge")
            st = np.zeros(len(y) if mode == "segment" else 1, dtype=np.int64)
        elif mode == "sliding":
            st = np.arange(0, n - length + 1, step)
        elif mode == "trial":
            st = np.array([(n - length) // 2])  # centre crop
        else:
            # Centred on the segment, inside the recording: a short segment keeps its real surroundings.
            st = np.clip(np.round((a + b - length) / 2).astype(np.int64), 0, n - length)
        if mode != "segment":
            y = window_labels(lab, st, length, n_classes)
        win = np.lib.stride_tricks.sliding_window_view(sig, length, axis=0)[st]  # (N, C, T)
        held.append(window_class_sets(lab, st, length, n_classes))
        st = st - shift
        Xs.append(np.ascontiguousarray(win, dtype=np.float32))
        ys.append(y)
        subj.append(np.full(len(y), rec.subject, dtype=object))
        rec_idx.append(np.full(len(y), r, dtype=np.int64))
        starts_s.append(float(rec.meta.get("offset", 0.0)) + st / rate)
    if skipped:
        logger.info("%d of %d recordings are shorter than one %g s window and give no window", skipped, len(recs),
                    length_s)
    if not Xs:
        if len(recs) == 1:
            where = f" ({recs[0].meta['path']})" if recs[0].meta.get("path") else ""
            raise ZeroharError(
                f"recording {recs[0].name!r}{where} is {recs[0].n_samples / rate:.1f} s long, "
                f"shorter than one {length_s:g} s window"
            )
        longest = max(r.n_samples for r in recs) / rate
        raise ZeroharError(
            f"none of the {len(recs)} recordings is as long as one {length_s:g} s window (longest {longest:.1f} s)"
        )
    return WindowSet(
        X=np.concatenate(Xs),
        y=np.concatenate(ys),
        subject=np.concatenate(subj).astype(str),
        class_names=list(class_names),
        layout=layout,
        rate=rate,
        recording=np.concatenate(rec_idx),
        start=np.concatenate(starts_s).astype(np.float64),
        recording_names=[r.name for r in recs],
        meta={"window_s": length_s, "step_s": step_s, "per_trial": per_trial},
        sample_classes=np.concatenate(held),
    )
