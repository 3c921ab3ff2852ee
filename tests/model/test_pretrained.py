"""Backbone weights: released-format files, zerohar checkpoints, export, verification, bad files."""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess

import pytest
import torch

import zerohar.model.pretrained as pretrained
from zerohar.errors import ZeroharError
from zerohar.model.harnet import VARIANTS, HARNet
from zerohar.model.pretrained import (
    export_released,
    known_release,
    load_backbone,
    released_blob_id,
    save_backbone,
)
from zerohar.model.zerohar import ModelConfig, ZeroHARModel


def random_backbone(variant: str, seed: int = 0) -> HARNet:
    torch.manual_seed(seed)
    net = HARNet(variant)
    for m in net.modules():  # non-trivial BatchNorm state, so outputs depend on the buffers too
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.num_batches_tracked.fill_(1234)
    return net.eval()


def write_released(net: HARNet, path) -> dict:
    """A file shaped like the released checkpoints: DataParallel `module.` keys, classifier, pretext heads."""
    state = {f"module.feature_extractor.{k}": v.clone() for k, v in net.state_dict().items()}
    d = net.out_dim
    state.update({
        "module.classifier.linear1.weight": torch.randn(512, d), "module.classifier.linear1.bias": torch.randn(512),
        "module.classifier.linear2.weight": torch.randn(2, 512), "module.classifier.linear2.bias": torch.randn(2),
        "module.aot_h.linear1.weight": torch.randn(512, d), "module.aot_h.linear1.bias": torch.randn(512),
        "module.permute_h.linear1.weight": torch.randn(512, d), "module.permute_h.linear1.bias": torch.randn(512),
        "module.time_w_h.linear1.weight": torch.randn(512, d), "module.time_w_h.linear1.bias": torch.randn(512),
    })
    torch.save(state, path)
    return state


@pytest.mark.parametrize("variant", ["harnet5", "harnet10"])
def test_released_format_loads_with_no_missing_keys_and_same_outputs(tmp_path, caplog, variant):
    src = random_backbone(variant)
    path = tmp_path / "mtl_best.mdl"
    write_released(src, path)
    with caplog.at_level(logging.INFO, logger="zerohar.model.pretrained"):
        net = load_backbone(path, variant).eval()
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("loaded"))
    assert "missing: none; unexpected: none" in line
    assert "aot_h, classifier, permute_h, time_w_h" in line
    assert "not a known release" in line
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), src.state_dict().values()))
    x = torch.randn(2, 3, VARIANTS[variant])
    with torch.no_grad():
        assert torch.equal(net(x), src(x))


def test_export_released_round_trip_and_no_overwrite(tmp_path):
    src = random_backbone("harnet5", seed=3)
    path = export_released(src, tmp_path / "zerohar_5.mdl")
    state = torch.load(path, weights_only=True)
    assert set(state) == {f"module.feature_extractor.{k}" for k in src.state_dict()}
    net = load_backbone(path, "harnet5").eval()
    x = torch.randn(2, 3, 150)
    with torch.no_grad():
        assert torch.equal(net(x), src(x))
    with pytest.raises(ZeroharError, match=r"zerohar_5\.mdl already exists; pass --force"):
        export_released(src, path)
    export_released(random_backbone("harnet5", seed=4), path, force=True)
    assert not torch.equal(torch.load(path, weights_only=True)["module.feature_extractor.layer1.0.weight"],
                           state["module.feature_extractor.layer1.0.weight"])
    assert [p.name for p in tmp_path.iterdir()] == ["zerohar_5.mdl"]  # no temporary files left


def test_wrong_variant_names_file_and_both_architectures(tmp_path):
    path = tmp_path / "h10.mdl"
    write_released(random_backbone("harnet10"), path)
    with pytest.raises(ZeroharError, match=r"h10\.mdl holds a harnet10 backbone, but the model is harnet5"):
        load_backbone(path, "harnet5")
    # harnet10 and harnet30 share every weight shape; the downsample kernels tell them apart.
    with pytest.raises(ZeroharError, match=r"h10\.mdl holds a harnet10 backbone, but the model is harnet30"):
        load_backbone(path, "harnet30")
    assert load_backbone(path, None).variant == "harnet10"


def test_corrupt_and_truncated_files(tmp_path):
    good = tmp_path / "good.mdl"
    write_released(random_backbone("harnet5"), good)
    truncated = tmp_path / "truncated.mdl"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ZeroharError, match=r"truncated\.mdl is not a readable PyTorch state_dict \(corrupt"):
        load_backbone(truncated, "harnet5")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ZeroharError, match=r"garbage\.pt is not a readable PyTorch state_dict"):
        load_backbone(garbage, "harnet5")
    st = tmp_path / "bad.safetensors"
    st.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    with pytest.raises(ZeroharError, match=r"bad\.safetensors is not a readable safetensors file"):
        load_backbone(st, "harnet5")


