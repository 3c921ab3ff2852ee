"""The canonical form: resampled by time to 30 Hz, units g / rad/s / uT, gaps and NaNs handled, then windows.

Every source hands :func:`to_canonical` a raw :class:`~zerohar.data.windows.Recording` (any rate or jittered
timestamps, declared units); it returns regular-rate pieces (a long gap or a long NaN run splits a recording),
which :func:`make_windows` cuts into windows with the label rule of BENCHMARK.md. :func:`canonical_stream`
does the same as :func:`to_canonical` chunk by chunk, for recordings too long to hold in memory.

Resampling: duplicate timestamps are averaged; an irregular recording is first interpolated linearly onto a
uniform grid at its median rate; when that rate is above the target, a zero-phase Butterworth low-pass at
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

from zerohar.data.layout import UNITS, SensorLayout
from zerohar.data.windows import Recording, WindowSet
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
#: Median vector norm ranges (in the declared unit) that mean the data is in another unit. Only clear-cut
#: cases: gravity (~9.8) in a channel declared g, ~1 in one declared m/s^2; a geomagnetic field (25-65 uT)
#: declared gauss or mT, or one below 2 declared uT; rotation faster than any wearable gyroscope's range.
_UNIT_CONTRADICTIONS = {
    ("acc", "g"): ((6.0, 14.0), "m/s^2 (gravity is 9.81 m/s^2)"),
    ("acc", "m/s^2"): ((0.6, 1.5), "g (gravity is 1 g)"),
    ("mag", "uT"): ((0.0, 2.0), "gauss or mT (the Earth's field is 25-65 uT)"),
    ("mag", "gauss"): ((5.0, math.inf), "uT (the Earth's field is 0.25-0.65 gauss)"),
    ("mag", "mT"): ((1.0, math.inf), "uT (the Earth's field is 0.025-0.065 mT)"),
    ("gyro", "rad/s"): ((20.0, math.inf), "deg/s (a median rotation above 20 rad/s is implausible)"),
}
_ANTI_ALIAS_FRACTION = 0.8  # low-pass cut-off as a fraction of the target Nyquist frequency
_STREAM_GUARD_S = 2.0  # raw signal kept on each side of a chunk boundary so filter edges never reach the output


@dataclass
class CanonicalStats:
    """What :func:`to_canonical` did to one recording (counted so a user can see what was repaired)."""

    duplicates: int = 0  # samples merged into another with the same timestamp
    nan_interpolated: int = 0  # samples in short NaN runs, filled by interpolation
    nan_dropped: int = 0  # samples in long NaN runs or at the edges, removed
    gaps_bridged: int = 0  # timestamp gaps longer than 2 sampling periods but at most max_gap_s, interpolated
    splits: int = 0  # places where a long gap or a long NaN run split the recording

    def add(self, other: CanonicalStats) -> None:
        for k, v in vars(other).items():
            setattr(self, k, getattr(self, k) + v)

    def any(self) -> bool:
        return any(vars(self).values())

    def describe(self) -> str:
        return (
            f"{self.duplicates} duplicate timestamps merged, {self.nan_interpolated} NaN samples interpolated, "
            f"{self.nan_dropped} dropped, {self.gaps_bridged} gaps bridged, {self.splits} splits"
        )


@dataclass
class _Segment:
    """A stretch of raw samples with finite values and no long gap: times (n,), signals (n, C), labels (n,)."""

    t: np.ndarray
    x: np.ndarray
    labels: np.ndarray
    stats: CanonicalStats = field(default_factory=CanonicalStats)


# ---------------------------------------------------------------------------------------------- units
def check_units(signals: np.ndarray, layout: SensorLayout, source: str) -> None:
    """Raise a ZeroharError when a sensor's declared unit contradicts its data.

    Args:
        signals: `(T, C)` raw values in the layout's channel order and declared units.
        layout: the declared layout.
        source: file or recording name for the message.
    """
    finite = np.isfinite(signals).all(axis=1)
    if finite.sum() < 10:
        return
    for i, s in enumerate(layout.sensors):
        rule = _UNIT_CONTRADICTIONS.get((s.sensor, s.unit))
        if rule is None:
            continue
        (lo, hi), other = rule
        norm = float(np.median(np.linalg.norm(signals[finite, 3 * i : 3 * i + 3], axis=1)))
        if lo <= norm < hi:
            raise ZeroharError(
                f"{source}: the {s.sensor} at {s.placement} on {s.device} is declared in {s.unit}, but its median "
                f"vector norm is {norm:.3g}, which looks like {other}; declare the right unit in the sensor layout"
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


def _raw_segments(
    t: np.ndarray, x: np.ndarray, labels: np.ndarray, max_gap_s: float, max_nan_s: float
) -> tuple[list[_Segment], CanonicalStats]:
    """Merge duplicate times, fill short NaN runs, drop long ones, split at long gaps (all vectorised)."""
    stats = CanonicalStats()
    n = len(t)
    t, x, labels = merge_duplicate_times(t, x, labels)
    stats.duplicates = n - len(t)

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
        stats.nan_dropped = int(drop.sum())
        stats.nan_interpolated = int(bad.sum() - drop.sum())
        t, x, labels, brk = t[~drop], x[~drop], labels[~drop], brk[~drop]
        if len(t) and stats.nan_interpolated:
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
    stats.gaps_bridged = int(((dt > 2 * period) & ~brk[1:]).sum())
    cuts = np.flatnonzero(brk)
    stats.splits = int(len(cuts))
    bounds = np.concatenate([[0], cuts, [len(t)]])
    segs = [_Segment(t[a:b], x[a:b], labels[a:b]) for a, b in zip(bounds[:-1], bounds[1:]) if b - a >= 2]
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
            # Filters need a uniform grid: interpolate onto one at the recording's own median rate first.
            n = int(math.floor((t[-1] - t[0]) * src_rate + 1e-6)) + 1
            tu = t[0] + np.arange(n) / src_rate
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
    x = np.asarray(rec.signals, dtype=np.float64)
    if check:
        check_units(x, rec.layout, source)
    x = x * unit_factors(rec.layout)
    labels = np.asarray(rec.labels, dtype=np.int64)
    segs, stats = _raw_segments(t, x, labels, max_gap_s, max_nan_s)
    if stats.any():
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
    """
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
        if not checked and np.isfinite(x).all(axis=1).sum() >= 100:
            check_units(x, layout, source)
            checked = True
        x = x * factors
        if carry is not None:
            t, x, lab = (np.concatenate([a, b]) for a, b in zip(carry, (t, x, lab)))
        segs, _ = _raw_segments(t, x, lab, max_gap_s, max_nan_s)
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
        (kept for self-supervised use; labelled consumers filter `y >= 0`). Recordings shorter than one
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
    Xs, ys, subj, rec_idx, starts_s = [], [], [], [], []
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
            raise ZeroharError(
                f"recording {recs[0].name!r} is {recs[0].n_samples / rate:.1f} s long, "
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
    )
