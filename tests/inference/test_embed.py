"""Window embeddings on the fast inference path: batching, streams, layouts, and bf16 vs fp32 agreement."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import randomise_bn
from torch import nn

from zerohar.data.layout import Sensor, SensorLayout
from zerohar.data.prepare import load_windowset
from zerohar.errors import ZeroharError
from zerohar.inference import embed
from zerohar.inference.embed import MicroBatched, embed_backbone, embed_windows
from zerohar.inference.plan import InferencePlan
from zerohar.model import precision
from zerohar.model.harnet import HARNet
from zerohar.model.zerohar import ModelConfig, ZeroHARModel
from zerohar.text.encoder import get_text_encoder
from zerohar.text.sensors import sensor_description

needs_bf16 = pytest.mark.skipif(not precision.cpu_has_native_bf16(), reason="the CPU has no native bf16")


def _calibrate_bn(model: ZeroHARModel, X: np.ndarray, kinds) -> None:
    """Running BN statistics from data (a cumulative average), so a random network has realistic activations."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        for a in range(0, len(X), 128):
            model.encode_channels(torch.from_numpy(X[a : a + 128]), kinds=kinds)
    model.eval()


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = ZeroHARModel(ModelConfig())
    randomise_bn(m.backbone)
    return m.eval()


# ---------------------------------------------------------------------------------------------- the plan's backbone
def test_micro_batched_equals_one_call():
    torch.manual_seed(4)
    net = randomise_bn(HARNet("harnet5")).eval()
    x = torch.randn(7, 3, 150)
    with torch.no_grad():
        torch.testing.assert_close(MicroBatched(net, 3)(x), net(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch", [256, 500, 1])
@pytest.mark.parametrize("n", [0, 1, 63, 255, 256, 257, 300, 1000])
def test_batches_are_the_batch_size_then_halving_powers_of_two(n, batch):
    """A model meets a handful of batch shapes whatever the callers' sizes (the process keeps freed buffers of
    every shape apart: calls of every size grew it without bound), the windows in their order."""
    sizes = embed.batch_sizes(n, batch)
    assert sum(sizes) == n and sizes == sorted(sizes, reverse=True)
    rest = [s for s in sizes if s != batch]
    assert all(s & (s - 1) == 0 and s < batch for s in rest) and len(set(rest)) == len(rest)
    X = np.arange(n, dtype=np.float32).reshape(n, 1, 1)
    got = list(embed._batches([X[: n // 3], X[n // 3 :]], batch))  # a stream of two chunks
    assert np.array_equal(torch.cat(got).numpy() if got else X, X)
    assert embed.batch_sizes(300, 256) == [256, 32, 8, 4]


@pytest.mark.parametrize("kind", ["fused", "plain"])
def test_embed_windows_runs_the_planned_backbone(model, monkeypatch, kind):
    """The plan picks the backbone: a fused one only where it says so, in calls of its batch size."""
    built, calls = [], []
    real = embed.fused_backbone

    def spy(net, prec, fp32_layers):
        built.append(prec)
        fused = real(net, prec, fp32_layers)  # checked against the plain backbone on a few windows when built
        calls.clear()
        return fused

    monkeypatch.setattr(embed, "fused_backbone", spy)
    monkeypatch.setattr(embed, "inference_plan", lambda p, d=None: InferencePlan("fp32", kind, 4, "avx2"))
    hook = model.backbone.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    try:
        X, ctx = _windows(5)
        got = embed_windows(model, X, ctx, precision="auto", kinds=["acc", "gyro"])
    finally:
        hook.remove()
    with torch.no_grad():
        ref = model.encode_windows(torch.from_numpy(X), torch.from_numpy(ctx), kinds=["acc", "gyro"]).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
    assert built == (["fp32"] if kind == "fused" else [])
    assert calls == ([] if kind == "fused" else [4, 4, 2])  # 10 triads in calls of at most 4


def test_embed_backbone_fp32_is_the_plain_module():
    torch.manual_seed(4)
    net = randomise_bn(HARNet("harnet5")).train()
    x = np.random.default_rng(0).normal(size=(7, 3, 150)).astype(np.float32)
    got = embed_backbone(net, x, batch_size=3, precision="fp32")
    assert net.training  # mode restored
    net.eval()
    with torch.no_grad():
        np.testing.assert_allclose(got, net(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-5)
    assert embed_backbone(net, x[:0], precision="fp32").shape == (0, 512)


# ---------------------------------------------------------------------------------------------- embed_windows
def _windows(n: int, s: int = 2, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3 * s, 150)).astype(np.float32), rng.normal(size=(s, 384)).astype(np.float32)


def test_embed_windows_fp32_equals_encode_windows(model):
    X, ctx = _windows(9)
    got = embed_windows(model, X, ctx, precision="fp32", batch_size=4, kinds=["acc", "gyro"])
    with torch.no_grad():
        ref = model.encode_windows(torch.from_numpy(X), torch.from_numpy(ctx), kinds=["acc", "gyro"]).numpy()
    assert got.shape == (9, model.cfg.embed_dim) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)


def test_embed_windows_stream_equals_array(model):
    X, ctx = _windows(10)
    whole = embed_windows(model, X, ctx, precision="bf16", batch_size=8, kinds=["acc", "gyro"])
    stream = embed_windows(model, iter([X[:3], X[3:10]]), ctx, precision="bf16", batch_size=4,
                           kinds=["acc", "gyro"])
    np.testing.assert_allclose(stream, whole, rtol=1e-5, atol=1e-5)


def test_embed_windows_leaves_model_unchanged(model):
    X, ctx = _windows(4)
    backbone = model.backbone
    model.train()
    try:
        embed_windows(model, X, ctx, precision="bf16", kinds=["acc", "gyro"])
        assert model.training and model.backbone is backbone
    finally:
        model.eval()


def test_embed_windows_sensor_mask(model):
    X, ctx = _windows(6)
    mask = np.ones((6, 2), bool)
    mask[::2, 1] = False
    got = embed_windows(model, X, ctx, precision="fp32", sensor_mask=mask, kinds=["acc", "gyro"])
    with torch.no_grad():
        ref = model.encode_windows(torch.from_numpy(X), torch.from_numpy(ctx), torch.from_numpy(mask),
                                   kinds=["acc", "gyro"]).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(ZeroharError, match="sensor_mask needs the windows as one array"):
        embed_windows(model, iter([X]), ctx, sensor_mask=mask)


def test_embed_windows_with_layout_uses_sensor_descriptions(model):
    layout = SensorLayout((Sensor("acc", "left wrist", "smartwatch", "g"),))
    X, _ = _windows(3, s=1)
    ctx = get_text_encoder().encode([sensor_description(s) for s in layout.sensors], progress=False)
    by_layout = embed_windows(model, X, layout, precision="fp32")
    by_context = embed_windows(model, X, ctx, precision="fp32", kinds=layout)
    np.testing.assert_allclose(by_layout, by_context, rtol=1e-5, atol=1e-6)


def test_embed_windows_bad_input(model):
    X, ctx = _windows(2)
    with pytest.raises(ZeroharError, match="batch size must be at least 1, found 0"):
        embed_windows(model, X, ctx, batch_size=0)
    with pytest.raises(ZeroharError, match="windows must be an array"):
        embed_windows(model, 3.0, ctx)


def test_fused_all_that_fails_its_check_runs_fused(monkeypatch):
    """The plan's "fused-all" falls back to "fused" (not to autocast) where its self-check refuses it."""
    net = HARNet("harnet5").eval()
    fused = nn.Identity()
    asked = []

    def built(n, prec, fp32_layers):
        asked.append(fp32_layers)
        return None if fp32_layers == 0 else fused

    monkeypatch.setattr(embed, "fused_backbone", built)
    run, autocast = embed.plan_backbone(net, InferencePlan("bf16", "fused-all", 0, "native-bf16"), torch.device("cpu"))
    assert run is fused and not autocast and asked == [0, 1]
    asked.clear()
    run, autocast = embed.plan_backbone(net, InferencePlan("bf16", "fused", 0, "native-bf16"), torch.device("cpu"))
    assert run is fused and asked == [1]


def test_original_encoder_takes_the_generic_path():
    torch.manual_seed(0)
    m = ZeroHARModel(ModelConfig(encoder="original")).eval()
    X, ctx = _windows(3)
    got = embed_windows(m, X, ctx, precision="fp32", kinds=["acc", "gyro"])
    with torch.no_grad():
        ref = m.encode_windows(torch.from_numpy(X), torch.from_numpy(ctx), kinds=["acc", "gyro"]).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------- bf16 vs fp32 on HAPT
def _hapt_agreement(n_windows: int | None) -> float:
    """Share of HAPT windows whose nearest of 12 fixed prototypes is the same in bf16 and in fp32.

    A numerical-equivalence check of the two paths, not an accuracy claim. The model has random weights (with
    BatchNorm statistics calibrated on the data, so activations have realistic scales), and the prototypes
    are the 12 class centroids of the fp32 embeddings, as label prototypes are centroids of descriptions.
    (Random directions in the 256-d space would put most windows within bf16's rounding of a tie between two
    prototypes and measure the rounding, not its effect on labels.)
    """
    try:
        ws = load_windowset("hapt")
    except ZeroharError as e:
        pytest.skip(f"no HAPT windows: {e}")
    rng = np.random.default_rng(0)
    idx = np.flatnonzero(ws.y >= 0)
    if n_windows is not None:
        idx = np.sort(rng.choice(idx, size=min(n_windows, len(idx)), replace=False))
    X, y = ws.X[idx], ws.y[idx]
    torch.manual_seed(0)
    model = ZeroHARModel(ModelConfig())
    _calibrate_bn(model, X[:512], ws.layout)
    ctx = rng.normal(size=(ws.layout.n_sensors, 384)).astype(np.float32)
    fp32 = embed_windows(model, X, ctx, precision="fp32", kinds=ws.layout)
    bf16 = embed_windows(model, X, ctx, precision="bf16", kinds=ws.layout)
    protos = np.stack([fp32[y == c].mean(0) for c in np.unique(y)])  # (12, E)
    protos /= np.linalg.norm(protos, axis=1, keepdims=True)
    a, b = (fp32 @ protos.T).argmax(1), (bf16 @ protos.T).argmax(1)
    assert len(np.unique(a)) >= 6  # not trivial: the windows spread over many prototypes
    return float((a == b).mean())


@needs_bf16
def test_bf16_labels_agree_with_fp32_on_hapt():
    assert _hapt_agreement(800) >= 0.99


@pytest.mark.slow
@needs_bf16
def test_bf16_labels_agree_with_fp32_on_all_hapt_windows():
    assert _hapt_agreement(None) >= 0.99
