"""The three-way subject split of every stage: the same test subjects along a whole chain, the few-subjects rule."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from helpers import SUBJECTS, tiny_cfg

from zerohar.config import TrainConfig
from zerohar.data.splits import load_stage_data, split_subjects
from zerohar.errors import ZeroharError
from zerohar.train.loop import train_stage

STAGES = ["pretrain", "stage1", "stage2", "supervised"]
SIX = ["01", "02", "03", "04", "05", "06"]


def _split(stage: str, subjects=SIX, **train):
    return load_stage_data(tiny_cfg(stage, data={"fold": "fold1", "subjects": subjects}, **train)).subjects


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_stage_of_a_seed_holds_out_the_same_test_subjects(seed):
    """Pretraining, Stage I, Stage II and the supervised bound of one seed: one test group, whatever the fold and
    the validation fraction (so a chain never trains on the subjects its last stage is tested on)."""
    splits = {st: _split(st, seed=seed, test_fraction=0.34) for st in STAGES}
    tests = {st: s["test"] for st, s in splits.items()}
    assert len(set(map(tuple, tests.values()))) == 1 and len(tests["stage2"]) == 2
    for s in splits.values():
        assert not (set(s["train"]) & set(s["test"]) or set(s["val"]) & set(s["test"]))
        assert sorted(s["train"] + s["val"] + s["test"]) == SIX
    other_fold = load_stage_data(tiny_cfg("stage2", data={"fold": "fold3", "subjects": SIX}, seed=seed,
                                          test_fraction=0.34)).subjects
    assert other_fold["test"] == tests["stage2"]
    assert _split("stage1", seed=seed, test_fraction=0.34, val_fraction=0.0)["test"] == tests["stage2"]


def test_the_test_group_changes_with_the_seed():
    assert len({tuple(_split("stage2", seed=s)["test"]) for s in range(6)}) > 1


@pytest.mark.slow
def test_run_metadata_records_the_test_subjects_and_the_chain_keeps_them(tmp_path):
    """Stage I -> Stage II (same seed): Stage II's test subjects are Stage I's, which Stage I never saw; a Stage I
    of another seed that trained on them is refused (two tiny runs: ~15 s with the text encoder's load)."""
    s1 = train_stage("stage1", tiny_cfg("stage1"), tmp_path / "s1", progress=False)
    meta1 = json.loads((s1 / "model.json").read_text())["extra"]
    test = meta1["subjects"]["test"]
    assert len(test) == 1 and not set(test) & set(meta1["saw"]["hapt"]["subjects"])
    cfg2 = tiny_cfg("stage2")
    cfg2.init = str(s1)
    s2 = train_stage("stage2", cfg2, tmp_path / "s2", progress=False)
    meta2 = json.loads((s2 / "model.json").read_text())["extra"]
    assert meta2["subjects"] == meta1["subjects"] and meta2["transductive_init"] == []
    # Another seed puts another subject in the test group; Stage I of seed 0 trained on it.
    seed = next(s for s in range(1, 20) if load_stage_data(tiny_cfg("stage2", seed=s)).subjects["test"] != test)
    cfg_other = tiny_cfg("stage2", seed=seed)
    cfg_other.init = str(s1)
    with pytest.raises(ZeroharError, match=r"held out for test here"):
        train_stage("stage2", cfg_other, tmp_path / "s2b", progress=False)


def test_two_subjects_give_a_zero_shot_run_no_test_group_and_say_so(caplog):
    with caplog.at_level(logging.WARNING, logger="zerohar.data.splits"):
        s = _split("stage2", subjects=["01", "02"], val_fraction=0.5)
    assert s["test"] == [] and len(s["train"]) == 1 and len(s["val"]) == 1
    assert "2 subject(s) are too few for training, validation and test subjects" in caplog.text
    assert "GZSL seen accuracy and the calibration margin of its evaluation are not measured" in caplog.text
    # The upper bound is scored on its test subjects: without any it cannot run.
    with pytest.raises(ZeroharError, match=r"2 subject\(s\) cannot be split into training, validation \(50%\)"):
        _split("supervised", subjects=["01", "02"], val_fraction=0.5)
    # Three subjects are enough for one of each.
    three = _split("stage2", subjects=SUBJECTS)
    assert [len(three[k]) for k in ("train", "val", "test")] == [1, 1, 1]


def test_split_subjects_test_optional():
    assert split_subjects(["a", "b"], 0.5, 0.3, seed=0, test_optional=True)[2] == []
    with pytest.raises(ZeroharError, match="cannot be split"):
        split_subjects(["a"], 0.5, 0.3, seed=0, test_optional=True)  # validation alone takes every subject
    assert split_subjects(["a"], 0.0, 0.3, seed=0, test_optional=True) == (["a"], [], [])


@pytest.mark.parametrize("n", [10, 14, 23, 30])
def test_group_sizes_of_the_development_datasets(n):
    """Shoulder (10 subjects), USC-HAD (14), sp-sw-har (23), HAPT (30) with the defaults (0.2 / 0.2)."""
    t = TrainConfig()
    subs = [f"s{i:02d}" for i in range(n)]
    train, val, test = split_subjects(subs, t.val_fraction, t.test_fraction, seed=0)
    assert len(test) == max(1, round(t.test_fraction * n)) and len(val) == max(1, round(t.val_fraction * n))
    assert len(train) >= n // 2 and sorted(train + val + test) == subs


def test_test_windows_are_exactly_the_test_subjects_windows():
    d = load_stage_data(tiny_cfg("stage2"))
    assert set(d.ws.subject[d.test_idx]) == set(d.subjects["test"])
    assert np.isin(d.ws.subject[np.concatenate([d.train_idx, d.val_idx])], d.subjects["test"]).sum() == 0
