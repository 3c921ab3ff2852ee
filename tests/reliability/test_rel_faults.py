"""Faults: a process killed (SIGKILL, SIGTERM) in the middle of a write. Nothing torn is ever read, a temporary
file left by kill -9 is removed by the next run, SIGTERM removes its own, and the work resumes.

Marked slow (subprocesses that import torch: about 90 s in all): `pytest -m slow tests/reliability`.

The process runs `tests/reliability/slow_write.py`, which makes one atomic write torn and slow; the test waits
for it to be under way, then kills.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from badinputs import csv_text, tiny_config, write
from llm_server import LLMServer

from zerohar.cli import main
from zerohar.errors import ZeroharError
from zerohar.train.runs import load_run

HERE = Path(__file__).parent
pytestmark = pytest.mark.slow


def _temporaries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob(".*") if p.name.endswith(".tmp"))


def _launch(tmp_path: Path, pattern: str, nth: int, *args) -> tuple[subprocess.Popen, Path]:
    marker = tmp_path / "marker"
    marker.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(HERE)])}
    cmd = [sys.executable, str(HERE / "slow_write.py"), str(marker), pattern, str(nth), "--", *map(str, args)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, marker


def _kill_mid_write(proc: subprocess.Popen, marker: Path, sig: int = signal.SIGKILL, timeout: float = 60.0) -> str:
    """Wait until the torn write is under way, send `sig`, return stderr."""
    deadline = time.monotonic() + timeout
    try:
        while not marker.exists():
            if proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"the process ended (exit {proc.returncode}) before the write:\n{err[-2000:]}")
            assert time.monotonic() < deadline, "the write never started"
            time.sleep(0.05)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return err


# ---------------------------------------------------------------------------------------------- training
def _stage1(tmp_path: Path, epochs: int) -> list:
    cfg = json.loads(tiny_config())
    cfg["train"]["epochs"] = epochs
    return ["stage1", "--config", write(tmp_path / "tiny.yaml", json.dumps(cfg)), "--out", tmp_path / "run",
            "--no-progress"]


def test_kill9_while_writing_state_pt_then_resume(tmp_path, capsys):
    args = _stage1(tmp_path, epochs=3)
    proc, marker = _launch(tmp_path, "state.pt", 2, *args)
    _kill_mid_write(proc, marker)
    run = tmp_path / "run"
    torn = Path(marker.read_text())
    assert proc.returncode == -signal.SIGKILL and torn.exists(), "the kill must leave a torn temporary file"
    state = torch.load(run / "state.pt", weights_only=True)  # the previous checkpoint, whole
    assert state
    assert main([*map(str, args)]) == 2  # an unfinished run is not overwritten by accident
    assert "--resume" in capsys.readouterr().err
    assert main([*map(str, args), "--resume"]) == 0
    assert json.loads((run / "metrics.json").read_text())["finished"] is True
    assert not torn.exists() and not _temporaries(run), "the next run removes what kill -9 left"


def test_kill9_while_writing_model_safetensors_is_never_loaded(tmp_path, capsys):
    args = _stage1(tmp_path, epochs=2)
    proc, marker = _launch(tmp_path, "model.safetensors", 1, *args)
    _kill_mid_write(proc, marker)
    run = tmp_path / "run"
    assert Path(marker.read_text()).exists() and not (run / "model.safetensors").exists()
    with pytest.raises(ZeroharError, match="unfinished"):
        load_run(run)  # the torn weights are never read
    assert main([*map(str, args), "--resume"]) == 0  # nothing to resume from: starts again
    assert load_run(run, any_stage=True).model is not None
    assert not _temporaries(run)


def test_sigterm_while_writing_a_checkpoint_removes_the_temporary_file(tmp_path):
    args = _stage1(tmp_path, epochs=2)
    proc, marker = _launch(tmp_path, "state.pt", 1, *args)
    err = _kill_mid_write(proc, marker, signal.SIGTERM)
    assert proc.returncode == 143 and "terminated" in err and "Traceback" not in err
    assert not Path(marker.read_text()).exists() and not _temporaries(tmp_path / "run")


# ---------------------------------------------------------------------------------------------- prepare
def _prepare(tmp_path: Path) -> list:
    rec = write(tmp_path / "rec.csv", csv_text(900))
    return ["prepare", "--dataset", "csv", "--root", rec, "--placement", "waist", "--device", "phone",
            "--out", tmp_path / "o.npz", "--no-progress"]


@pytest.mark.parametrize("pattern", ["o.npz", "csv-*.npz"], ids=["out", "cache"])
def test_kill9_while_writing_prepare_npz_then_rerun(tmp_path, pattern, monkeypatch):
    monkeypatch.setenv("ZEROHAR_CACHE", str(tmp_path / "cache"))
    args = _prepare(tmp_path)
    proc, marker = _launch(tmp_path, pattern, 1, *args)
    _kill_mid_write(proc, marker)
    torn = Path(marker.read_text())
    assert torn.exists() and not (tmp_path / "o.npz").exists()
    assert main([*map(str, args)]) == 0  # no --force needed: nothing was written
    with np.load(tmp_path / "o.npz", allow_pickle=False) as z:
        assert z["X"].shape[1:] == (6, 150)
    assert not torn.exists() and not _temporaries(tmp_path)


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["sigterm", "ctrl-c"])
def test_stopping_prepare_mid_write_leaves_nothing(tmp_path, sig, code, monkeypatch):
    monkeypatch.setenv("ZEROHAR_CACHE", str(tmp_path / "cache"))
    proc, marker = _launch(tmp_path, "o.npz", 1, *_prepare(tmp_path))
    err = _kill_mid_write(proc, marker, sig)
    assert proc.returncode == code and "Traceback" not in err
    assert not (tmp_path / "o.npz").exists() and not _temporaries(tmp_path)


# ---------------------------------------------------------------------------------------------- describe
def test_kill9_during_describe_keeps_the_finished_labels(tmp_path, monkeypatch):
    monkeypatch.setenv("ZEROHAR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-zerohar-faults")
    out = tmp_path / "d.json"
    with LLMServer(sleep_s=30.0) as server:
        server.per_label["c"] = ["timeout"] * 5  # a and b are answered and cached; c hangs
        cmd = [sys.executable, "-m", "zerohar.cli", "describe", "a", "b", "c", "--llm-model", "m", "--base-url",
               server.url, "--out", str(out), "--concurrency", "1", "--timeout", "20", "--retries", "0",
               "--no-progress"]
        proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while "c" not in server.labels_requested():
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else ""
                time.sleep(0.05)
            proc.kill()
            proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert not out.exists() and not _temporaries(tmp_path)
        server.reset()
        server.per_label.clear()
        assert main(["describe", "a", "b", "c", "--llm-model", "m", "--base-url", server.url, "--out", str(out),
                     "--no-progress"]) == 0
        assert server.labels_requested() == ["c"], "a and b were kept from the killed run"
    assert list(json.loads(out.read_text())["labels"]) == ["a", "b", "c"]
