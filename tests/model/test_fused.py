"""The fused bf16 inference backbone and the precision rule: equal to HARNet in fp32, close in bf16."""

from __future__ import annotations

import pytest
import torch
from helpers import randomise_bn
from torch import nn

from zerohar.errors import ZeroharError
from zerohar.model import fused as fused_mod
from zerohar.model import precision, tuning
from zerohar.model.fused import FUSED_IMPLEMENTATIONS, FusedHARNet, agreement, check_windows, fused_backbone
from zerohar.model.harnet import HARNet
from zerohar.model.precision import resolve_precision

needs_bf16 = pytest.mark.skipif(not precision.cpu_has_native_bf16(), reason="the CPU has no native bf16")


def test_resolve_precision(monkeypatch):
    assert resolve_precision("fp32") == "fp32"
    assert resolve_precision("bf16") == "bf16"
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setenv(tuning.TUNE_ENV, "off")  # the flags alone
    assert resolve_precision("auto") == "bf16"
    monkeypatch.setenv(tuning.TUNE_ENV, "on")  # native, but timed slower than fp32 here: fp32
    monkeypatch.setattr(tuning, "backbone_speeds", lambda bf16, refresh=False: {"fp32 fused": 750, "bf16 fused": 550})
    assert resolve_precision("auto") == "fp32"
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto") == "fp32"


def test_resolve_precision_rejects_unknown():
    with pytest.raises(ZeroharError, match=r"precision 'fp16' is not known: expected one of auto, bf16, fp32"):
        resolve_precision("fp16")


def test_native_bf16_follows_cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(next(ln for ln in f if ln.startswith("flags")).split(":", 1)[1].split())
    except (OSError, StopIteration):
        pytest.skip("no /proc/cpuinfo flags on this system")
    if not flags & {"amx_bf16", "avx512_bf16"}:
        assert not precision.cpu_has_native_bf16()
    elif torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        assert precision.cpu_has_native_bf16()


@pytest.mark.parametrize("variant", ["harnet5", "harnet10"])
def test_fused_fp32_equals_harnet(variant):
    torch.manual_seed(1)
    net = randomise_bn(HARNet(variant), seed=2).eval()
    x = torch.randn(5, 3, net.window)
    with torch.no_grad():
        ref = net(x)
        got = FusedHARNet(net, torch.float32)(x)
    assert got.shape == ref.shape == (5, net.out_dim)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


def test_fused_clips_like_harnet():
    torch.manual_seed(5)
    net = randomise_bn(HARNet("harnet5", clip_input=True)).eval()
    x = torch.randn(3, 3, 150) * 4  # beyond +-3 g
    with torch.no_grad():
        torch.testing.assert_close(FusedHARNet(net, torch.float32)(x), net(x), rtol=1e-4, atol=1e-4)


@needs_bf16
def test_fused_bf16_close_to_fp32():
    torch.manual_seed(1)
    net = randomise_bn(HARNet("harnet5")).eval()
    x = torch.randn(16, 3, 150)
    with torch.no_grad():
        ref, got = net(x), FusedHARNet(net, torch.bfloat16)(x)
    assert got.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(ref, got, dim=1).min() > 0.999


def test_fused_fp32_layers_keeps_leading_layers_in_fp32():
    torch.manual_seed(1)
    net = randomise_bn(HARNet("harnet5")).eval()
    x = torch.randn(4, 3, 150)
    with torch.no_grad():
        ref = net(x)
        every = FusedHARNet(net, torch.bfloat16, fp32_layers=5)  # all five layers in fp32: the fp32 network
        torch.testing.assert_close(every(x), ref, rtol=1e-4, atol=1e-4)
        dtypes = [layer[-1] for layer in FusedHARNet(net, torch.bfloat16, fp32_layers=1).layers]
    assert dtypes == [torch.float32] + [torch.bfloat16] * 4


def test_fused_backbone_cache_follows_weights():
    torch.manual_seed(3)
    net = randomise_bn(HARNet("harnet5")).eval()
    first = fused_backbone(net, "fp32")
    assert first is not None and fused_backbone(net, "fp32") is first
    x = torch.randn(3, 3, 150)
    with torch.no_grad():
        net.layer1[0].weight.mul_(1.5)  # training changed the weights in place
        fresh = fused_backbone(net, "fp32")
        assert fresh is not first
        torch.testing.assert_close(fresh(x), net(x), rtol=1e-4, atol=1e-4)


@needs_bf16
def test_fused_backbone_cache_keeps_each_implementation():
    torch.manual_seed(4)
    net = randomise_bn(HARNet("harnet5")).eval()
    fused, every = (fused_backbone(net, "bf16", FUSED_IMPLEMENTATIONS[k]) for k in ("fused", "fused-all"))
    assert fused is not None and every is not None and fused is not every
    assert [layer[-1] for layer in every.layers] == [torch.bfloat16] * len(every.layers)
    assert fused.layers[0][-1] == torch.float32 and fused_backbone(net, "bf16") is fused
    x = check_windows(16, 150)
    with torch.no_grad():  # both close to the fp32 network on gravity windows
        ref = net(x)
        for f in (fused, every):
            assert torch.nn.functional.cosine_similarity(f(x).float(), ref, dim=1).min() > 0.999


def test_fused_backbone_rejects_other_modules():
    other = nn.Sequential(nn.Conv1d(3, 8, 5), nn.AdaptiveAvgPool1d(1), nn.Flatten())
    assert fused_backbone(other, "bf16") is None
    with pytest.raises(TypeError):
        FusedHARNet(other)


def test_check_windows_carry_gravity_and_movement():
    x = check_windows(n=6, window=150)
    assert x.shape == (6, 3, 150)
    means = x.mean(-1)  # (6, 3)
    for i in range(6):  # 1 g on one axis (a different one per window), about 0 on the others
        assert abs(means[i, i % 3].abs().item() - 1.0) < 0.05
        assert means[i].abs().sort().values[:2].max() < 0.05
    assert (x.std(-1) > 0.003).all()  # movement on every axis
    assert (means[:, :].abs().max(1).values > 0.95).all() and x.abs().max() < 3.0  # inside the +-3 g clip


class _DropsOffset(nn.Module):
    """A broken fast path: right on zero-mean input, wrong where a window carries an offset (gravity)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x):
        return self.module(x - x.mean(-1, keepdim=True))


def test_self_check_uses_gravity_windows(monkeypatch):
    """The fused backbone's self-check runs on windows with a 1 g offset, which catch a path that mishandles the
    offset; zero-mean noise, the check's earlier input, lets that path through."""
    torch.manual_seed(0)
    net = randomise_bn(HARNet("harnet5"), seed=10).eval()
    broken = _DropsOffset(FusedHARNet(net, torch.float32))
    noise = torch.randn(4, 3, 150, generator=torch.Generator().manual_seed(0))
    assert agreement(net, broken, noise) > 0.999  # zero-mean noise: passes
    assert agreement(net, broken) < 0.99  # the check windows: caught
    assert agreement(net, FusedHARNet(net, torch.float32)) > 0.9999

    seen = []
    real = fused_mod.agreement
    monkeypatch.setattr(fused_mod, "agreement", lambda n, c, x=None: seen.append(c) or real(n, c, x))
    monkeypatch.setattr(fused_mod, "FusedHARNet", lambda n, dt, fp32_layers: broken)
    assert fused_backbone(net, "fp32") is None  # refused: the caller runs the plain module
    assert seen == [broken]
