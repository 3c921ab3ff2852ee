"""The inference plan: which implementation of each part runs, on simulated CPUs of both kinds."""

from __future__ import annotations

import pytest

from zerohar.errors import ZeroharError
from zerohar.inference import plan as plan_mod
from zerohar.inference.plan import BACKBONE_RULES, NO_BF16_KINDS, cpu_kind, inference_plan
from zerohar.model import precision

AVX2 = {"avx2"}
AVX512_BF16 = {"avx2", "avx512f", "avx512_bf16"}


def test_cpu_kind():
    assert cpu_kind(AVX2) == "avx2"
    assert cpu_kind(AVX512_BF16) == "native-bf16"
    assert cpu_kind({"avx2", "amx_tile", "amx_bf16"}) == "native-bf16"
    assert cpu_kind({"avx2", "avx512f"}) == "avx512"
    assert cpu_kind(set()) == "other"


def test_avx2_runs_the_fused_fp32_backbone_for_every_precision():
    for prec in ("auto", "fp32", "bf16"):
        p = inference_plan(prec, flags=AVX2)
        assert (p.precision, p.backbone, p.cpu) == ("fp32", "fused", "avx2"), prec
        assert p.head == "plain fp32" and p.backbone_batch > 0
    assert "no bf16 convolution" in inference_plan("bf16", flags=AVX2).reason


def test_native_bf16_runs_the_fused_bf16_backbone_by_default():
    p = inference_plan("auto", flags=AVX512_BF16)
    assert (p.precision, p.backbone, p.cpu) == ("bf16", "fused", "native-bf16")
    assert p.describe().startswith("backbone fused bf16")
    plain = inference_plan("fp32", flags=AVX512_BF16)  # fp32 asked for: the reference module
    assert (plain.precision, plain.backbone) == ("fp32", "plain")


def test_every_cpu_kind_and_precision_has_a_rule():
    for kind in ("native-bf16", "avx512", "avx2", "other"):
        for prec in ("fp32",) if kind in NO_BF16_KINDS else ("bf16", "fp32"):
            backbone, batch = BACKBONE_RULES[(kind, prec)]
            assert backbone in ("fused", "plain", "autocast") and batch >= 0


@pytest.mark.parametrize(("flags", "native"), [(AVX2, False), (AVX512_BF16, True)])
def test_plan_follows_the_cpu_flags_reader(monkeypatch, flags, native):
    """With no flags passed, the plan (and the precision rule) read this machine's through `cpu_flags`."""
    monkeypatch.setattr(precision, "cpu_flags", lambda: [f for f in precision.SPEED_FLAGS if f in flags])
    monkeypatch.setattr(precision, "mkldnn_bf16_supported", lambda: True)
    assert precision.cpu_has_native_bf16() is native
    assert precision.resolve_precision("auto") == ("bf16" if native else "fp32")
    p = inference_plan("auto")
    want = ("bf16", "fused", "native-bf16") if native else ("fp32", "fused", "avx2")
    assert (p.precision, p.backbone, p.cpu) == want


def test_native_flags_without_onednn_bf16_fall_back_to_fp32(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: sorted(AVX512_BF16))
    monkeypatch.setattr(precision, "mkldnn_bf16_supported", lambda: False)
    assert not precision.cpu_has_native_bf16()
    assert inference_plan("auto").precision == "fp32"


def test_cuda_plans_autocast_or_plain(monkeypatch):
    monkeypatch.setattr(plan_mod._precision, "resolve_precision", lambda p, d=None: "bf16" if p != "fp32" else p)
    assert inference_plan("auto", device="cuda").backbone == "autocast"
    assert inference_plan("fp32", device="cuda").backbone == "plain"


def test_unknown_precision_is_refused():
    with pytest.raises(ZeroharError, match=r"precision 'fp16' is not known"):
        inference_plan("fp16", flags=AVX2)


@pytest.mark.parametrize("flags", [AVX2, AVX512_BF16])
def test_int8_runs_the_onnx_backbone_on_request_only(flags):
    p = inference_plan("int8", flags=flags)
    assert (p.precision, p.backbone) == ("int8", "onnx") and p.backbone_batch > 0
    assert p.describe().startswith("backbone onnx int8")
    for prec in ("auto", "fp32", "bf16"):  # never a default
        assert inference_plan(prec, flags=flags).backbone != "onnx"


def test_int8_on_a_gpu_is_refused():
    with pytest.raises(ZeroharError, match=r"int8 inference \(ONNX Runtime\) runs on the CPU only"):
        inference_plan("int8", device="cuda")
