"""Study outputs of `classify --out-dir`: minutes, days (local time, daylight saving), valid days, non-wear,
info.json, the timeline, atomic folders and the command's options."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timezone

import numpy as np
import pytest
from helpers import fake_device_parser, signal_of

from zerohar.cli import main
from zerohar.errors import ZeroharError
from zerohar.inference import classify
from zerohar.inference.classify import classify_recording
from zerohar.inference.summaries import (
    NONWEAR,
    clock_offset_s,
    daily_table,
    minute_table,
    nonwear_windows,
    resolve_timezone,
    to_instants,
)

LONDON = "Europe/London"


def _utc(s: str) -> float:
    return datetime.fromisoformat(s).replace(tzinfo=timezone.utc).timestamp()


def _read_csv(p):
    with open(p, newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------------------------------------- summary functions
def test_minute_table_splits_window_steps_at_minute_borders_and_takes_the_majority():
    t0 = _utc("2026-05-01T10:00:00")
    starts = t0 + 10.0 + np.arange(48) * 2.5  # 10:00:10 to 10:02:07.5, 2.5 s steps
    labels = ["walking"] * 30 + ["sitting"] * 18  # walking until 10:01:25
    mt = minute_table(starts, labels, 2.5, names=["sitting", "walking"])
    assert mt.names == ["sitting", "walking", NONWEAR]
    np.testing.assert_allclose(mt.start - t0, [0, 60, 120])
    np.testing.assert_allclose(mt.seconds, [[0, 50, 0], [35, 25, 0], [10, 0, 0]])
    assert mt.label.tolist() == ["walking", "sitting", "sitting"]
    with pytest.raises(ZeroharError, match="not one of the label names"):
        minute_table(starts[:2], ["walking", "running"], 2.5, names=["walking"])


def test_days_count_minutes_per_label_wear_time_and_valid_days():
    t0 = _utc("2026-05-01T12:00:00")  # two and a half days, noon to midnight two days later
    starts = t0 + np.arange(int(60 * 3600 / 30)) * 30.0
    hour = ((starts - t0) // 3600).astype(int)
    labels = np.where(hour % 2 == 0, "walking", "sitting").astype(object)
    labels[(starts >= _utc("2026-05-02T06:00:00")) & (starts < _utc("2026-05-02T11:00:00"))] = NONWEAR  # 5 h
    mt = minute_table(starts, labels, 30.0, names=["walking", "sitting"])
    days = daily_table(mt, first_s=t0, last_s=float(starts[-1] + 30.0))
    assert days.columns == ["date", "day_hours", "covered_hours", "wear_hours", "nonwear_hours", "walking_min",
                            "sitting_min", "partial", "valid"]
    assert days.column("date") == ["2026-05-01", "2026-05-02", "2026-05-03"]
    np.testing.assert_allclose(days.column("covered_hours"), [12, 24, 24])
    np.testing.assert_allclose(days.column("wear_hours"), [12, 19, 24])
    np.testing.assert_allclose(days.column("nonwear_hours"), [0, 5, 0])
    np.testing.assert_allclose(np.add(days.column("walking_min"), days.column("sitting_min")), [720, 1140, 1440])
    assert days.column("walking_min")[0] == 360.0  # noon-1 pm, 2-3 pm, ...: 6 of 12 hours
    assert days.column("partial") == [True, False, False]
    assert days.column("valid") == [False, False, True]  # 12 h and 19 h of wear are under 20 h
    assert "at least 20 h" in days.rule
    assert daily_table(mt, min_wear_hours=19).column("valid") == [False, True, True]


def test_daylight_saving_days_have_23_and_25_hours():
    tz = resolve_timezone(LONDON)
    # Spring: UTC instants (e.g. a CSV with offsets), 28 to 31 March 2026; the clocks go forward on the 29th.
    a, b = _utc("2026-03-28T00:00:00"), _utc("2026-03-31T00:00:00")
    starts = np.arange(a, b, 30.0)
    mt = minute_table(starts, ["walking"] * len(starts), 30.0, tz=tz)
    days = daily_table(mt, tz, first_s=a, last_s=b)
    assert days.column("date") == ["2026-03-28", "2026-03-29", "2026-03-30", "2026-03-31"]
    np.testing.assert_allclose(days.column("day_hours"), [24, 23, 24, 24])
    np.testing.assert_allclose(days.column("covered_hours"), [24, 23, 24, 1])  # the 31st starts at 23:00 UTC
    assert days.column("valid") == [True, True, True, False]
    assert days.column("partial") == [False, False, False, True]

    # Autumn: a device clock set in summer time (BST) that never changes: from clock midnight 24 October to
    # clock midnight 27 October. The clocks go back on the 25th, so the clock runs an hour ahead afterwards.
    clock = np.arange(_utc("2026-10-24T00:00:00"), _utc("2026-10-27T00:00:00"), 30.0)
    assert clock_offset_s(clock[0], tz) == 3600.0
    inst = to_instants(clock, tz, device_clock=True)
    np.testing.assert_allclose(inst - clock, -3600.0)
    mt = minute_table(inst, ["sitting"] * len(inst), 30.0, tz=tz)
    days = daily_table(mt, tz, first_s=inst[0], last_s=inst[-1] + 30.0)
    assert days.column("date") == ["2026-10-24", "2026-10-25", "2026-10-26"]
    np.testing.assert_allclose(days.column("day_hours"), [24, 25, 24])
    np.testing.assert_allclose(days.column("covered_hours"), [24, 25, 23])  # local 26th ends at 23:00 (clock 0:00)
    assert days.column("partial") == [False, False, True]
    np.testing.assert_allclose(days.column("sitting_min"), [1440, 1500, 1380])
    # Without a zone: the clock's own days, 24 h each.
    plain = daily_table(minute_table(clock, ["sitting"] * len(clock), 30.0))
    np.testing.assert_allclose(plain.column("day_hours"), [24, 24, 24])


def test_unknown_time_zone_is_one_clear_error():
    assert resolve_timezone(None) is None
    with pytest.raises(ZeroharError, match="'Mars/Olympus' is not a time zone; expected an IANA name"):
        resolve_timezone("Mars/Olympus")


def test_windows_more_than_half_in_nonwear_are_nonwear():
    starts = np.arange(0, 30, 2.5)
    off = nonwear_windows(starts, 5.0, [[10.0, 20.0]])
    # A window [s, s+5) is non-wear when more than 2.5 s of it lie in [10, 20).
    assert np.flatnonzero(off).tolist() == [4, 5, 6]  # starts 10 to 15 (7.5 and 17.5 overlap 2.5 s: not more)
    assert not nonwear_windows(starts, 5.0, np.zeros((0, 2))).any()


# ---------------------------------------------------------------------------------------------- classify --out-dir
@pytest.fixture(scope="module")
def midnight_csv(tmp_path_factory):
    """Ten minutes at 30 Hz across midnight into 29 March 2026 (the spring change in London), naive times (a wall
    clock; London's is UTC until 01:00 that night)."""
    n = 10 * 60 * 30
    t = _utc("2026-03-28T23:55:00") + np.arange(n) / 30.0
    x = signal_of(np.arange(n) / 30.0)
    times = np.datetime_as_string((t * 1e3).astype("datetime64[ms]"), unit="ms")
    p = tmp_path_factory.mktemp("rec") / "night.csv"
    rows = "\n".join(f"{ti}," + ",".join(f"{v:.5f}" for v in xi) for ti, xi in zip(times, x.astype(float)))
    p.write_text("time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z\n" + rows + "\n")
    return p


KW = {"labels": ["walking", "sitting"], "placement": "waist", "device": "smartphone", "progress": False,
      "precision": "fp32"}


def test_out_dir_writes_one_folder_per_recording_with_local_days(tiny_run, midnight_csv, tmp_path):
    res = classify_recording(tiny_run, midnight_csv, None, out_dir=tmp_path / "study", timezone_name=LONDON, **KW)
    folder = tmp_path / "study" / "night"
    assert res.out == folder
    assert sorted(p.name for p in folder.iterdir()) == ["daily.csv", "info.json", "minutes.csv", "timeline.png",
                                                        "windows.csv"]
    assert sorted(p.name for p in (tmp_path / "study").iterdir()) == ["night"], "temporary folders left behind"
    windows = _read_csv(folder / "windows.csv")
    assert len(windows) == res.n_windows and res.n_windows in (238, 239)  # (18000 - 150) // 75 + 1, ms times
    assert windows[0]["start_time"] == "2026-03-28T23:55:00.000"  # times as written (naive)
    minutes = _read_csv(folder / "minutes.csv")
    assert minutes[0]["time"] == "2026-03-28T23:55:00+00:00" and minutes[-1]["time"] == "2026-03-29T00:04:00+00:00"
    assert {m["label"] for m in minutes} <= {"walking", "sitting"}
    days = _read_csv(folder / "daily.csv")
    assert [d["date"] for d in days] == ["2026-03-28", "2026-03-29"]
    assert [float(d["day_hours"]) for d in days] == [24.0, 23.0]
    assert [d["partial"] for d in days] == ["True", "True"] and [d["valid"] for d in days] == ["False", "False"]
    total = sum(float(d["walking_min"]) + float(d["sitting_min"]) for d in days)
    assert total == pytest.approx(res.n_windows * 2.5 / 60, abs=1e-3)  # 4 decimals in the CSV
    info = json.loads((folder / "info.json").read_text())
    assert info["zerohar_version"] and info["model"]["run"] == str(tiny_run) and info["timezone"] == LONDON
    assert info["arguments"]["labels"] == ["walking", "sitting"] and info["valid_days"] == 0
    assert info["sampling_rate_hz"] == pytest.approx(30.0, rel=1e-3) and "at least 20 h" in info["valid_day_rule"]
    assert info["wear_hours"] == pytest.approx(total / 60, abs=1e-4) and info["nonwear_hours"] == 0
    assert "fp32" in info["inference"]  # what ran (KW asks for fp32), not only what was asked
    assert (folder / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # An existing folder needs --force; --force replaces it whole.
    with pytest.raises(ZeroharError, match="already exists; pass --force"):
        classify_recording(tiny_run, midnight_csv, None, out_dir=tmp_path / "study", **KW)
    classify_recording(tiny_run, midnight_csv, None, out_dir=tmp_path / "study", force=True, **KW)
    assert [d["date"] for d in _read_csv(folder / "daily.csv")] == ["2026-03-28", "2026-03-29"]  # UTC = GMT here


def _csv_at(path, times: list[str]):
    """A 30 Hz CSV recording with the time column written as `times`, one per row."""
    x = signal_of(np.arange(len(times)) / 30.0)
    rows = "\n".join(f"{ti}," + ",".join(f"{v:.5f}" for v in xi) for ti, xi in zip(times, x.astype(float)))
    path.write_text("time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z\n" + rows + "\n")
    return path


def test_naive_datetimes_are_the_zones_wall_clock(tiny_run, tmp_path):
    """A CSV's naive datetimes are a wall clock, as a device's clock is (an ActiLife export's are local time):
    with a zone they are its local time, not UTC instants shifted into it."""
    t = np.datetime64("2021-12-20T06:55:00", "ms") + (np.arange(6 * 60 * 30) * 1000 / 30).astype("timedelta64[ms]")
    p = _csv_at(tmp_path / "neo.csv", list(np.datetime_as_string(t, unit="ms")))
    classify_recording(tiny_run, p, None, out_dir=tmp_path / "s", timezone_name="America/New_York", **KW)
    folder = tmp_path / "s" / "neo"
    info = json.loads((folder / "info.json").read_text())
    assert info["first_sample"] == "2021-12-20T06:55:00-05:00"
    assert info["clock"].startswith("naive datetimes as written, read as local time of the zone")
    assert _read_csv(folder / "minutes.csv")[0]["time"] == "2021-12-20T06:55:00-05:00"
    assert _read_csv(folder / "windows.csv")[0]["start_time"] == "2021-12-20T06:55:00.000"  # as written


def test_datetimes_with_an_offset_make_days_in_that_offset_without_a_zone(tiny_run, tmp_path):
    """Without --timezone, days are those of the timestamps as written: 23:57 at UTC-4 is still 1 June."""
    start = datetime.fromisoformat("2024-06-01T23:57:00-04:00")
    t = start.timestamp() + np.arange(6 * 60 * 30) / 30.0
    stamps = [datetime.fromtimestamp(v, start.tzinfo).isoformat(timespec="milliseconds") for v in t]
    p = _csv_at(tmp_path / "evening.csv", stamps)
    classify_recording(tiny_run, p, None, out_dir=tmp_path / "s", **KW)
    folder = tmp_path / "s" / "evening"
    assert [d["date"] for d in _read_csv(folder / "daily.csv")] == ["2024-06-01", "2024-06-02"]
    minutes = _read_csv(folder / "minutes.csv")
    assert minutes[0]["time"] == "2024-06-01T23:57:00-04:00" and minutes[-1]["time"] == "2024-06-02T00:02:00-04:00"
    info = json.loads((folder / "info.json").read_text())
    assert info["timezone"] is None and "UTC-04:00" in info["clock"]
    assert _read_csv(folder / "windows.csv")[0]["start_time"] == "2024-06-02T03:57:00.000+00:00"  # the instant


def test_a_failure_leaves_no_half_written_folder(tiny_run, midnight_csv, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(classify, "timeline_figure", boom)  # the last file of the folder fails
    with pytest.raises(RuntimeError, match="disk full"):
        classify_recording(tiny_run, midnight_csv, None, out_dir=tmp_path / "study", **KW)
    assert not (tmp_path / "study").exists() or not list((tmp_path / "study").iterdir())


def test_bad_output_options_are_refused_before_any_work(tiny_run, midnight_csv, tmp_path):
    with pytest.raises(ZeroharError, match="give one output"):
        classify_recording(tiny_run, midnight_csv, tmp_path / "a.csv", out_dir=tmp_path / "d", **KW)
    with pytest.raises(ZeroharError, match="--timezone sets the days of the --out-dir summaries"):
        classify_recording(tiny_run, midnight_csv, tmp_path / "a.csv", timezone_name=LONDON, **KW)
    with pytest.raises(ZeroharError, match="is not a time zone"):
        classify_recording(tiny_run, midnight_csv, None, out_dir=tmp_path / "d", timezone_name="Nowhere/City", **KW)
    rel = tmp_path / "rel.csv"
    rel.write_text("time,acc_x,acc_y,acc_z\n" + "\n".join(f"{i / 30:.4f},0,0,1" for i in range(400)) + "\n")
    with pytest.raises(ZeroharError, match="no real timestamps"):
        classify_recording(tiny_run, rel, None, out_dir=tmp_path / "d", **KW)
    assert not (tmp_path / "d").exists() and not (tmp_path / "a.csv").exists()


def test_nonwear_windows_are_marked_and_never_classified(tiny_run, tmp_path, monkeypatch):
    n, rate = 10 * 60 * 30, 30.0  # ten minutes; minutes 3 to 7 not worn (NaN rows: what non-wear was to actipy)
    rng = np.random.default_rng(1)
    x = rng.normal(0, 0.2, (n, 3))
    x[:, 2] += 1.0
    x[3 * 1800 : 7 * 1800] = np.nan
    t = np.datetime64("2026-06-01T08:00", "ns").astype(np.int64) + np.round(np.arange(n) * 1e9 / rate).astype(np.int64)
    fake_device_parser(monkeypatch, t, {"x": x[:, 0], "y": x[:, 1], "z": x[:, 2]}, rate)
    embedded = []
    real = classify.embed_windows

    def spy(model, X, *a, **k):
        embedded.append(len(X))
        return real(model, X, *a, **k)

    monkeypatch.setattr(classify, "embed_windows", spy)
    p = tmp_path / "wrist.cwa"
    p.write_bytes(b"x")
    res = classify.classify_recording(tiny_run, p, None, out_dir=tmp_path / "out", labels=["walking", "sitting"],
                                      progress=False, precision="fp32")
    folder = tmp_path / "out" / "wrist"
    rows = _read_csv(folder / "windows.csv")
    off = [r for r in rows if r["label"] == NONWEAR]
    assert rows[0]["start_time"] == "2026-06-01T08:00:00.000"  # the device clock as written (naive)
    assert len(off) == 95 and all(r["score"] == "nan" and r["label_2"] == "" for r in off)
    assert sum(embedded) == len(rows) - len(off)  # non-wear windows never reach the model
    assert res.seconds_per_label[NONWEAR] == pytest.approx(95 * 2.5)
    minutes = _read_csv(folder / "minutes.csv")
    assert [m["label"] == NONWEAR for m in minutes] == [False] * 3 + [True] * 4 + [False] * 3
    assert minutes[0]["time"] == "2026-06-01T08:00:00"  # no zone: the clock's own time
    info = json.loads((folder / "info.json").read_text())
    assert info["device"]["device"] == "Axivity AX3" and info["sampling_rate_hz"] == 30.0
    assert info["nonwear"]["patience"] == "90m" and info["nonwear"]["stdtol"] == 0.015
    assert info["nonwear_hours"] == pytest.approx(4 / 60, abs=0.01)
    assert info["clock"].startswith("device clock as written")


def test_device_file_end_to_end_with_the_command(tiny_run, shared_data, tmp_path, capsys):
    pytest.importorskip("actipy")
    cwa = shared_data / "devices" / "ax3_testfile.cwa"
    if not cwa.is_file():
        pytest.skip(f"needs {cwa}")
    argv = ["classify", "--run", str(tiny_run), "--input", str(cwa), "--labels", "walking", "sitting", "--no-progress",
            "--out-dir", str(tmp_path / "study"), "--timezone", LONDON, "--step", "5"]
    assert main(argv) == 0
    folder = tmp_path / "study" / "ax3_testfile"
    info = json.loads((folder / "info.json").read_text())
    assert info["device"]["device"] == "Axivity AX3" and info["sensors"][0]["placement"] == "left wrist"
    assert info["sampling_rate_hz"] == 100.0 and info["calibration"]["requested"]
    assert _read_csv(folder / "windows.csv")[0]["start_time"] == "2019-02-26T10:55:06.000"
    assert [d["date"] for d in _read_csv(folder / "daily.csv")] == ["2019-02-26"]
    assert main(argv[:-2] + ["--timezone", "Nowhere/City", "--force"]) == 2
    assert "'Nowhere/City' is not a time zone" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(argv + ["--out", str(tmp_path / "x.csv")])  # --out and --out-dir are exclusive
