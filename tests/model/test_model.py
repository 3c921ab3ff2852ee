"""ZeroHARModel: shapes, any sensor layout (masked, order-free), clipping by kind, text side, checkpoints."""

from __future__ import annotations

import json
import logging
import math

import pytest
import torch
import torch.nn.functional as F

from zerohar.data.layout import Sensor, SensorLayout
from zerohar.errors import ZeroharError
from zerohar.losses.contrastive import ContrastiveLoss, inverse_temperature
from zerohar.model.pretrained import export_released
from zerohar.model.zerohar import ModelConfig, ZeroHARModel, file_identity

ENCODERS = ["harnet", "original"]
KINDS = ["acc", "gyro", "acc"]


def make(encoder: str = "harnet", seed: int = 0, **kw) -> ZeroHARModel:
    torch.manual_seed(seed)
    return ZeroHARModel(ModelConfig(encoder=encoder, embed_dim=32, d_model=32, orig_d_model=32, **kw)).eval()


def windows(b: int = 3, s: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3 * s, 150, generator=g)


def context(s: int = 3, seed: int = 1) -> torch.Tensor:
    return F.normalize(torch.randn(s, 384, generator=torch.Generator().manual_seed(seed)), dim=-1)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_shapes_and_normalisation(encoder):
    m = make(encoder)
    x, ctx = windows(), context()
    with torch.no_grad():
        ch = m.encode_channels(x, kinds=KINDS)
        w = m.encode_windows(x, ctx, kinds=KINDS)
        t = m.encode_text(torch.randn(5, 384))
        raw = m.encode_windows(x, ctx, normalize=False, kinds=KINDS)
    assert ch.shape == (3, 9, 32) and w.shape == (3, 32) and t.shape == (5, 32)
    for z in (ch, w, t):
        torch.testing.assert_close(z.norm(dim=-1), torch.ones(z.shape[:-1]))
    torch.testing.assert_close(F.normalize(raw, dim=-1), w)
    assert m(x, ctx, kinds=KINDS).shape == (3, 32) and m(x, task="channels", kinds=KINDS).shape == (3, 9, 32)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_shared_context_equals_per_window_context(encoder):
    m, x, ctx = make(encoder), windows(), context()
    with torch.no_grad():
        torch.testing.assert_close(m.encode_windows(x, ctx, kinds=KINDS),
                                   m.encode_windows(x, ctx.expand(3, -1, -1), kinds=KINDS))


@pytest.mark.parametrize("encoder", ENCODERS)
def test_sensor_order_does_not_matter(encoder):
    m, x, ctx = make(encoder), windows(), context()
    perm = [2, 0, 1]
    xp = x.view(3, 3, 3, 150)[:, perm].reshape(3, 9, 150)
    with torch.no_grad():
        a = m.encode_windows(x, ctx, kinds=KINDS)
        b = m.encode_windows(xp, ctx[perm], kinds=[KINDS[i] for i in perm])
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_absent_sensors_are_ignored(encoder):
    m, x, ctx = make(encoder), windows(), context()
    mask = torch.tensor([[True, True, True], [True, False, True], [False, True, False]])
    garbage = x.clone()
    garbage[1, 3:6] = 50.0
    garbage[2, 0:3] = -7.0
    with torch.no_grad():
        a = m.encode_windows(x, ctx, mask, kinds=KINDS)
        b = m.encode_windows(garbage, ctx, mask, kinds=KINDS)
        # Window 1 without its absent sensor, as a 2-sensor window.
        alone = m.encode_windows(x[1:2, [0, 1, 2, 6, 7, 8]], ctx[[0, 2]], kinds=["acc", "acc"])
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a[1:2], alone, rtol=1e-4, atol=1e-5)


