"""classify: streaming windows equal one-shot windows, label handling, layouts, output, bad input."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zerohar.classify import (
    check_output,
    clean_labels,
    match_layout,
    open_recording,
    read_labels_file,
    segments,
    stream_windows,
)
from zerohar.data.layout import UNITS, Channel, SensorLayout
from zerohar.data.transforms import canonical_stream, make_windows, to_canonical
from zerohar.data.windows import Recording
from zerohar.errors import ZeroharError


def _layout(*specs) -> SensorLayout:
    """specs: (sensor, placement, device) triads, canonical units."""
    chans = [Channel(s, a, p, d, UNITS[s][0]) for s, p, d in specs for a in ("x", "y", "z")]
    return SensorLayout.from_channels(chans)


WAIST = _layout(("acc", "waist", "smartphone"), ("gyro", "waist", "smartphone"))


def _signal(t: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f = rng.uniform(0.2, 3.0, size=6)
    x = np.sin(2 * np.pi * f * t[:, None]) + 0.05 * rng.normal(size=(len(t), 6))
    x[:, 2] += 1.0  # gravity on z, so the unit check sees an accelerometer in g
    return x


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
    x = _signal(t)
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
    x = _signal(t)
    pieces = canonical_stream([(t, x, None)], WAIST, 30.0)
    X, _ = next(stream_windows(pieces, 150, 75, keep=[0, 1, 2]))
    assert X.shape[1:] == (3, 150)
    np.testing.assert_allclose(X[0], x[:150, :3].T, atol=1e-5)


# ---------------------------------------------------------------------------------------------- labels
def test_clean_labels_deduplicates_and_says_so_once(caplog):
    with caplog.at_level(logging.WARNING, logger="zerohar.classify"):
        out = clean_labels(["walking", " Walking ", "sitting", "walking", "sitting", "lying"])
    assert out == ["walking", "sitting", "lying"]
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 1
    assert "repeated labels used once: 'walking' (x3), 'sitting' (x2)" in msgs[0]


def test_an_empty_label_list_is_refused():
    with pytest.raises(ZeroharError, match="--labels: the label list is empty; expected at least two activity labels"):
        clean_labels([])


def test_one_label_is_refused():
    with pytest.raises(ZeroharError, match=r"only one label \('walking'\); zero-shot classification needs at least"):
        clean_labels(["walking", "walking"])


def test_an_empty_label_is_refused():
    with pytest.raises(ZeroharError, match="--labels: label 2 is empty"):
        clean_labels(["walking", "  "])


def test_labels_file_text_and_json(tmp_path):
    txt = tmp_path / "labels.txt"
    txt.write_text("# my labels\nwalking\n\nrock climbing  # new one\n")
    assert read_labels_file(txt) == (["walking", "rock climbing"], {})
    js = tmp_path / "labels.json"
    js.write_text('{"labels": {"rock climbing": ["arms pull the body up", "legs push up"], "rowing": ["arms pull"]}}')
    names, descs = read_labels_file(js)
    assert names == ["rock climbing", "rowing"]
    assert descs["rock climbing"] == ["arms pull the body up", "legs push up"]
    with pytest.raises(ZeroharError, match="labels file .*missing.txt does not exist"):
        read_labels_file(tmp_path / "missing.txt")


# ---------------------------------------------------------------------------------------------- layouts
def test_a_layout_the_model_lacks_names_missing_sensors_and_runs_on_the_present_ones(caplog):
    rec_layout = _layout(("acc", "left wrist", "smartwatch"), ("mag", "left wrist", "smartwatch"))
    with caplog.at_level(logging.WARNING, logger="zerohar.classify"):
        keep, used = match_layout(WAIST, rec_layout, "rec.csv")
    assert keep == [0, 1, 2]
    assert [s.key for s in used.sensors] == [("acc", "left wrist", "smartwatch")]
    (msg,) = [r.getMessage() for r in caplog.records]
    assert "rec.csv lacks the model's accelerometer at waist on smartphone; gyroscope at waist on smartphone" in msg
    assert "has sensors the model was not trained on: accelerometer at left wrist on smartwatch" in msg
    assert "ignoring magnetometer at left wrist on smartwatch (a sensor kind the model does not know)" in msg
    assert "classifying with the sensors present (accelerometer at left wrist on smartwatch)" in msg


def test_the_same_layout_gives_no_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="zerohar.classify"):
        keep, used = match_layout(WAIST, WAIST, "rec.csv")
    assert keep == list(range(6)) and used.sensors == WAIST.sensors
    assert not caplog.records


def test_no_usable_sensor_is_an_error():
    with pytest.raises(ZeroharError, match=r"rec.csv: none of its sensors \(magnetometer at wrist on watch\) is of a"):
        match_layout(WAIST, _layout(("mag", "wrist", "watch")), "rec.csv")


# ---------------------------------------------------------------------------------------------- input / output
def test_npy_needs_a_rate_and_a_layout(tmp_path):
    p = tmp_path / "rec.npy"
    np.save(p, np.zeros((100, 6), np.float32))
    with pytest.raises(ZeroharError, match="rec.npy: a .npy / .npz recording needs its sensor layout"):
        open_recording(p, rate=30.0)
    with pytest.raises(ZeroharError, match="rec.npy: has no 'time' array; pass --rate"):
        open_recording(p, placement="waist", device="smartphone")
    rec = open_recording(p, placement="waist", device="smartphone", rate=50.0)
    assert [s.sensor for s in rec.layout.sensors] == ["acc", "gyro"]
    t, x, _ = next(iter(rec.chunks))
    assert x.shape == (100, 6) and t[1] == pytest.approx(0.02)
    assert rec.t_first == 0.0


def test_npz_with_times_and_a_wrong_layout(tmp_path):
    p = tmp_path / "rec.npz"
    np.savez(p, signals=np.zeros((50, 6)), time=np.arange(50) / 25.0)
    rec = open_recording(p, placement="waist", device="phone")
    assert next(iter(rec.chunks))[0][-1] == pytest.approx(49 / 25.0)
    wrist = tmp_path / "wrist.yaml"
    _layout(("acc", "wrist", "watch")).to_yaml(wrist)
    with pytest.raises(ZeroharError, match="rec.npz: has 6 signal columns, but its sensor layout has 3"):
        open_recording(p, layout=wrist)
    np.savez(tmp_path / "bad.npz", X=np.zeros((5, 3)))
    with pytest.raises(ZeroharError, match=r"bad.npz: expected an array 'signals' \(T, C\)"):
        open_recording(tmp_path / "bad.npz", placement="waist", device="phone")


def test_an_existing_output_is_refused_without_force(tmp_path):
    out = tmp_path / "labels.csv"
    out.write_text("x")
    with pytest.raises(ZeroharError, match="labels.csv already exists; pass --force to overwrite it"):
        check_output(out, force=False)
    assert check_output(out, force=True) == out
    with pytest.raises(ZeroharError, match=r"expected a .csv or .parquet file name, found suffix '.txt'"):
        check_output(tmp_path / "labels.txt", force=False)


def test_segments_merge_consecutive_windows():
    starts = [0.0, 2.5, 5.0, 7.5, 10.0, 30.0, 32.5]
    labels = ["walk", "walk", "sit", "sit", "sit", "sit", "walk"]
    assert segments(starts, labels, 2.5, 5.0) == [
        (0.0, 5.0, "walk"), (5.0, 15.0, "sit"), (30.0, 32.5, "sit"), (32.5, 37.5, "walk")
    ]
