"""The synthetic week-long wrist recording (fixture generator of the classify_7day speed figure)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zerohar.data import synthetic
from zerohar.data.devices import read_device
from zerohar.data.synthetic import GENEACTIV_GAIN, generate, write_geneactiv
from zerohar.errors import ZeroharError

DAYS = 0.02  # 28.8 minutes: 51,840 samples


def _concat(days: float, seed: int = 0, block_s: float = synthetic.BLOCK_S):
    blocks = list(synthetic.generate(days, seed=seed, block_s=block_s))
    return np.concatenate([t for t, _ in blocks]), np.concatenate([a for _, a in blocks])


def test_shape_rate_and_blocks():
    t, acc = _concat(DAYS, block_s=600)
    n = int(round(DAYS * 86400 * 30))
    assert acc.shape == (n, 3) and acc.dtype == np.float32
    assert t.shape == (n,)
    np.testing.assert_allclose(np.diff(t), 1 / 30, rtol=1e-9)
    assert t[0] == 0.0
    # Blocks are at most block_s long, so memory does not grow with the duration.
    assert max(len(b[0]) for b in synthetic.generate(DAYS, block_s=600)) == 600 * 30


def test_seven_day_sample_count():
    assert synthetic.N_SAMPLES_7DAY == 18_144_000


def test_norm_is_one_g_at_rest_and_moves_when_walking():
    bouts = synthetic.schedule(7.0, seed=0)
    rest = next(b for b in bouts if b.state == synthetic.SLEEP and b.end - b.start > 600)
    t = rest.start + 5 + np.arange(0, 300, 1 / 30)  # 5 min inside the bout, after the posture blend
    norm = np.linalg.norm(synthetic.bout_signal(rest, t), axis=1)
    assert abs(np.median(norm) - 1.0) < 0.02
    walk = next(b for b in bouts if b.state == synthetic.WALK and b.end - b.start > 60)
    t = walk.start + 5 + np.arange(0, 40, 1 / 30)
    norm = np.linalg.norm(synthetic.bout_signal(walk, t), axis=1)
    assert norm.std() > 0.1  # steps, not rest
    spec = np.abs(np.fft.rfft(norm - norm.mean()))
    freqs = np.fft.rfftfreq(len(norm), 1 / 30)
    assert 1.5 <= freqs[spec.argmax()] <= 2.2  # step cadence


def test_generated_rest_norm_near_one_g():
    t, acc = _concat(DAYS)
    bouts = synthetic.schedule(DAYS, seed=0)
    still = np.zeros(len(t), bool)
    for b in bouts:
        if b.state in (synthetic.SIT, synthetic.SLEEP):
            still |= (t >= b.start + 3) & (t < b.end)
    assert still.sum() > 1000
    assert abs(np.median(np.linalg.norm(acc[still], axis=1)) - 1.0) < 0.05


def test_week_schedule_has_nights_and_walking():
    bouts = synthetic.schedule(7.0, seed=3)
    assert bouts[0].start == 0 and bouts[-1].end == pytest.approx(7 * 86400)
    assert all(a.end == b.start for a, b in zip(bouts, bouts[1:]))
    hours = {s: sum(b.end - b.start for b in bouts if b.state == s) / 3600 for s in ("sleep", "sit", "light", "walk")}
    assert 6 * 7 < hours["sleep"] < 10 * 7  # about 8 h a night
    assert hours["walk"] > 7 * 0.25  # some walking every day on average


def test_reproducible_from_seed():
    _, a = _concat(0.005, seed=1)
    _, b = _concat(0.005, seed=1)
    _, c = _concat(0.005, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_write_csv_round_trip(tmp_path):
    path = synthetic.write_csv(tmp_path / "rec.csv", days=0.002, seed=0)
    lines = path.read_text().splitlines()
    assert lines[0] == "time,acc_x,acc_y,acc_z"
    data = np.loadtxt(path, delimiter=",", skiprows=1)
    t, acc = _concat(0.002, seed=0)
    assert data.shape == (len(t), 4)
    np.testing.assert_allclose(data[:, 0], t, atol=5e-5)
    np.testing.assert_allclose(data[:, 1:], acc, atol=5e-5 + 1e-6)
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left


def test_write_csv_refuses_to_overwrite(tmp_path):
    path = tmp_path / "rec.csv"
    path.write_text("keep me")
    with pytest.raises(ZeroharError, match=r"rec\.csv already exists; pass --force"):
        synthetic.write_csv(path, days=0.001)
    assert path.read_text() == "keep me"
    synthetic.write_csv(path, days=0.001, force=True)
    assert path.read_text().startswith("time,acc_x")


def test_bad_duration():
    with pytest.raises(ZeroharError, match="days and rate must be positive, found days=0"):
        next(synthetic.generate(0))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-8, 8, allow_nan=False), min_size=1, max_size=40),
       st.floats(0, 700_000, allow_nan=False))
def test_format_csv_rows_matches_rounding(values, t0):
    x = np.asarray(values, dtype=np.float64)
    acc = np.stack([x, -x, x / 3], axis=1)
    t = t0 + np.arange(len(x)) / 30
    text = synthetic.format_csv_rows(t, acc).decode()
    assert text.endswith("\n") and text.count("\n") == len(x)
    parsed = np.array([[float(v) for v in line.split(",")] for line in text.splitlines()])
    np.testing.assert_allclose(parsed[:, 0], np.round(t, 4), atol=1e-9)
    np.testing.assert_allclose(parsed[:, 1:], np.round(acc, 4), atol=1e-9)


def test_the_geneactiv_file_reads_back_through_actipy_within_one_quantum(tmp_path):
    """The speed benchmark's device file is a real GENEActiv .bin to the reader of the device path."""
    p = write_geneactiv(tmp_path / "week.bin", days=0.01)  # 864 s = 86.4 pages: 86 whole pages written
    rec = read_device(p, calibrate=False, detect_nonwear=False)
    _, acc = next(generate(0.01))
    acc = acc[: 86 * 300]
    assert rec.signals.shape == acc.shape == (25800, 3)
    assert np.abs(rec.signals - acc).max() <= 0.5 * 100 / GENEACTIV_GAIN + 1e-6  # half of the 12-bit step
    assert rec.info["sample_rate_hz"] == 30.0
