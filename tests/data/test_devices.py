"""Device files through actipy: real files from ../shared/data/devices, non-wear masks, errors, open_recording."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from helpers import fake_device_parser, untrained_run

from zerohar.cli import main
from zerohar.data import devices
from zerohar.data.devices import read_device
from zerohar.data.streaming import open_recording
from zerohar.data.transforms import canonical_stream
from zerohar.errors import ZeroharError

pytest.importorskip("actipy")

CORRUPT = "ax3_testfile_corrupt_blocks_0_13_14_142_143_144.cwa"


def test_neo_gt3x_reads_the_samples_of_the_vendors_csv_export(device_dir):
    rec = read_device(device_dir / "neo.gt3x", calibrate=False, detect_nonwear=False)
    ref = np.loadtxt(device_dir / "neo.csv", delimiter=",", skiprows=11)  # 10 header lines + column names
    assert rec.signals.shape == ref.shape == (18004, 3)
    assert rec.info["sample_rate_hz"] == 30.0 and rec.info["device"] == "ActiGraph GT3X"
    # The vendor rounds to 3 decimals (mg): every sample agrees to that rounding.
    np.testing.assert_allclose(rec.signals, ref, rtol=0, atol=0.0005 + 1e-6)
    # Start Time 11:55:00 on 12/20/2021 (the export's header), then 30 Hz.
    assert np.datetime64(int(round(rec.time[0])), "s") == np.datetime64("2021-12-20T11:55:00")
    np.testing.assert_allclose((rec.time[-1] - rec.time[0]) / (len(rec.time) - 1), 1 / 30, rtol=1e-3)
    assert not rec.nonwear.any()


def test_corrupted_cwa_blocks_are_skipped_with_a_warning_naming_them(device_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="zerohar.data.devices"):
        rec = read_device(device_dir / CORRUPT)
    intact = read_device(device_dir / "ax3_testfile.cwa")
    assert rec.info["read_errors"] == 6
    assert any("0, 13, 14, 142, 143, 144" in w for w in rec.info["warnings"])
    assert "0, 13, 14, 142, 143, 144" in caplog.text
    assert 0 < len(rec.time) < len(intact.time)  # what the intact blocks hold
    assert np.all(np.diff(rec.time) > 0)


def test_gzipped_cwa_reads_like_the_plain_file(device_dir, tmp_path):
    import gzip

    gz = tmp_path / "corrupt.cwa.gz"
    gz.write_bytes(gzip.compress((device_dir / CORRUPT).read_bytes()))
    rec = read_device(gz)
    assert len(rec.time) == 16680 and rec.info["file_type"] == ".cwa.gz" and rec.info["device"] == "Axivity AX3"
    assert any("0, 13, 14, 142, 143, 144" in w for w in rec.info["warnings"])


def test_truncated_geneactiv_file_reads_what_it_holds_and_says_so(device_dir):
    rec = read_device(device_dir / "GENEActiv_testfile.bin")
    assert rec.info["device"] == "GENEActiv"
    assert rec.info["sample_rate_hz"] == pytest.approx(85.7)
    assert len(rec.time) == 4800 and np.isfinite(rec.signals).all()
    assert any(w.startswith("truncated file") and "4800 samples" in w for w in rec.info["warnings"])
    norm = np.linalg.norm(rec.signals, axis=1)
    assert 0.5 < np.median(norm) < 1.5  # in g


def test_ax6_gives_accelerometer_and_gyroscope_ax3_the_accelerometer(device_dir, caplog):
    with caplog.at_level(logging.INFO, logger="zerohar.data.devices"):
        ax6 = read_device(device_dir / "ax6_testfile.cwa")
    assert [(s.sensor, s.unit, s.placement, s.device) for s in ax6.layout.sensors] == [
        ("acc", "g", "left wrist", "Axivity AX6"), ("gyro", "deg/s", "left wrist", "Axivity AX6")]
    assert ax6.signals.shape == (11320, 6) and ax6.info["sample_rate_hz"] == 100.0
    assert len([r for r in caplog.records if "reading as Axivity AX6 worn on the left wrist" in r.message]) == 1
    ax3 = read_device(device_dir / "ax3_testfile.cwa", placement="right wrist", device="AX3 watch")
    assert [(s.sensor, s.placement, s.device) for s in ax3.layout.sensors] == [("acc", "right wrist", "AX3 watch")]
    assert ax3.signals.shape == (17400, 3)
    cal = ax3.info["calibration"]  # too few stationary windows in three minutes: actipy skips it and says so
    assert cal["requested"] and not cal["applied"]
    assert any("calibration" in w.lower() for w in ax3.info["warnings"])


def test_open_recording_streams_a_device_file_to_30_hz(device_dir):
    rec = open_recording(device_dir / "ax3_testfile.cwa", chunk_rows=5000)
    assert rec.absolute_time and rec.device_clock and rec.info["device"] == "Axivity AX3"
    pieces = list(canonical_stream(rec.chunks, rec.layout, 30.0, max_gap_s=5.0, source=str(rec.path)))
    n = sum(len(p.signals) for p in pieces)
    span = (pieces[-1].meta["t0"] - pieces[0].meta["t0"]) + len(pieces[-1].signals) / 30.0
    assert len({p.meta["segment"] for p in pieces}) == 1 and n == pytest.approx(span * 30, abs=1)
    assert n == pytest.approx(17400 * 0.3, rel=0.02) and rec.rate_found == pytest.approx(100.0, rel=0.02)
    assert pieces[0].layout.sensors[0].unit == "g" and pieces[0].signals.shape[1] == 3


# ---------------------------------------------------------------------------------------------- errors, non-wear
def test_unreadable_device_files_and_unknown_suffixes_are_one_clear_error(tmp_path):
    for name in ("junk.cwa", "junk.gt3x", "junk.bin"):
        p = tmp_path / name
        p.write_bytes(b"not a device file\n" * 100)
        with pytest.raises(ZeroharError, match="actipy cannot read this device file|read no samples"):
            read_device(p)
    other = tmp_path / "rec.xyz"
    other.write_text("time,acc_x\n")
    with pytest.raises(ZeroharError, match=r"unknown recording type '\.xyz'.*\.cwa\.gz"):
        open_recording(other)
    with pytest.raises(ZeroharError, match="not a device file"):
        read_device(other)
    assert devices.recording_name("week.cwa.gz") == "week" and devices.device_suffix("A.CWA.GZ") == ".cwa.gz"


def _fake_device(monkeypatch, n=3000, rate=10.0, nan=slice(1000, 2000), gyro=False):
    """A device file whose parser streams a synthetic recording with a run of NaN rows (non-wear)."""
    rng = np.random.default_rng(0)
    cols = ["x", "y", "z"] + (["gyro_x", "gyro_y", "gyro_z"] if gyro else [])
    x = rng.normal(0, 0.1, (n, len(cols)))
    x[:, 2] += 1.0
    x[nan] = np.nan
    t = np.datetime64("2026-03-28T23:00:00", "ns").astype(np.int64) + np.arange(n) * int(1e9 / rate)
    fake_device_parser(monkeypatch, t, {c: x[:, i] for i, c in enumerate(cols)}, rate)
    return x.astype(np.float32)


def test_nan_rows_become_nonwear_intervals_and_are_filled_forward(monkeypatch, tmp_path):
    x = _fake_device(monkeypatch)
    p = tmp_path / "week.cwa"
    p.write_bytes(b"x")
    rec = read_device(p)
    assert rec.nonwear.sum() == 1000 and rec.nonwear[1000:2000].all()
    np.testing.assert_allclose(rec.signals[1000:2000], np.repeat(x[999:1000], 1000, axis=0), atol=1e-6)
    iv = rec.nonwear_intervals()
    np.testing.assert_allclose(iv - rec.time[0], [[100.0, 200.0]], atol=1e-6)
    # 0.1 g of noise: no stationary window, so actipy's calibration is skipped, and says why
    assert rec.info["calibration"] == {"requested": True, "applied": False, "stationary_samples": 0,
                                       "error_before_mg": None, "error_after_mg": None}
    assert any("Insufficient stationary samples" in w for w in rec.info["warnings"])
    assert rec.info["nonwear"]["nonwear_s"] == pytest.approx(100.0)
    assert rec.info["nonwear"]["episodes"] == 0  # actipy's rule found none; the NaN run is non-wear anyway
    off = read_device(p, detect_nonwear=False)
    assert not off.nonwear.any() and np.isfinite(off.signals).all()


def test_neo_gt3x_and_its_actilife_csv_export_get_the_same_label_on_every_window(device_dir, tmp_path):
    """The vendor's CSV export (10-line ActiLife preamble, no time column) reads as the device file does: same
    start, same rate, samples equal to the export's rounding, so classify names every window alike."""

    run = untrained_run(tmp_path / "run")
    outs = {}
    for name in ("neo.gt3x", "neo.csv"):
        out = tmp_path / f"{name}.labels.csv"
        flags = ["--no-calibration", "--no-nonwear"] if name.endswith(".gt3x") else []
        code = main(["classify", "--run", str(run), "--input", str(device_dir / name), "--labels", "walking",
                     "sitting", "lying", "--placement", "wrist", "--device", "smartwatch", "--out", str(out),
                     "--no-unknown", "--force", "--no-progress", *flags])
        assert code == 0
        outs[name] = np.genfromtxt(out, delimiter=",", names=True, dtype=None, encoding="utf-8")
    a, b = outs["neo.gt3x"], outs["neo.csv"]
    assert len(a) == len(b) > 100
    assert (a["label"] == b["label"]).all()
    # Both from the device's own start, 11:55:00. The CSV route writes it as UTC (+00:00), the rule of every naive
    # time in a CSV file; the device route keeps the device's naive clock.
    assert ([t[:23] for t in a["start_time"].tolist()] == [t[:23] for t in b["start_time"].tolist()])
    assert str(a["start_time"][0]).startswith("2021-12-20T11:55:00")