class NotATensor:
    pass


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save({"feature_extractor.layer1.0.weight": NotATensor()}, path)
    with pytest.raises(ZeroharError, match=r"pickled\.pt .*holds objects other than tensors"):
        load_backbone(path, "harnet5")


def test_missing_file_unknown_suffix_and_foreign_state_dict(tmp_path):
    with pytest.raises(ZeroharError, match=r"backbone checkpoint .*nope\.mdl does not exist"):
        load_backbone(tmp_path / "nope.mdl", "harnet5")
    odd = tmp_path / "weights.bin"
    odd.write_bytes(b"x")
    with pytest.raises(ZeroharError, match=r"weights\.bin has an unknown suffix '\.bin'"):
        load_backbone(odd, "harnet5")
    foreign = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(2, 2)}, foreign)
    with pytest.raises(ZeroharError, match=r"resnet\.pth holds no HARNet feature-extractor weights"):
        load_backbone(foreign, "harnet5")


def test_partial_checkpoint_reports_missing_keys(tmp_path, caplog):
    path = tmp_path / "partial.pt"
    state = write_released(random_backbone("harnet5"), path)
    del state["module.feature_extractor.layer5.0.weight"]
    torch.save(state, path)
    with pytest.raises(ZeroharError, match=r"partial\.pt lacks 1 of the 131 harnet5 tensors \(layer5\.0\.weight, "
                                           r"\.\.\.\), which would keep their random initialisation"):
        load_backbone(path, "harnet5")  # a partial load is an error unless asked for
    with caplog.at_level(logging.INFO, logger="zerohar.model.pretrained"):
        load_backbone(path, "harnet5", partial=True)
    text = caplog.text
    assert "missing: layer5.0.weight;" in text
    assert "lacks 1 of the 131 harnet5 tensors" in text


def test_zerohar_safetensors_checkpoint_and_run_directory(tmp_path):
    src = random_backbone("harnet5", seed=5)
    path = save_backbone(src, tmp_path / "backbone.safetensors", extra={"epochs": 3})
    x = torch.randn(2, 3, 150)
    with torch.no_grad():
        assert torch.equal(load_backbone(path, None).eval()(x), src(x))
        # A run directory holding a whole ZeroHAR model: its `backbone.*` weights.
        model = ZeroHARModel(ModelConfig())
        model.backbone.load_state_dict(src.state_dict())
        model.save_pretrained(tmp_path / "run")
        assert torch.equal(load_backbone(tmp_path / "run", "harnet5").eval()(x), src(x))


def test_blob_id_equals_git_hash_object(tmp_path, monkeypatch, caplog):
    path = tmp_path / "mtl_5_best.mdl"
    write_released(random_backbone("harnet5"), path)
    data = path.read_bytes()
    expected = hashlib.sha1(b"blob " + str(len(data)).encode() + b"\0" + data).hexdigest()
    assert released_blob_id(path) == expected
    if shutil.which("git"):
        assert released_blob_id(path) == subprocess.run(
            ["git", "hash-object", str(path)], capture_output=True, text=True, check=True
        ).stdout.strip()
    assert known_release(path) is None
    # Pretend this file is the published harnet5 release: it is reported, and refused as another variant.
    monkeypatch.setitem(pretrained.RELEASED_BLOB_IDS, "harnet5", expected)
    assert known_release(path) == "harnet5"
    with caplog.at_level(logging.INFO, logger="zerohar.model.pretrained"):
        load_backbone(path, "harnet5")
    assert "known release mtl_5_best.mdl" in caplog.text
    with pytest.raises(ZeroharError, match=r"is the released harnet5 checkpoint \(mtl_5_best\.mdl\), but the model "
                                           r"is harnet10"):
        load_backbone(path, "harnet10")


def test_hub_failure_points_to_a_local_file(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torch.hub, "load", offline)
    with pytest.raises(ZeroharError, match=r"could not fetch harnet10 from torch\.hub .*local file instead "
                                           r"\(--backbone-weights mtl_best\.mdl\)"):
        load_backbone("hub", "harnet10")


def test_random_init_needs_a_variant():
    assert load_backbone(None, "harnet30").variant == "harnet30"
    with pytest.raises(ZeroharError, match="a HARNet variant .* is needed without a checkpoint file"):
        load_backbone(None, None)
