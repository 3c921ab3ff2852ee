"""What training refuses to start from: a class without descriptions, a partial backbone (unless asked for)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from helpers import tiny_cfg

from zerohar.errors import ZeroharError
from zerohar.model.harnet import HARNet
from zerohar.model.pretrained import export_released
from zerohar.text.labels import template_descriptions
from zerohar.train import stage2
from zerohar.train.base import build_zerohar_model
from zerohar.train.distributed import Dist


def test_a_class_without_descriptions_is_refused_not_templated(monkeypatch):
    real = stage2.label_texts

    def without_standing(labels, **kw):
        texts = real(labels, **kw)
        if kw.get("label_text") != "names":
            texts["standing"] = template_descriptions("standing")  # as if no file described it
        return texts

    monkeypatch.setattr(stage2, "label_texts", without_standing)
    with pytest.raises(ZeroharError, match=r"class 'standing' has no descriptions in .*metadata/labels/hapt\.json: "
                                           r"write them \(`zerohar describe`\) and pass --descriptions FILE"):
        stage2.Stage2Task(tiny_cfg("stage2"), Dist())
    task = stage2.Stage2Task(tiny_cfg("stage2", label_text="names"), Dist())  # names: no descriptions needed
    assert "standing" in task.text_labels


def test_a_partial_backbone_is_an_error_unless_asked_for(tmp_path):
    path = export_released(HARNet("harnet5"), tmp_path / "init.mdl")
    state = torch.load(path, weights_only=True)
    del state["module.feature_extractor.layer5.0.weight"]
    torch.save(state, path)
    cfg = tiny_cfg("stage1", model={"encoder": "harnet"})
    with pytest.raises(ZeroharError, match=r"init\.mdl lacks 1 of the 131 harnet5 tensors .* ask for a partial load "
                                           r"\(train\.partial_backbone: true\)"):
        build_zerohar_model(cfg, str(path))
    ok = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, partial_backbone=True))
    assert build_zerohar_model(ok, str(path)).backbone is not None
