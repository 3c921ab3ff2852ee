"""The linear probe of frozen backbones: subject-disjoint folds, macro-F1 above chance, the command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from zerohar.cli import main
from zerohar.data.prepare import load_windowset
from zerohar.errors import ZeroharError
from zerohar.evaluation.probe import probe_backbone


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    ws = load_windowset("hapt")
    keep = np.isin(ws.subject, ["01", "02", "03", "04", "05", "06"]) & (ws.y >= 0)
    return ws.subset(keep).save(tmp_path_factory.mktemp("probe") / "hapt6.npz")


def test_a_random_backbone_probes_above_chance_in_subject_disjoint_folds(small_set, tmp_path):
    r = probe_backbone(None, data=small_set, n_folds=3, progress=False, out=tmp_path / "p.json")
    chance = 1 / len(r["classes"])
    assert r["folds"] == 3 and len(r["macro_f1_per_fold"]) == 3 and r["n_subjects"] == 6
    assert chance < r["macro_f1"] <= 1 and 0 < r["accuracy"] <= 1
    assert json.loads((tmp_path / "p.json").read_text())["macro_f1"] == r["macro_f1"]
    with pytest.raises(ZeroharError, match="already exists"):
        probe_backbone(None, data=small_set, n_folds=3, progress=False, out=tmp_path / "p.json")


def test_probe_command_and_bad_input(small_set, tmp_path, capsys):
    assert main(["probe", "--data", str(small_set), "--folds", "2", "--no-progress"]) == 0
    assert "linear probe of the random backbone" in capsys.readouterr().out
    assert main(["probe", "--data", str(small_set), "--folds", "1"]) == 2
    assert main(["probe", "--data", str(small_set), "--sensors", "mag"]) == 2
    assert "no sensor of kind mag" in capsys.readouterr().err
