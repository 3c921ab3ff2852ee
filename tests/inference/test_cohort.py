"""Cohort runs (`classify --input DIR_OR_GLOB --out-dir OUT`) on a real local Dask cluster."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from helpers import signal_of

from zerohar.cli import main
from zerohar.errors import ZeroharError
from zerohar.inference.cohort import classify_cohort, find_recordings, is_cohort_input

HEADER = "time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z\n"
KW = {"labels": ["walking", "sitting"], "placement": "waist", "device": "smartphone", "progress": False,
      "precision": "fp32"}


def _write_recording(path, start: str, minutes: float, seed: int) -> None:
    n = int(minutes * 60 * 30)
    t0 = np.datetime64(start, "ms").astype(np.int64) / 1e3
    t = t0 + np.arange(n) / 30.0
    x = signal_of(np.arange(n) / 30.0 + seed)
    times = np.datetime_as_string((t * 1e3).astype("datetime64[ms]"), unit="ms")
    rows = "\n".join(f"{ti}," + ",".join(f"{v:.5f}" for v in xi) for ti, xi in zip(times, x.astype(float)))
    path.write_text(HEADER + rows + "\n")


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory):
    """Four participants of 3 minutes each, and one file that is not a recording of the layout."""
    d = tmp_path_factory.mktemp("cohort")
    for i in range(4):
        _write_recording(d / f"p{i}.csv", f"2026-05-0{i + 1}T10:00:00", 3, seed=i)
    (d / "broken.csv").write_text("time,acc_x\n2026-05-01T10:00:00,1.0\n")
    (d / "notes.txt").write_text("not a recording")
    return d


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_inputs_that_name_a_cohort(cohort_dir):
    assert is_cohort_input(cohort_dir) and is_cohort_input(str(cohort_dir / "p*.csv"))
    assert not is_cohort_input(cohort_dir / "p0.csv")
    assert [p.name for p in find_recordings(cohort_dir)] == ["broken.csv", "p0.csv", "p1.csv", "p2.csv", "p3.csv"]
    assert [p.name for p in find_recordings(str(cohort_dir / "p[12].csv"))] == ["p1.csv", "p2.csv"]
    with pytest.raises(ZeroharError, match="names no recording"):
        find_recordings(str(cohort_dir / "*.parquet"))


def test_two_recordings_with_one_output_folder_are_refused(tmp_path):
    (tmp_path / "a").mkdir()
    _write_recording(tmp_path / "a" / "x.csv", "2026-05-01T10:00:00", 0.2, 0)
    np.save(tmp_path / "a" / "x.npy", np.zeros((10, 6), np.float32))
    with pytest.raises(ZeroharError, match="would both write the folder x/"):
        find_recordings(tmp_path / "a")


def test_cohort_on_two_workers_reports_the_bad_file_and_a_rerun_does_nothing(tiny_run, cohort_dir, tmp_path):
    out = tmp_path / "out"
    res = classify_cohort(tiny_run, cohort_dir, out, workers=2, **KW)
    assert res.workers == 2
    status = {r["recording"]: r["status"] for r in res.rows}
    assert status == {"broken": "failed", "p0": "done", "p1": "done", "p2": "done", "p3": "done"}
    broken = next(r for r in res.rows if r["recording"] == "broken")
    assert "broken.csv" in broken["error"]  # its own one-sentence error, not a traceback
    for i in range(4):
        folder = out / f"p{i}"
        assert {f.name for f in folder.iterdir()} == {"windows.csv", "minutes.csv", "daily.csv", "info.json",
                                                      "timeline.png"}
        assert json.loads((folder / "info.json").read_text())["labels"] == ["walking", "sitting"]
    assert not (out / "broken").exists()  # nothing half-written for the failed one
    table = _rows(out / "cohort.csv")
    assert [r["status"] for r in table] == ["failed", "done", "done", "done", "done"]
    daily = _rows(out / "cohort_daily.csv")
    assert sorted({r["recording"] for r in daily}) == ["p0", "p1", "p2", "p3"]
    assert {"walking_min", "sitting_min", "valid"} <= set(daily[0])  # each participant's daily.csv
    assert not [f for f in out.rglob(".*tmp*")]  # no temporary file or folder left

    mtimes = {i: (out / f"p{i}" / "windows.csv").stat().st_mtime_ns for i in range(4)}
    again = classify_cohort(tiny_run, cohort_dir, out, workers=2, **KW)
    assert [r["status"] for r in again.rows] == ["failed", "skipped", "skipped", "skipped", "skipped"]
    assert {i: (out / f"p{i}" / "windows.csv").stat().st_mtime_ns for i in range(4)} == mtimes

    other = dict(KW, labels=["walking", "running"])  # a cohort table never mixes two label sets
    with pytest.raises(ZeroharError, match="other labels"):
        classify_cohort(tiny_run, cohort_dir, out, workers=1, **other)
    forced = classify_cohort(tiny_run, str(cohort_dir / "p0.csv*"), out, workers=1, force=True, **other)
    assert [r["status"] for r in forced.rows] == ["done"]
    assert json.loads((out / "p0" / "info.json").read_text())["labels"] == ["walking", "running"]


def test_the_command_takes_a_glob_and_exits_1_when_a_recording_failed(tiny_run, cohort_dir, tmp_path, capsys):
    out = tmp_path / "cmd"
    code = main(["classify", "--run", str(tiny_run), "--input", str(cohort_dir / "*.csv"), "--out-dir", str(out),
                 "--labels", "walking", "sitting", "--placement", "waist", "--device", "smartphone",
                 "--workers", "1", "--precision", "fp32", "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 1
    assert "5 recordings: 4 classified, 0 already done (skipped), 1 failed" in printed
    assert "failed: broken:" in printed
    assert main(["classify", "--run", str(tiny_run), "--input", str(cohort_dir / "p0.csv"), "--out", "x.csv",
                 "--labels", "a", "b", "--workers", "2"]) == 2  # --workers is for cohorts only
    assert main(["classify", "--run", str(tiny_run), "--input", str(cohort_dir), "--out", str(tmp_path / "t.csv"),
                 "--labels", "a", "b"]) == 2  # a cohort writes folders, not one table
    assert "give --out-dir DIR, not the table" in capsys.readouterr().err
    assert not (tmp_path / "t.csv").exists()


@pytest.mark.slow  # a fault test, like those of tests/reliability/test_rel_faults.py: pytest -m slow
def test_a_worker_killed_mid_recording_loses_nothing(tiny_run, cohort_dir, tmp_path):
    """kill -9 of the worker while it writes a recording: Dask gives the recording to the restarted worker, every
    output is complete, and the dead worker's temporary folder is gone."""
    import os
    import signal
    import threading
    import time

    import psutil

    out = tmp_path / "out"
    killed: list[int] = []

    def killer():
        deadline = time.monotonic() + 120
        while not killed and time.monotonic() < deadline:
            if any(out.glob(".p*.tmp*")):  # a worker is inside a recording's atomic folder
                workers = [c for c in psutil.Process().children(recursive=True)
                           if "spawn_main" in " ".join(c.cmdline())]
                if workers:
                    os.kill(workers[0].pid, signal.SIGKILL)
                    killed.append(workers[0].pid)
            time.sleep(0.02)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    res = classify_cohort(tiny_run, str(cohort_dir / "p[01].csv"), out, workers=1, **KW)
    t.join()
    assert killed, "the worker was never caught inside a recording"
    assert [r["status"] for r in res.rows] == ["done", "done"]
    for name in ("p0", "p1"):
        assert (out / name / "info.json").is_file() and (out / name / "timeline.png").is_file()
    assert not list(out.glob(".*tmp*"))