def test_triads_are_encoded_independently_for_stage1():
    m, x = make("harnet"), windows()
    y = x.clone()
    y[:, 3:6] += 1.0  # change sensor 1 only
    with torch.no_grad():
        a, b = m.encode_channels(x, kinds=KINDS), m.encode_channels(y, kinds=KINDS)
    torch.testing.assert_close(a[:, [0, 1, 2, 6, 7, 8]], b[:, [0, 1, 2, 6, 7, 8]])
    assert not torch.allclose(a[:, 3:6], b[:, 3:6])


def test_original_encoder_stage1_is_per_channel_and_context_free():
    m, x = make("original"), windows()
    y = x.clone()
    y[:, 4] *= -2.0
    with torch.no_grad():
        a, b = m.encode_channels(x, kinds=KINDS), m.encode_channels(y, kinds=KINDS)
    keep = [c for c in range(9) if c != 4]
    torch.testing.assert_close(a[:, keep], b[:, keep])
    assert not torch.allclose(a[:, 4], b[:, 4])


@pytest.mark.parametrize("encoder", ENCODERS)
def test_accelerometer_clipped_gyroscope_not(encoder):
    m, ctx = make(encoder), context(2)
    x = windows(2, 2) * 5  # many samples beyond +-3
    layout = SensorLayout((Sensor("acc", "waist", "phone", "g"), Sensor("gyro", "waist", "phone", "rad/s")))
    clipped = x.clone()
    clipped[:, :3] = clipped[:, :3].clamp(-3, 3)
    both = x.clamp(-3, 3)
    with torch.no_grad():
        a = m.encode_windows(x, ctx, kinds=layout)
        torch.testing.assert_close(a, m.encode_windows(clipped, ctx, kinds=layout))
        assert not torch.allclose(a, m.encode_windows(both, ctx, kinds=layout))
        # kinds as names, as an index tensor, per window: the same
        torch.testing.assert_close(a, m.encode_windows(x, ctx, kinds=["acc", "gyro"]))
        torch.testing.assert_close(a, m.encode_windows(x, ctx, kinds=torch.tensor([[0, 1], [0, 1]])))
    unclipped = make(encoder, clip_acc=False)
    with torch.no_grad():
        assert not torch.allclose(unclipped.encode_windows(x, ctx, kinds=layout),
                                  unclipped.encode_windows(clipped, ctx, kinds=layout))


def test_kind_scale_applies_per_kind():
    m = make("harnet", kind_scale={"acc": 1.0, "gyro": 1.0, "mag": 0.5})
    x = windows(2, 1)
    with torch.no_grad():
        torch.testing.assert_close(m.encode_channels(x, kinds=["mag"]), m.encode_channels(0.5 * x, kinds=["gyro"]))


def test_unknown_kind_and_missing_kinds(caplog):
    m = make("harnet")
    with pytest.raises(ZeroharError, match="sensor kind 'baro' is not known to the model: expected one of acc, gyro"):
        m.encode_windows(windows(1, 1), context(1), kinds=["baro"])
    with pytest.raises(ZeroharError, match="2 sensor kinds given for windows with 3 sensors"):
        m.encode_windows(windows(1, 3), context(3), kinds=["acc", "acc"])
    with caplog.at_level(logging.WARNING, logger="zerohar.model.zerohar"):
        with torch.no_grad():
            m.encode_windows(windows(1, 1), context(1))
    assert "not clipped" in caplog.text


def test_bad_shapes_are_clear_errors():
    m = make("harnet")
    with pytest.raises(ZeroharError, match=r"harnet5 backbone takes windows of 150 samples .* the data has 300"):
        m.encode_windows(torch.randn(2, 3, 300), context(1), kinds=["acc"])
    with pytest.raises(ZeroharError, match=r"C a multiple of 3; got \(2, 4, 150\)"):
        m.encode_channels(torch.randn(2, 4, 150))
    with pytest.raises(ZeroharError, match=r"sensor context has shape \(2, 384\), expected \(3, 384\)"):
        m.encode_windows(windows(2, 3), context(2), kinds=KINDS)
    with pytest.raises(ZeroharError, match=r"sensor_mask has shape \(2, 2\), expected \(2, 3\)"):
        m.encode_windows(windows(2, 3), context(3), torch.ones(2, 2, dtype=torch.bool), kinds=KINDS)
    with pytest.raises(ZeroharError, match="a window has no sensor present"):
        m.encode_windows(windows(2, 3), context(3), torch.tensor([[1, 0, 0], [0, 0, 0]]).bool(), kinds=KINDS)
    with pytest.raises(ZeroharError, match="text embeddings have dimension 768, but the model was built for 384"):
        m.encode_text(torch.randn(2, 768))


