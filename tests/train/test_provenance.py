"""Provenance: every run records what it saw, and an init that saw the fold's unseen classes or the run's test
subjects is refused unless --allow-transductive-init (then stamped into the run)."""

from __future__ import annotations

import json

import pytest
from helpers import tiny_cfg

from zerohar.errors import ZeroharError
from zerohar.train.loop import export_backbone, train_stage
from zerohar.train.provenance import check_inits, merge_saw, saw_of


@pytest.fixture(scope="module")
def fold2_stage1(tmp_path_factory):
    """A Stage I run of fold 2: it trained on walking, sitting, ... which fold 1 holds out."""
    return train_stage("stage1", tiny_cfg("stage1", data={"fold": "fold2"}), tmp_path_factory.mktemp("p") / "s1f2",
                       progress=False)


def test_a_run_records_what_it_saw(fold2_stage1):
    meta = json.loads((fold2_stage1 / "model.json").read_text())["extra"]
    saw = meta["saw"]["hapt"]
    assert "walking" in saw["classes"] and "standing" not in saw["classes"]  # fold2 holds out standing
    assert set(saw["subjects"]) == set(meta["subjects"]["train"]) | set(meta["subjects"]["val"])
    assert saw_of(fold2_stage1) == meta["saw"] and meta["transductive_init"] == []


def test_an_init_that_saw_the_unseen_classes_is_refused(fold2_stage1, tmp_path):
    cfg = tiny_cfg("stage2", data={"fold": "fold1"})
    cfg.init = str(fold2_stage1)
    with pytest.raises(ZeroharError, match=r"--stage1 .*s1f2 was trained on hapt's classes \[.*'walking'.*\], "
                                           r"unseen in this fold; .*--allow-transductive-init"):
        train_stage("stage2", cfg, tmp_path / "s2", progress=False)
    assert not (tmp_path / "s2").exists()
    cfg.allow_transductive_init = True
    out = train_stage("stage2", cfg, tmp_path / "s2", progress=False)
    meta = json.loads((out / "model.json").read_text())["extra"]
    assert meta["transductive_init"] and "unseen in this fold" in meta["transductive_init"][0]
    assert "walking" in meta["saw"]["hapt"]["classes"]  # what the init saw is part of what the model saw


def test_an_exported_backbone_keeps_its_provenance(tmp_path):
    pt = train_stage("pretrain", tiny_cfg("pretrain"), tmp_path / "pt", progress=False)  # fold None: every class
    mdl = export_backbone(pt, tmp_path / "all.mdl")
    assert "sitting" in saw_of(mdl)["hapt"]["classes"]
    with pytest.raises(ZeroharError, match=r"--backbone-weights .*all\.mdl was trained on hapt's classes"):
        check_inits([("--backbone-weights", str(mdl))], "hapt", ["sitting", "walking"], [], allow=False)
    cfg = tiny_cfg("stage1", model={"encoder": "harnet"})
    cfg.init = str(mdl)
    with pytest.raises(ZeroharError, match="unseen in this fold"):
        train_stage("stage1", cfg, tmp_path / "s1", progress=False)
    # pretraining on the fold's seen classes only is accepted
    pt_cfg = tiny_cfg("pretrain")
    pt_cfg.data.fold = "fold1"  # pretraining without fold1's unseen classes
    pt1 = train_stage("pretrain", pt_cfg, tmp_path / "pt1", progress=False)
    assert "sitting" not in saw_of(pt1)["hapt"]["classes"]
    cfg.init = str(pt1)
    train_stage("stage1", cfg, tmp_path / "s1", progress=False)


def test_test_subjects_and_unknown_provenance(tmp_path, caplog):
    saw = {"hapt": {"classes": ["walking"], "subjects": ["01", "02"]}}
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "model.json").write_text(json.dumps({"extra": {"saw": saw}}))
    with pytest.raises(ZeroharError, match=r"subjects \['02'\], held out for test here"):
        check_inits([("--stage1", str(tmp_path / "r"))], "hapt", [], ["02", "03"], allow=False)
    # another dataset's classes and subjects are not this fold's
    assert check_inits([("--stage1", str(tmp_path / "r"))], "other", ["walking"], ["02"], allow=False) == (saw, [])
    released = tmp_path / "mtl_best.mdl"
    released.write_bytes(b"x")
    with caplog.at_level("WARNING"):
        assert saw_of(released) is None
    assert "no zerohar provenance" in caplog.text
    assert merge_saw(saw, {"hapt": {"classes": ["lying"], "subjects": ["09"]}})["hapt"] == {
        "classes": ["lying", "walking"], "subjects": ["01", "02", "09"]}
