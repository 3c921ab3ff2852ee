"""Streaming of long recordings: streamed windows equal one-shot windows, reading inputs, matching layouts."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from helpers import layout_of, signal_of
from hypothesis import given, settings
from hypothesis import strategies as st

from zerohar.data.streaming import match_layout, open_recording, stream_windows
from zerohar.data.transforms import canonical_stream, make_windows, to_canonical
from zerohar.data.windows import Recording
from zerohar.errors import ZeroharError

WAIST = layout_of(("acc", "waist", "smartphone"), ("gyro", "waist", "smartphone"))


def _chunks(t, x, sizes):
    a = 0
    for n in sizes:
        if a >= len(t):
            break
        yield t[a : a + n], x[a : a + n], None
        a += n
    if a < len(t):
        yield t[a:], x[a:], None


@settings(max_examples=15, deadline=None)
@given(
    rate=st.sampled_from([30.0, 50.0, 20.0]),
    seconds=st.floats(12.0, 60.0),
    gap=st.one_of(st.none(), st.floats(6.0, 20.0)),
    chunk=st.integers(37, 900),
)
def test_streamed_windows_equal_one_shot_windows(rate, seconds, gap, chunk):
    t = np.arange(int(seconds * rate)) / rate + 1000.0
    if gap is not None:  # a long gap splits the recording: windows restart after it
        t[len(t) // 2 :] += gap
    x = signal_of(t)
    length, step = 150, 75
    # One shot: the data layer's own resampling and windowing (step = half a window).
    rec = Recording(x, WAIST, np.full(len(t), -1), "s1", "r", timestamps=t)
    pieces = to_canonical(rec, 30.0, max_gap_s=5.0)
    ref_starts: list[np.ndarray] = []
    ref_x: list[np.ndarray] = []
    for p in pieces:
        if p.n_samples >= length:
            ws = make_windows([p], ["a"], 5.0, 2.5)
            ref_x.append(ws.X)
            ref_starts.append(p.meta["t0"] + ws.start - p.meta["offset"])
    # Streamed, in chunks of `chunk` raw rows.
    sizes = [chunk] * (len(t) // chunk + 1)
    streamed = list(stream_windows(canonical_stream(_chunks(t, x, sizes), WAIST, 30.0, max_gap_s=5.0), length, step,
                                   max_windows=7))
    if not ref_x:
        assert streamed == []
        return
    X = np.concatenate([b[0] for b in streamed])
    S = np.concatenate([b[1] for b in streamed])
    assert all(len(b[0]) <= 7 for b in streamed)
    np.testing.assert_allclose(S, np.concatenate(ref_starts), atol=1e-6)
    np.testing.assert_allclose(X, np.concatenate(ref_x), atol=2e-3)


def test_stream_windows_keeps_only_the_selected_channels():
    t = np.arange(30 * 20) / 30.0
    x = signal_of(t)
    pieces = canonical_stream([(t, x, None)], WAIST, 30.0)
    X, _ = next(stream_windows(pieces, 150, 75, keep=[0, 1, 2]))
    assert X.shape[1:] == (3, 150)
    np.testing.assert_allclose(X[0], x[:150, :3].T, atol=1e-5)


def test_a_layout_the_model_lacks_names_missing_sensors_and_runs_on_the_present_ones(caplog):
    rec_layout = layout_of(("acc", "left wrist", "smartwatch"), ("mag", "left wrist", "smartwatch"))
    with caplog.at_level(logging.WARNING, logger="zerohar.inference.classify"):
        keep, used = match_layout(WAIST, rec_layout, "rec.csv")
    assert keep == [0, 1, 2]
    assert [s.key for s in used.sensors] == [("acc", "left wrist", "smartwatch")]
    (msg,) = [r.getMessage() for r in caplog.records]
    assert "rec.csv lacks the model's accelerometer at waist on smartphone; gyroscope at waist on smartphone" in msg
    assert "has sensors the model was not trained on: accelerometer at left wrist on smartwatch" in msg
    assert "ignoring magnetometer at left wrist on smartwatch (a sensor kind the model does not know)" in msg
    assert "classifying with the sensors present (accelerometer at left wrist on smartwatch)" in msg


def test_the_same_layout_gives_no_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="zerohar.inference.classify"):
        keep, used = match_layout(WAIST, WAIST, "rec.csv")
    assert keep == list(range(6)) and used.sensors == WAIST.sensors
    assert not caplog.records


def test_no_usable_sensor_is_an_error():
    with pytest.raises(ZeroharError, match=r"rec.csv: none of its sensors \(magnetometer at wrist on watch\) is of a"):
        match_layout(WAIST, layout_of(("mag", "wrist", "watch")), "rec.csv")


def test_npy_needs_a_rate_and_alayout_of(tmp_path):
    p = tmp_path / "rec.npy"
    np.save(p, np.zeros((100, 6), np.float32))
    with pytest.raises(ZeroharError, match=r"rec.npy: give its sensor layout \(--layout FILE.yaml\)"):
        open_recording(p, rate=30.0)
    with pytest.raises(ZeroharError, match=r"rec.npy: has no 'time' array; give its sampling rate in Hz \(--rate\)"):
        open_recording(p, placement="waist", device="smartphone")
    rec = open_recording(p, placement="waist", device="smartphone", rate=50.0)
    assert [s.sensor for s in rec.layout.sensors] == ["acc", "gyro"]
    t, x, _ = next(iter(rec.chunks))
    assert x.shape == (100, 6) and t[1] == pytest.approx(0.02)
    assert rec.t_first == 0.0


def test_csv_with_a_time_column_streams_in_chunks(tmp_path):
    p = tmp_path / "rec.csv"
    t = 5.0 + np.arange(500) / 50.0
    x = signal_of(t)
    rows = "\n".join(",".join(f"{v:.6f}" for v in (ti, *xi)) for ti, xi in zip(t, x))
    p.write_text("time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z\n" + rows + "\n")
    rec = open_recording(p, placement="waist", device="smartphone", chunk_rows=128)
    chunks = list(rec.chunks)
    assert [len(c[0]) for c in chunks] == [128, 128, 128, 116]
    assert rec.t_first == pytest.approx(5.0)
    np.testing.assert_allclose(np.concatenate([c[1] for c in chunks]), x, atol=1e-6)
    assert rec.layout.sensors == WAIST.sensors


def test_a_missing_input_is_an_error(tmp_path):
    with pytest.raises(ZeroharError, match="input file .*nothing.csv does not exist"):
        open_recording(tmp_path / "nothing.csv", placement="waist", device="phone")