def test_label_prototypes_are_normalised_means():
    m = make("harnet")
    desc = torch.randn(4, 3, 384)
    protos = m.label_prototypes(desc)
    z = F.normalize(m.text_proj(desc), dim=-1)
    torch.testing.assert_close(protos, F.normalize(z.mean(1), dim=-1))
    torch.testing.assert_close(m.label_prototypes(desc.numpy()), protos)  # text encoders return numpy
    mask = torch.tensor([[1, 1, 1], [1, 0, 0], [1, 1, 0], [0, 1, 1]]).bool()
    masked = m.label_prototypes(desc, mask)
    for lab in range(4):
        want = F.normalize(z[lab, mask[lab]].mean(0), dim=-1)
        torch.testing.assert_close(masked[lab], want)


def test_logit_scale_init_and_clamp():
    m = make("harnet")
    assert m.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    assert inverse_temperature(m.logit_scale, m.cfg.max_logit_scale).item() == pytest.approx(1 / 0.07, rel=1e-5)
    with torch.no_grad():
        m.logit_scale.fill_(math.log(500.0))
    assert inverse_temperature(m.logit_scale, m.cfg.max_logit_scale).item() == pytest.approx(100.0)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_training_step_reaches_every_part(encoder):
    m = make(encoder).train()
    x, ctx = windows(4, 2), context(2)
    protos = m.label_prototypes(torch.randn(3, 2, 384))
    z = m.encode_windows(x, ctx, kinds=["acc", "gyro"])
    loss = ContrastiveLoss()(z, protos, torch.tensor([0, 1, 2, 0]), m.logit_scale)
    loss.backward()
    assert m.logit_scale.grad is not None
    core = m.backbone if encoder == "harnet" else m.original.value
    for part in (m.text_proj, core):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())


@pytest.mark.parametrize("encoder", ENCODERS)
def test_bf16_autocast_close_to_fp32(encoder):
    m, x, ctx = make(encoder), windows(), context()
    with torch.inference_mode():
        ref = m.encode_windows(x, ctx, kinds=KINDS)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = m.encode_windows(x, ctx, kinds=KINDS)
    assert F.cosine_similarity(ref, low.float(), dim=1).min() > 0.98


