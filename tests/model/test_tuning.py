"""The one-off timing of the backbone implementations: measured once per machine, kept, refreshed on request."""

from __future__ import annotations

import json
import multiprocessing

import pytest

from zerohar.model import tuning


@pytest.fixture
def counted(monkeypatch, tmp_path):
    """`measure` replaced by a counter (speeds are the plan's business, not this module's); a fresh cache."""
    monkeypatch.setenv("ZEROHAR_CACHE", str(tmp_path))
    monkeypatch.delenv(tuning.TUNE_ENV, raising=False)
    tuning._MEMO.clear()
    calls = []

    def fake(bf16, *a, **k):
        calls.append(bf16)
        return {"fp32 plain": 100.0 + len(calls), "fp32 fused": 120.0}

    monkeypatch.setattr(tuning, "measure", fake)
    yield calls
    tuning._MEMO.clear()


def test_measured_once_then_kept_on_disk(counted, tmp_path):
    first = tuning.backbone_speeds(bf16=False)
    assert first == {"fp32 plain": 101.0, "fp32 fused": 120.0} and counted == [False]
    tuning._MEMO.clear()  # a new process: reads the kept file, measures nothing
    assert tuning.backbone_speeds(bf16=False) == first and counted == [False]
    kept = json.loads(next((tmp_path / "tuning").glob("backbone-*.json")).read_text())
    assert kept["identity"]["part"] == "backbone" and kept["identity"]["bf16_candidates"] is False
    assert kept["identity"]["threads"] >= 1 and kept["per_s"] == first


def test_refresh_measures_again_and_replaces_the_kept_result(counted):
    tuning.backbone_speeds(bf16=False)
    again = tuning.backbone_speeds(bf16=False, refresh=True)
    assert again["fp32 plain"] == 102.0 and len(counted) == 2
    tuning._MEMO.clear()
    assert tuning.backbone_speeds(bf16=False) == again


def test_bf16_candidates_are_kept_apart(counted):
    tuning.backbone_speeds(bf16=False)
    tuning.backbone_speeds(bf16=True)
    assert counted == [False, True]


def test_a_damaged_or_foreign_kept_file_is_measured_again(counted, tmp_path):
    tuning.backbone_speeds(bf16=False)
    path = next((tmp_path / "tuning").glob("backbone-*.json"))
    for text in ("{not json", json.dumps({"identity": {"cpu": "another"}, "per_s": {"fp32 plain": 1}}), "[1, 2]"):
        path.write_text(text)
        tuning._MEMO.clear()
        assert tuning.backbone_speeds(bf16=False)["fp32 fused"] == 120.0
    assert len(counted) == 4


def test_off_measures_nothing(counted, monkeypatch):
    for value in ("off", "0", "false", "No"):
        monkeypatch.setenv(tuning.TUNE_ENV, value)
        assert tuning.backbone_speeds(bf16=True) is None
    assert counted == []


def test_a_failed_measurement_falls_back_to_the_flags(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("ZEROHAR_CACHE", str(tmp_path))
    tuning._MEMO.clear()

    def broken(bf16):
        raise RuntimeError("no oneDNN here")

    monkeypatch.setattr(tuning, "measure", broken)
    assert tuning.backbone_speeds(bf16=False) is None
    assert "following the CPU flags" in caplog.text
    assert not list((tmp_path / "tuning").glob("*.json"))  # nothing kept: the next process tries again


def test_parts_are_kept_apart(counted, tmp_path):
    """The label search's timing and the backbone's live in their own files, each under its own identity."""
    tuning.backbone_speeds(bf16=False)
    other = tuning.kept_speeds(tuning.machine_identity("label-search", sizes=[1, 2]), lambda: {"numpy 1": 3.0})
    assert other == {"numpy 1": 3.0}
    names = sorted(p.name.split("-")[0] for p in (tmp_path / "tuning").glob("*.json"))
    assert names == ["backbone", "label"]


def _speeds_in_child(cache: str, queue) -> None:
    import os

    os.environ["ZEROHAR_CACHE"] = cache  # read by cache_dir() at each call, so after the module's import
    queue.put(tuning.backbone_speeds(bf16=False))


def test_processes_of_one_machine_share_one_measurement(tmp_path, monkeypatch):
    """Two worker processes asking at once: the lock lets one measure; the other reads its result."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_speeds_in_child, args=(str(tmp_path), queue)) for _ in range(2)]
    for p in procs:
        p.start()
    got = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert got[0] == got[1] and set(got[0]) == {"fp32 plain", "fp32 fused"}
    assert len(list((tmp_path / "tuning").glob("backbone-*.json"))) == 1


def test_measure_times_every_candidate_that_can_be_built():
    speeds = tuning.measure(bf16=False, rounds=1, batch=16)
    assert set(speeds) == {"fp32 plain", "fp32 fused"} and all(v > 0 for v in speeds.values())


def test_fastest_and_gain():
    speeds = {"fp32 plain": 620.0, "fp32 fused": 752.0, "bf16 fused": 550.0}
    assert tuning.fastest(speeds, "fp32") == ("fused", 752.0)
    assert tuning.fastest(speeds, "int8") is None
    assert tuning.bf16_gain(speeds) == pytest.approx(550 / 752)
    assert tuning.bf16_gain({"fp32 plain": 1.0}) == 0.0
