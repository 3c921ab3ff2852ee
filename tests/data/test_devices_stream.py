"""Device files streamed in two passes: the same calibration, non-wear and samples as actipy on the whole file,
and results that do not depend on the chunk size."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from helpers import TINY_MODEL, fake_device_parser, untrained_run

from zerohar.data import devices
from zerohar.data.synthetic import write_geneactiv
from zerohar.inference.classify import classify_recording

pytest.importorskip("actipy")

START = np.datetime64("2026-01-05T23:00:00", "ns").astype(np.int64)


def _miscalibrated(rate=10.0, hours=6.0, nonwear_h=(2.0, 4.2), seed=0):
    """A wrist recording whose accelerometer is off by a few percent and drifts with temperature: a new posture
    every 5 min (one in three moving), and a 2.2 h stationary stretch (non-wear by actipy's 90 min rule)."""
    rng = np.random.default_rng(seed)
    n = int(hours * 3600 * rate)
    t = np.arange(n) / rate
    dirs = rng.normal(size=(200, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    seg = (t // 300).astype(int)
    x = dirs[seg % 200] + rng.normal(0, 0.003, (n, 3))
    moving = seg % 3 == 0
    x[moving] += rng.normal(0, 0.2, (int(moving.sum()), 3))
    still = (t >= nonwear_h[0] * 3600) & (t < nonwear_h[1] * 3600)
    x[still] = dirs[seg[still][0] % 200] + rng.normal(0, 0.003, (int(still.sum()), 3))
    temp = 25 + 5 * np.sin(t / 3600)
    x = x * [1.03, 0.98, 1.01] + [0.02, -0.03, 0.01] + (temp[:, None] - 25) * 0.002
    time_ns = START + np.round(t * 1e9).astype(np.int64)
    time_ns[5000] = time_ns[4998]  # a timestamp that goes back: actipy's quality control drops the sample
    return time_ns, x.astype(np.float32), temp.astype(np.float32), rate


def _actipy_whole(time_ns, x, temp, rate):
    """What actipy.read_device does with the parsed frame (no low-pass, no resampling): the reference."""
    import pandas as pd
    from actipy import processing

    frame = pd.DataFrame({"x": x[:, 0], "y": x[:, 1], "z": x[:, 2], "temperature": temp},
                         index=pd.DatetimeIndex(time_ns.astype("datetime64[ns]"), name="time"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame, info = processing.quality_control(frame, rate)
        frame, cal = processing.calibrate_gravity(frame, return_coeffs=True)
        frame, nw = processing.flag_nonwear(frame)
    return frame, {**info, **cal, **nw}


@pytest.fixture
def miscalibrated(monkeypatch, tmp_path):
    rec = _miscalibrated()
    time_ns, x, temp, rate = rec
    fake_device_parser(monkeypatch, time_ns, {"x": x[:, 0], "y": x[:, 1], "z": x[:, 2], "temperature": temp}, rate)
    p = tmp_path / "wrist.cwa"
    p.write_bytes(b"x")
    return p, rec


def test_calibration_and_nonwear_from_window_sums_equal_actipy_on_the_whole_file(miscalibrated):
    p, rec = miscalibrated
    got = devices.read_device(p)
    frame, ref = _actipy_whole(*rec)
    xyz = frame[["x", "y", "z"]].to_numpy(np.float32)
    off = ~np.isfinite(xyz).all(axis=1)
    assert ref["CalibOK"] == 1 and ref["NumNonwearEpisodes"] == 1 and 70_000 < off.sum() < 90_000
    np.testing.assert_array_equal(got.time, frame.index.asi8 / 1e9)  # the sample that went back is dropped
    np.testing.assert_array_equal(got.nonwear, off)
    np.testing.assert_allclose(got.signals[~off], xyz[~off], rtol=0, atol=1e-6)  # the same float32 arithmetic
    a = got.info["actipy"]
    for k in ("CalibNumSamples", "CalibNumIters", "NumNonwearEpisodes", "NumTicks", "StartTime", "EndTime"):
        assert a[k] == ref[k], k
    for k in ("CalibErrorBefore(mg)", "CalibErrorAfter(mg)", "CalibxSlope", "CalibyIntercept", "CalibzSlopeT",
              "NonwearTime(days)"):
        assert a[k] == pytest.approx(float(ref[k]), rel=1e-6, abs=1e-9), k
    assert got.info["calibration"]["applied"] and got.info["read_errors"] == 1
    iv = got.nonwear_intervals()
    assert iv.shape == (1, 2) and iv[0, 0] == pytest.approx(frame.index[off][0].value / 1e9)


def test_windows_of_one_sample_count_as_actipy_counts_them(monkeypatch, tmp_path):
    """Calibration and non-wear both sum 10 s windows: each sample enters the sums once (added twice, a window of
    one sample had a standard deviation of 0, not NaN, and calibrated as stationary)."""
    time_ns, x, temp, rate = _miscalibrated(hours=2.0, nonwear_h=(0.5, 0.6))
    k = 60  # still single samples, 30 s apart after the end, each alone in its 10 s window
    time_ns = np.concatenate([time_ns, time_ns[-1] + np.arange(1, k + 1) * 30 * 10**9])
    x = np.concatenate([x, np.tile(np.float32([[0.03, 0.96, 0.01]]), (k, 1))])
    temp = np.concatenate([temp, np.full(k, 25.0, np.float32)])
    fake_device_parser(monkeypatch, time_ns, {"x": x[:, 0], "y": x[:, 1], "z": x[:, 2], "temperature": temp}, rate)
    p = tmp_path / "wrist.cwa"
    p.write_bytes(b"x")
    got = devices.read_device(p).info["actipy"]
    _, ref = _actipy_whole(time_ns, x, temp, rate)
    assert got["CalibNumSamples"] == ref["CalibNumSamples"]
    assert got["CalibErrorAfter(mg)"] == pytest.approx(float(ref["CalibErrorAfter(mg)"]), rel=1e-6)


def test_chunk_size_does_not_change_the_samples(miscalibrated):
    p, _ = miscalibrated
    dev = devices.open_device(p)
    whole = [np.concatenate(c) for c in zip(*dev.chunks(10**9))]
    small = list(dev.chunks(5000))
    assert {len(c[0]) for c in small[:-1]} == {5000}
    for a, b in zip(whole, (np.concatenate(c) for c in zip(*small))):
        np.testing.assert_array_equal(a, b)
    dev.close()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return untrained_run(tmp_path_factory.mktemp("run") / "stage2", model=TINY_MODEL)


def test_labels_and_minute_tables_do_not_depend_on_chunking(tiny_run, monkeypatch, tmp_path):
    """A recording over two days (23:40 to 00:20) classified read in one chunk, in day chunks (the first ends at
    midnight) and in small chunks: the same windows, minutes and days."""
    rate, n = 30.0, 40 * 60 * 30
    t = np.arange(n) / rate
    rng = np.random.default_rng(3)
    x = np.stack([np.sin(2 * np.pi * 0.5 * t), np.cos(2 * np.pi * 0.2 * t), 0.8 + 0.1 * np.sin(t / 60)], 1)
    x[t > 1800] *= 0.2  # after midnight, a quieter part
    x += rng.normal(0, 0.02, x.shape)
    x[int(600 * rate) : int(660 * rate)] = np.nan  # a minute the parser lost: non-wear
    time_ns = START + np.round((t + 40 * 60) * 1e9).astype(np.int64)  # 23:40
    fake_device_parser(monkeypatch, time_ns, {"x": x[:, 0], "y": x[:, 1], "z": x[:, 2]}, rate)
    p = tmp_path / "night.cwa"
    p.write_bytes(b"x")
    tables = []
    for rows in (n, int(20 * 60 * rate), 7000):
        out = tmp_path / f"out{rows}"
        classify_recording(tiny_run, p, None, out_dir=out, labels=["walking", "sitting", "lying down"],
                           progress=False, precision="fp32", placement="left wrist", device="watch", chunk_rows=rows)
        tables.append({f: (out / "night" / f).read_text() for f in ("windows.csv", "minutes.csv", "daily.csv")})
    assert tables[0]["daily.csv"].count("\n") == 3  # a header and two days
    assert "non-wear" in tables[0]["windows.csv"]
    assert tables[1] == tables[0] and tables[2] == tables[0]


@pytest.mark.parametrize("name", ["ax3_testfile.cwa", "ax6_testfile.cwa", "neo.gt3x", "GENEActiv_testfile.bin"])
def test_real_files_read_as_actipy_reads_them_whole(device_dir, name):
    import actipy

    got = devices.read_device(device_dir / name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame, info = actipy.read_device(str(device_dir / name), lowpass_hz=None, resample_hz=None, verbose=False)
    cols = ["x", "y", "z"] + (["gyro_x", "gyro_y", "gyro_z"] if "gyro_x" in frame else [])
    np.testing.assert_array_equal(got.time, frame.index.asi8 / 1e9)
    np.testing.assert_array_equal(got.signals, frame[cols].to_numpy(np.float32))  # no NaN: no non-wear here
    assert got.info["actipy"]["CalibNumSamples"] == info["CalibNumSamples"]
    assert got.info["read_errors"] == info["ReadErrors"]


@pytest.mark.slow
def test_a_two_day_geneactiv_file_classifies_the_same_in_day_chunks(tiny_run, tmp_path):
    """The real parser on a synthetic two-day GENEActiv file (10 Hz): one chunk vs day chunks."""
    p = write_geneactiv(tmp_path / "two.bin", days=2.0, rate=10.0)
    tables = []
    for rows in (10**9, 864_000):
        out = tmp_path / f"out{rows}"
        classify_recording(tiny_run, p, None, out_dir=out, labels=["walking", "sitting", "sleeping"], step_s=5.0,
                           progress=False, precision="fp32", placement="left wrist", device="watch", chunk_rows=rows)
        tables.append({f: (out / "two" / f).read_text() for f in ("windows.csv", "minutes.csv", "daily.csv")})
    assert tables[1] == tables[0]
