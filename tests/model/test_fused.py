"""The fused bf16 inference backbone and the precision rule: equal to HARNet in fp32, close in bf16."""

from __future__ import annotations

import pytest
import torch
from helpers import randomise_bn
from torch import nn

from zerohar.errors import ZeroharError
from zerohar.model import precision
from zerohar.model.fused import FusedHARNet, fused_backbone
from zerohar.model.harnet import HARNet
from zerohar.model.precision import resolve_precision

needs_bf16 = pytest.mark.skipif(not precision.cpu_has_native_bf16(), reason="the CPU has no native bf16")


def test_resolve_precision(monkeypatch):
    assert resolve_precision("fp32") == "fp32"
    assert resolve_precision("bf16") == "bf16"
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto") == "bf16"
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


def test_fused_backbone_rejects_other_modules():
    other = nn.Sequential(nn.Conv1d(3, 8, 5), nn.AdaptiveAvgPool1d(1), nn.Flatten())
    assert fused_backbone(other, "bf16") is None
    with pytest.raises(TypeError):
        FusedHARNet(other)
