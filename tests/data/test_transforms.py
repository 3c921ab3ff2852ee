"""Canonical form (resampling, units, gaps, NaNs) and windowing (label rule, per-trial modes)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from zerohar.data.layout import Sensor, SensorLayout
from zerohar.data.transforms import (
    STANDARD_GRAVITY,
    canonical_stream,
    make_windows,
    to_canonical,
    window_labels,
)
from zerohar.data.windows import Recording
from zerohar.errors import ZeroharError

ACC_G = SensorLayout((Sensor("acc", "wrist", "watch", "g"),))


def _layout(*units: tuple[str, str]) -> SensorLayout:
    return SensorLayout(tuple(Sensor(kind, "wrist", "watch", unit) for kind, unit in units))


def _peak_hz(x: np.ndarray, rate: float) -> float:
    """Frequency of the largest spectral peak (zero-padded FFT, Hann window)."""
    n = 1 << 16
    spec = np.abs(np.fft.rfft((x - x.mean()) * np.hanning(len(x)), n))
    return float(np.fft.rfftfreq(n, 1 / rate)[np.argmax(spec)])


def _sine_rec(t: np.ndarray, hz: float, layout: SensorLayout = ACC_G) -> Recording:
    x = np.stack([np.sin(2 * np.pi * hz * t), np.cos(2 * np.pi * hz * t), np.ones_like(t)], axis=1)
    return Recording(x, layout, np.zeros(len(t), dtype=np.int64), "s1", "sine", timestamps=t)


# ---------------------------------------------------------------------------------------------- resampling
@settings(max_examples=30, deadline=None)
@given(
    hz=st.floats(0.3, 10.0),
    src_rate=st.floats(20.0, 200.0),
    jitter=st.floats(0.0, 0.4),
    seed=st.integers(0, 2**16),
)
def test_resampling_a_sine_keeps_its_frequency(hz, src_rate, jitter, seed):
    assume(hz < 0.4 * src_rate)  # below the source's own Nyquist frequency
    rng = np.random.default_rng(seed)
    dt = (1 + jitter * rng.uniform(-1, 1, int(20 * src_rate))) / src_rate  # jittered sampling intervals
    t = 3.0 + np.cumsum(dt)
    (piece,) = to_canonical(_sine_rec(t, hz), 30.0)
    assert piece.rate == 30.0 and piece.timestamps is None
    assert _peak_hz(piece.signals[:, 0], 30.0) == pytest.approx(hz, abs=0.03)
    # Inside the anti-alias pass band, and slow enough for linear interpolation, the amplitude survives.
    if hz <= min(6.0, src_rate / 8):
        core = piece.signals[30:-30, 0]
        assert 0.85 < np.sqrt(2 * np.mean(core**2)) < 1.05


def test_downsampling_removes_what_would_alias():
    t = np.arange(0, 20, 1 / 100.0)
    (piece,) = to_canonical(_sine_rec(t, 20.0), 30.0)  # 20 Hz would fold onto 10 Hz at 30 Hz
    assert np.sqrt(np.mean(piece.signals[30:-30, 0] ** 2)) < 0.05
    assert np.median(piece.signals[:, 2]) == pytest.approx(1.0, abs=1e-3)  # gravity (DC) kept


def test_a_recording_already_at_30_hz_passes_unchanged():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.3, (300, 3))
    rec = Recording(x, ACC_G, np.arange(300) % 3, "s1", "r", rate=30.0)
    (piece,) = to_canonical(rec)
    np.testing.assert_allclose(piece.signals, x, atol=1e-6)
    np.testing.assert_array_equal(piece.labels, rec.labels)


def test_labels_follow_the_nearest_sample_in_time():
    t = np.arange(0, 10, 1 / 50.0)
    labels = (t >= 4.0).astype(np.int64)
    rec = Recording(np.tile([0.0, 0.0, 1.0], (len(t), 1)), ACC_G, labels, "s1", "r", timestamps=t)
    (piece,) = to_canonical(rec)
    grid = np.arange(piece.n_samples) / 30.0
    np.testing.assert_array_equal(piece.labels, (grid >= 4.0 - 1e-9).astype(np.int64))


# ---------------------------------------------------------------------------------------------- units
@pytest.mark.parametrize(
    "kind, unit, raw, canonical",
    [
        ("acc", "m/s^2", [0.0, 0.0, STANDARD_GRAVITY], [0.0, 0.0, 1.0]),
        ("gyro", "deg/s", [180.0, 90.0, 0.0], [np.pi, np.pi / 2, 0.0]),
        ("mag", "mT", [0.03, 0.0, 0.04], [30.0, 0.0, 40.0]),
        ("mag", "gauss", [0.3, 0.0, 0.4], [30.0, 0.0, 40.0]),
    ],
)
def test_units_are_converted_to_canonical(kind, unit, raw, canonical):
    lay = _layout((kind, unit))
    rec = Recording(np.tile(raw, (100, 1)), lay, np.zeros(100, dtype=np.int64), "s", "r", rate=30.0)
    (piece,) = to_canonical(rec)
    np.testing.assert_allclose(piece.signals[0], canonical, rtol=1e-6)
    assert piece.layout.sensors[0].unit == {"acc": "g", "gyro": "rad/s", "mag": "uT"}[kind]


@pytest.mark.parametrize(
    "unit, norm, expected",
    [("g", 9.81, "(declared in g) reads 9.81 g at rest, which looks like m/s^2"),
     ("m/s^2", 1.0, "(declared in m/s^2) reads 1 m/s^2 at rest, which looks like g")],
)
def test_a_declared_unit_that_contradicts_the_data_is_an_error(unit, norm, expected):
    lay = _layout(("acc", unit))
    rec = Recording(np.tile([0, 0, norm], (100, 1)), lay, np.zeros(100, dtype=np.int64), "s", "r", rate=50.0,
                    meta={"path": "walk.csv"})
    with pytest.raises(ZeroharError, match=re.escape("walk.csv: the accelerometer at wrist on watch " + expected)):
        to_canonical(rec)


# ---------------------------------------------------------------------------------------------- gaps, NaNs
def _flat(t: np.ndarray, x: np.ndarray | None = None) -> Recording:
    x = np.tile([0.0, 0.0, 1.0], (len(t), 1)) if x is None else x
    return Recording(x, ACC_G, np.zeros(len(t), dtype=np.int64), "s1", "r", timestamps=t)


def test_a_gap_longer_than_max_gap_splits_and_a_shorter_one_is_bridged():
    t = np.arange(0, 30, 0.02)
    t_long = np.where(t >= 15, t + 6.0, t)
    pieces = to_canonical(_flat(t_long), max_gap_s=5.0)
    assert len(pieces) == 2
    assert pieces[1].meta["offset"] == pytest.approx(21.0, abs=1 / 30)
    assert pieces[0].meta["canonical_stats"]["splits"] == 1
    t_short = np.where(t >= 15, t + 3.0, t)
    (piece,) = to_canonical(_flat(t_short), max_gap_s=5.0)
    assert piece.meta["canonical_stats"]["gaps_bridged"] == 1
    assert piece.n_samples == pytest.approx(33 * 30, abs=2)


def test_short_nan_runs_are_interpolated_and_long_ones_dropped():
    t = np.arange(0, 30, 0.02)
    x = np.stack([t / 30, np.zeros_like(t), np.ones_like(t)], axis=1)
    x[100:110, 0] = np.nan  # 0.2 s in one channel: interpolated
    x[600:800] = np.nan  # 4 s everywhere: dropped, splits
    x[-5:, 1] = np.nan  # trailing: dropped
    pieces = to_canonical(_flat(t, x), max_nan_s=1.0)
    assert len(pieces) == 2
    stats = pieces[0].meta["canonical_stats"]
    assert (stats["nan_interpolated"], stats["nan_dropped"]) == (10, 205)
    assert all(np.isfinite(p.signals).all() for p in pieces)
    # The interpolated stretch continues the ramp (x = t / 30).
    grid = pieces[0].meta["t0"] + np.arange(pieces[0].n_samples) / 30
    np.testing.assert_allclose(pieces[0].signals[:, 0], grid / 30, atol=1e-3)


def test_duplicate_timestamps_are_averaged():
    t = np.arange(0, 10, 0.01)
    t = np.sort(np.concatenate([t, t[::4]]))  # every fourth sample time given twice
    x = np.zeros((len(t), 3))
    x[:, 2] = 1.0
    x[np.flatnonzero(np.diff(t) == 0), 2] = 0.9  # the first of a pair and the second average to 1
    x[np.flatnonzero(np.diff(t) == 0) + 1, 2] = 1.1
    (piece,) = to_canonical(_flat(t, x))
    assert piece.meta["canonical_stats"]["duplicates"] == int((np.diff(t) == 0).sum()) > 0
    np.testing.assert_allclose(piece.signals[:, 2], 1.0, atol=1e-6)


def test_timestamps_that_mostly_repeat_are_refused():
    t = np.repeat(np.arange(0, 10, 0.01), 2)
    with pytest.raises(ZeroharError, match=r"r: only 1000 distinct times for 2000 samples"):
        to_canonical(_flat(t, np.ones((len(t), 3))))


def test_timestamps_going_backwards_are_an_error():
    t = np.arange(0, 10, 0.02)
    t[200] = t[198]
    with pytest.raises(ZeroharError, match=r"r: timestamps go backwards at sample 200 \(3\.96 s after 3\.98 s\)"):
        to_canonical(_flat(t))


@pytest.mark.parametrize("chunk", [777, 3000])
def test_streaming_equals_whole_recording(chunk):
    rng = np.random.default_rng(1)
    t = np.arange(0, 120, 1 / 50.0)
    t = np.where(t > 60, t + 8.0, t)  # one long gap: two segments
    x = np.stack([np.sin(2 * np.pi * 1.3 * t), rng.normal(0, 0.1, len(t)), np.ones_like(t)], axis=1)
    whole = to_canonical(_flat(t, x), max_gap_s=5.0)
    chunks = [(t[i : i + chunk], x[i : i + chunk], None) for i in range(0, len(t), chunk)]
    pieces = list(canonical_stream(chunks, ACC_G, max_gap_s=5.0))
    assert sorted({p.meta["segment"] for p in pieces}) == [0, 1]
    for seg, ref in enumerate(whole):
        got = np.concatenate([p.signals for p in pieces if p.meta["segment"] == seg])
        assert got.shape == ref.signals.shape
        np.testing.assert_allclose(got, ref.signals, atol=1e-4)
        first = next(p for p in pieces if p.meta["segment"] == seg)
        assert first.meta["t0"] == pytest.approx(ref.meta["t0"])


@pytest.mark.parametrize("chunk", [333, 1000])
def test_streaming_jittered_timestamps_equals_whole_recording(chunk):
    """A device's timestamps are not exactly regular (they take the path that interpolates onto a uniform grid
    before the anti-aliasing filter): in chunks, the samples are those of the recording read whole."""
    rng = np.random.default_rng(2)
    t = 1000.0 + np.cumsum(0.01 * (1 + rng.uniform(-0.03, 0.03, 6000)))  # about 100 Hz, 1 minute
    x = np.stack([np.sin(2 * np.pi * 1.3 * t), rng.normal(0, 0.3, len(t)), np.ones_like(t)], axis=1)
    (whole,) = to_canonical(_flat(t, x), max_gap_s=5.0)
    chunks = [(t[i : i + chunk], x[i : i + chunk], None) for i in range(0, len(t), chunk)]
    got = np.concatenate([p.signals for p in canonical_stream(chunks, ACC_G, max_gap_s=5.0)])
    assert got.shape == whole.signals.shape
    np.testing.assert_allclose(got, whole.signals, rtol=0, atol=1e-6)


def test_streaming_checks_time_order_across_chunks():
    t = np.arange(0, 10, 0.02)
    chunks = [(t[:300], np.ones((300, 3)) * [0, 0, 1], None), (t[250:], np.ones((250, 3)) * [0, 0, 1], None)]
    with pytest.raises(ZeroharError, match="f.csv: timestamps go backwards at a chunk boundary"):
        list(canonical_stream(chunks, ACC_G, source="f.csv"))


# ---------------------------------------------------------------------------------------------- windows
def _coded_recordings(lengths, subjects, label_runs, seed):
    """Recordings whose channels encode (recording index, sample index, label) so windows can be traced."""
    rng = np.random.default_rng(seed)
    recs = []
    for r, (n, subj) in enumerate(zip(lengths, subjects)):
        lab = np.repeat(rng.integers(-1, 3, label_runs), rng.integers(1, 40, label_runs))
        lab = np.resize(lab, n) if n else lab[:0]
        x = np.stack([np.full(n, r), np.arange(n), lab], axis=1).astype(np.float64)
        recs.append(Recording(x, ACC_G, lab.astype(np.int64), subj, f"r{r}", rate=30.0))
    return recs


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lengths=st.lists(st.integers(0, 400), min_size=1, max_size=6),
    step=st.integers(1, 45),
    seed=st.integers(0, 2**16),
)
def test_windows_never_straddle_recordings_or_subjects_and_labels_cover_half(lengths, step, seed):
    assume(max(lengths) >= 30)
    subjects = [f"s{i % 3}" for i in range(len(lengths))]
    recs = _coded_recordings(lengths, subjects, 20, seed)
    ws = make_windows(recs, ["a", "b", "c"], length_s=1.0, step_s=step / 30.0, rate=30.0)
    L = 30
    assert ws.X.shape[1:] == (3, L)
    rec_id, idx, lab = ws.X[:, 0], ws.X[:, 1], ws.X[:, 2].astype(np.int64)
    assert (rec_id == rec_id[:, :1]).all()  # one recording per window
    np.testing.assert_array_equal(rec_id[:, 0].astype(np.int64), ws.recording)
    assert (np.diff(idx, axis=1) == 1).all()  # consecutive samples
    np.testing.assert_array_equal(ws.subject, [subjects[r] for r in ws.recording])
    np.testing.assert_allclose(ws.start, idx[:, 0] / 30.0)
    # Expected count: every full window at the step, in every recording long enough.
    assert len(ws) == sum((n - L) // step + 1 for n in lengths if n >= L)
    for y, row in zip(ws.y, lab):
        counts = np.bincount(row[row >= 0], minlength=3)
        if y >= 0:
            assert counts[y] * 2 > L
        else:
            assert (counts * 2 <= L).all()


def test_window_labels_rule_at_the_boundary():
    lab = np.array([0] * 15 + [1] * 15 + [1])
    np.testing.assert_array_equal(window_labels(lab, np.array([0, 1]), 30, 2), [-1, 1])


def test_per_trial_centre_crops_and_edge_pads():
    long = Recording(np.arange(200)[:, None] * np.ones((1, 3)), ACC_G, np.zeros(200, dtype=np.int64), "s", "long",
                     rate=30.0)
    short = Recording(np.arange(40)[:, None] * np.ones((1, 3)), ACC_G, np.ones(40, dtype=np.int64), "s", "short",
                      rate=30.0)
    ws = make_windows([long, short], ["a", "b"], length_s=5.0, rate=30.0, per_trial=True)
    assert ws.X.shape == (2, 3, 150)
    np.testing.assert_array_equal(ws.X[0, 0], np.arange(25, 175))  # (200 - 150) // 2 = 25 cut from each end
    np.testing.assert_array_equal(ws.X[1, 0], np.r_[np.zeros(55), np.arange(40), np.full(55, 39)])
    np.testing.assert_array_equal(ws.y, [0, 1])


def test_per_segment_gives_one_centred_window_per_labelled_segment():
    lab = np.array([-1] * 50 + [0] * 200 + [1] * 40 + [2] * 100 + [-1] * 10)
    rec = Recording(np.arange(len(lab))[:, None] * np.ones((1, 3)), ACC_G, lab, "s", "r", rate=30.0)
    ws = make_windows([rec], ["a", "b", "c"], length_s=5.0, rate=30.0, per_trial="segment")
    np.testing.assert_array_equal(ws.y, [0, 1, 2])
    centres = ws.X[:, 0, 75]
    np.testing.assert_allclose(centres, [150, 270, 325], atol=1)  # the 100-sample segment hits the end: shifted
    assert ws.X[:, 0].max() <= len(lab) - 1


def test_a_single_recording_shorter_than_a_window_is_an_error():
    rec = Recording(np.zeros((96, 3)) + [0, 0, 1], ACC_G, np.zeros(96, dtype=np.int64), "s", "tiny.csv", rate=30.0)
    with pytest.raises(ZeroharError, match=r"recording 'tiny.csv' is 3.2 s long, shorter than one 5 s window"):
        make_windows([rec], ["a"], length_s=5.0)
    with pytest.raises(ZeroharError, match=r"none of the 2 recordings is as long as one 5 s window \(longest 3.2 s\)"):
        make_windows([rec, rec], ["a"], length_s=5.0)


def test_windows_need_one_layout_and_the_canonical_rate():
    a = Recording(np.zeros((200, 3)), ACC_G, np.zeros(200, dtype=np.int64), "s", "a", rate=30.0)
    b = Recording(np.zeros((200, 3)), _layout(("gyro", "rad/s")), np.zeros(200, dtype=np.int64), "s", "b", rate=30.0)
    with pytest.raises(ZeroharError, match="recording 'b' has sensors .* one window set needs one layout"):
        make_windows([a, b], ["a"])
    c = Recording(np.zeros((200, 3)), ACC_G, np.zeros(200, dtype=np.int64), "s", "c", rate=50.0)
    with pytest.raises(ZeroharError, match="recording 'c' is at 50.0 Hz, expected canonical 30 Hz"):
        make_windows([c], ["a"])
