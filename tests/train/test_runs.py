"""Run directories: finished / unfinished, what --force and --resume do, loading a run."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import tiny_cfg

from zerohar.errors import ZeroharError
from zerohar.io import atomic_write_json
from zerohar.train.loop import train_stage
from zerohar.train.runs import (
    RUN_FILES,
    check_out_dir,
    clear_run_files,
    is_finished,
    load_run,
    read_run_meta,
)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    return train_stage("stage1", tiny_cfg("stage1"), tmp_path_factory.mktemp("runs") / "s1", progress=False)


def test_check_out_dir_states(tmp_path, finished_run):
    assert check_out_dir(tmp_path / "new") == "fresh"
    assert check_out_dir(tmp_path) == "fresh"  # empty
    (tmp_path / "notes.md").write_text("mine")
    assert check_out_dir(tmp_path) == "fresh"  # other files are not a run
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ZeroharError, match=r"output .*file is a file; expected a run directory"):
        check_out_dir(f)
    with pytest.raises(ZeroharError, match=r"already holds a finished run; pass --force to overwrite it"):
        check_out_dir(finished_run)
    assert check_out_dir(finished_run, resume=True) == "finished"
    assert check_out_dir(finished_run, force=True) == "fresh"
    (tmp_path / "config.yaml").write_text("stage: stage1\n")  # killed before its first checkpoint
    with pytest.raises(ZeroharError, match=r"holds an unfinished run; pass --resume to continue it or --force"):
        check_out_dir(tmp_path)
    assert check_out_dir(tmp_path, resume=True) == "fresh"  # nothing to resume from: start again
    (tmp_path / "state.pt").write_bytes(b"x")
    assert check_out_dir(tmp_path, resume=True) == "resume"


def test_clear_run_files_leaves_other_files(tmp_path):
    for f in RUN_FILES:
        (tmp_path / f).write_text("x")
    (tmp_path / "notes.md").write_text("mine")
    clear_run_files(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.md"]


def test_is_finished_needs_the_model_files(tmp_path):
    atomic_write_json(tmp_path / "metrics.json", {"finished": True})
    assert not is_finished(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"x")
    (tmp_path / "model.json").write_text("{}")
    assert is_finished(tmp_path)
    atomic_write_json(tmp_path / "metrics.json", {"finished": False})
    assert not is_finished(tmp_path)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []  # no temp file left


def test_load_run(finished_run):
    assert load_run(finished_run).model is None  # a Stage I model names no window: not loaded for inference
    run = load_run(finished_run, any_stage=True)
    assert run.stage == "stage1" and run.dataset == "hapt" and run.fold == "fold1"
    assert run.unseen == ["walking", "sitting", "stand-to-sit", "sit-to-lie"]
    assert run.seen == [c for c in run.classes if c not in run.unseen] and len(run.classes) == 12
    assert [s.sensor for s in run.layout.sensors] == ["acc", "gyro"]
    assert run.window_s == 5.0 and run.text_identity and run.text_encoder == "all-MiniLM-L6-v2"
    assert set(run.subjects) == {"train", "val", "test"} and run.subjects["val"]
    assert run.config.stage == "stage1" and run.config.train.batch_size == 8
    assert run.metrics["finished"] is True
    assert not run.model.training
    with torch.no_grad():
        z = run.model.encode_channels(torch.zeros(2, 6, 150), kinds=run.layout)
    assert z.shape == (2, 6, run.model.cfg.embed_dim)
    light = load_run(finished_run, load_model=False)
    assert light.model is None and light.meta == run.meta


def test_load_run_errors(tmp_path, finished_run):
    with pytest.raises(ZeroharError, match=r"run directory .*missing does not exist"):
        load_run(tmp_path / "missing")
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(ZeroharError, match=r"f\.txt is a file; expected a run directory"):
        load_run(tmp_path / "f.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ZeroharError, match=r"empty is not a zerohar run directory"):
        load_run(tmp_path / "empty")
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.yaml").write_text((finished_run / "config.yaml").read_text())
    atomic_write_json(unfinished / "metrics.json", {"finished": False})
    with pytest.raises(ZeroharError, match=r"run .*unfinished is unfinished .*resume it with --resume"):
        load_run(unfinished)
    # a finished run whose model.json lost the run metadata
    import shutil

    foreign = tmp_path / "foreign"
    shutil.copytree(finished_run, foreign)
    j = json.loads((foreign / "model.json").read_text())
    j["extra"] = {}
    (foreign / "model.json").write_text(json.dumps(j))
    with pytest.raises(ZeroharError, match=r"model\.json lacks the run metadata \('stage'\)"):
        read_run_meta(foreign)