@pytest.mark.parametrize("encoder", ENCODERS)
def test_save_and_load_round_trip(tmp_path, encoder):
    m, x, ctx = make(encoder, seed=3), windows(), context()
    m.save_pretrained(tmp_path, extra={"stage": "stage1", "text_encoder": "all-MiniLM-L6-v2"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.safetensors"]
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["config"] == m.cfg.to_dict()
    assert meta["extra"]["stage"] == "stage1" and meta["identity"].startswith("sha256:")
    loaded = ZeroHARModel.from_pretrained(tmp_path)
    assert not loaded.training and loaded.metadata["identity"] == meta["identity"]
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_windows(x, ctx, kinds=KINDS), m.encode_windows(x, ctx, kinds=KINDS))
    # Another model gets another identity.
    make(encoder, seed=4).save_pretrained(tmp_path / "other")
    assert json.loads((tmp_path / "other" / "model.json").read_text())["identity"] != meta["identity"]


def test_another_architecture_names_both(tmp_path):
    make("harnet").save_pretrained(tmp_path / "h5")
    want = ModelConfig(encoder="harnet", backbone="harnet10", embed_dim=32, d_model=32, orig_d_model=32)
    with pytest.raises(ZeroharError, match=r"h5 holds a zerohar harnet5 encoder.* model, but the config asks for a "
                                           r"zerohar harnet10 encoder.* \(they differ in backbone\)"):
        ZeroHARModel.from_pretrained(tmp_path / "h5", want)
    # Non-architecture settings may differ: they come from the given config.
    same = ModelConfig(encoder="harnet", embed_dim=32, d_model=32, orig_d_model=32, dropout=0.3)
    assert ZeroHARModel.from_pretrained(tmp_path / "h5", same).cfg.dropout == 0.3
    (tmp_path / "pre").mkdir()
    (tmp_path / "pre" / "model.safetensors").write_bytes(b"")
    (tmp_path / "pre" / "model.json").write_text(json.dumps({"format": "zerohar-harnet-backbone",
                                                             "architecture": "harnet5 backbone"}))
    with pytest.raises(ZeroharError, match=r"model\.json describes a zerohar-harnet-backbone checkpoint "
                                           r"\(harnet5 backbone\), not a zerohar model"):
        ZeroHARModel.from_pretrained(tmp_path / "pre")


def test_weights_of_another_architecture_are_refused(tmp_path):
    make("harnet").save_pretrained(tmp_path / "a")
    make("original").save_pretrained(tmp_path / "b")
    # b's json with a's weights (identity fixed up): the weights do not fit the described architecture.
    (tmp_path / "b" / "model.safetensors").write_bytes((tmp_path / "a" / "model.safetensors").read_bytes())
    meta = json.loads((tmp_path / "b" / "model.json").read_text())
    meta["identity"] = file_identity(tmp_path / "b" / "model.safetensors")
    (tmp_path / "b" / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ZeroharError, match=r"holds weights of another architecture than zerohar original encoder"):
        ZeroHARModel.from_pretrained(tmp_path / "b")


def test_corrupt_or_missing_files(tmp_path):
    with pytest.raises(ZeroharError, match=r"model\.json does not exist: expected a zerohar model directory"):
        ZeroHARModel.from_pretrained(tmp_path)
    make("harnet").save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 3])
    with pytest.raises(ZeroharError, match=r"model\.safetensors does not match the identity in .*model\.json"):
        ZeroHARModel.from_pretrained(tmp_path)
    meta = json.loads((tmp_path / "model.json").read_text())
    del meta["identity"]  # without the identity check, the reader itself must refuse the truncated file
    (tmp_path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ZeroharError, match=r"model\.safetensors is not a readable safetensors file"):
        ZeroHARModel.from_pretrained(tmp_path)
    (tmp_path / "model.json").write_text('{"format": "zerohar-model", "config": {')
    with pytest.raises(ZeroharError, match=r"model\.json is not valid JSON"):
        ZeroHARModel.from_pretrained(tmp_path)


def test_config_is_strict():
    with pytest.raises(ZeroharError, match=r"unknown model settings \['layers'\]"):
        ModelConfig.from_dict({"layers": 3})
    with pytest.raises(ZeroharError, match="encoder is 'lstm', expected one of harnet, original"):
        ModelConfig(encoder="lstm")
    with pytest.raises(ZeroharError, match="backbone is 'harnet7'"):
        ModelConfig(backbone="harnet7")
    with pytest.raises(ZeroharError, match=r"d_model \(30\) must be divisible by n_heads \(4\)"):
        ModelConfig(d_model=30)
    assert ModelConfig.from_dict(ModelConfig(backbone="harnet10").to_dict()).window == 300


def test_init_backbone_from_released_file(tmp_path):
    m = make("harnet")
    src = make("harnet", seed=9).backbone
    export_released(src, tmp_path / "w.mdl")
    m.init_backbone(tmp_path / "w.mdl")
    assert all(torch.equal(a, b) for a, b in zip(m.backbone.state_dict().values(), src.state_dict().values()))
    with pytest.raises(ZeroharError, match="the original encoder has no HARNet backbone"):
        make("original").init_backbone(tmp_path / "w.mdl")
