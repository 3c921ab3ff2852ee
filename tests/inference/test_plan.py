"""The inference plan: which implementation of each part runs, on simulated CPUs of both kinds."""

from __future__ import annotations

import pytest

from zerohar.errors import ZeroharError
from zerohar.inference import plan as plan_mod
from zerohar.inference.plan import BACKBONE_RULES, NO_BF16_KINDS, choose, cpu_kind, inference_plan
from zerohar.model import precision, tuning

AVX2 = {"avx2"}
AVX512_BF16 = {"avx2", "avx512f", "avx512_bf16"}
# Measured triads/s (harnet5, 256 per call, 2 threads; `zerohar speed`) of the three CPUs seen so far.
ZEN3_AVX2 = {"fp32 plain": 438.0, "fp32 fused": 495.0}
ZEN4_BF16 = {"fp32 plain": 700.0, "fp32 fused": 690.0, "bf16 fused": 1400.0}
XEON_BF16_NO_AMX = {"fp32 plain": 620.0, "fp32 fused": 752.0, "bf16 fused": 550.0}
XEON_AMX = {"fp32 plain": 726.0, "fp32 fused": 871.0, "bf16 fused": 2275.0, "bf16 fused-all": 2915.0}


@pytest.fixture
def flags_only(monkeypatch):
    """The plan as the CPU flags alone make it (no timing of this machine)."""
    monkeypatch.setenv(tuning.TUNE_ENV, "off")


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
def test_plan_follows_the_cpu_flags_reader(monkeypatch, flags_only, flags, native):
    """With no flags passed, the plan (and the precision rule) read this machine's through `cpu_flags`."""
    monkeypatch.setattr(precision, "cpu_flags", lambda: [f for f in precision.SPEED_FLAGS if f in flags])
    monkeypatch.setattr(precision, "mkldnn_bf16_supported", lambda: True)
    assert precision.cpu_has_native_bf16() is native
    assert precision.resolve_precision("auto") == ("bf16" if native else "fp32")
    p = inference_plan("auto")
    want = ("bf16", "fused", "native-bf16") if native else ("fp32", "fused", "avx2")
    assert (p.precision, p.backbone, p.cpu) == want


def test_native_flags_without_onednn_bf16_fall_back_to_fp32(monkeypatch, flags_only):
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


# ---------------------------------------------------------------------------------------------- measured plans
def test_measured_speeds_pick_bf16_only_where_it_pays():
    """The same avx512_bf16 flag: bf16 at 2x on one CPU (chosen), at 0.73x on the other (fp32 fused chosen)."""
    assert choose("auto", "native-bf16", ZEN4_BF16)[:2] == ("bf16", "fused")
    prec, backbone, reason = choose("auto", "native-bf16", XEON_BF16_NO_AMX)
    assert (prec, backbone) == ("fp32", "fused")
    assert "bf16 only 0.73x fp32" in reason and "fp32 fused 752/s" in reason
    assert choose("bf16", "native-bf16", XEON_BF16_NO_AMX)[:2] == ("bf16", "fused")  # asked for: it runs
    assert choose("fp32", "native-bf16", ZEN4_BF16)[:2] == ("fp32", "plain")  # the faster fp32 one there


def test_measured_speeds_on_avx2_never_run_bf16():
    for prec in ("auto", "fp32", "bf16"):
        assert choose(prec, "avx2", ZEN3_AVX2)[:2] == ("fp32", "fused"), prec
    # a bf16 figure that somehow got measured on an AVX2 CPU is ignored: oneDNN has no bf16 convolution there
    assert choose("bf16", "avx2", {**ZEN3_AVX2, "bf16 autocast": 900.0})[:2] == ("fp32", "fused")
    assert "no bf16 convolution" in choose("bf16", "avx2", ZEN3_AVX2)[2]


def test_a_small_bf16_gain_stays_fp32():
    gain = tuning.BF16_MIN_GAIN
    just_under = {"fp32 plain": 100.0, "bf16 fused": 100.0 * gain - 1}
    assert choose("auto", "native-bf16", just_under)[0] == "fp32"
    assert choose("auto", "native-bf16", {"fp32 plain": 100.0, "bf16 fused": 100.0 * gain})[0] == "bf16"
    # on an AVX512 CPU without native bf16 "auto" never picks bf16, whatever was measured
    assert choose("auto", "avx512", {"fp32 plain": 100.0, "bf16 autocast": 300.0})[0] == "fp32"


def test_amx_runs_every_residual_block_in_bf16_where_that_pays():
    """With AMX the first layer's fp32 convolutions were 30% of the bf16 backbone: fused-all is chosen there."""
    assert choose("auto", "native-bf16", XEON_AMX)[:2] == ("bf16", "fused-all")
    assert choose("fp32", "native-bf16", XEON_AMX)[:2] == ("fp32", "fused")
    # it changes more labels than "fused": a gain below LESS_EXACT_MIN_GAIN keeps "fused"
    bar = tuning.LESS_EXACT_MIN_GAIN * XEON_AMX["bf16 fused"]
    assert choose("bf16", "native-bf16", {**XEON_AMX, "bf16 fused-all": bar - 1})[:2] == ("bf16", "fused")
    assert choose("bf16", "native-bf16", {**XEON_AMX, "bf16 fused-all": bar})[:2] == ("bf16", "fused-all")
    # on the Zen 4 EPYC the two ran within a few percent: "fused"
    assert choose("auto", "native-bf16", {**ZEN4_BF16, "bf16 fused-all": 1440.0})[:2] == ("bf16", "fused")


def test_the_less_exact_implementation_alone_is_still_a_candidate():
    assert tuning.fastest({"fp32 plain": 1.0, "bf16 fused-all": 3.0}, "bf16") == ("fused-all", 3.0)


def test_plain_wins_where_the_fused_backbone_does_not_pay():
    assert choose("fp32", "avx2", {"fp32 plain": 500.0, "fp32 fused": 480.0})[:2] == ("fp32", "plain")


def test_choose_needs_an_fp32_figure():
    with pytest.raises(ZeroharError, match="no fp32 backbone speed"):
        choose("auto", "native-bf16", {"bf16 fused": 100.0})


@pytest.mark.parametrize(("flags", "speeds", "want"), [
    (AVX512_BF16, ZEN4_BF16, ("bf16", "fused", "bf16")),
    (AVX512_BF16, XEON_BF16_NO_AMX, ("fp32", "fused", "fp32")),
    (AVX2, ZEN3_AVX2, ("fp32", "fused", "fp32")),
])
def test_this_machines_plan_and_auto_precision_follow_its_timing(monkeypatch, flags, speeds, want):
    """On a (simulated) machine, the plan and the training precision of "auto" both read its kept timing."""
    monkeypatch.setattr(precision, "cpu_flags", lambda: [f for f in precision.SPEED_FLAGS if f in flags])
    monkeypatch.setattr(precision, "mkldnn_bf16_supported", lambda: True)
    asked = []
    monkeypatch.setattr(tuning, "backbone_speeds", lambda bf16, refresh=False: asked.append(bf16) or dict(speeds))
    p = inference_plan("auto")
    assert (p.precision, p.backbone, precision.resolve_precision("auto")) == want
    assert "measured here" in p.reason
    assert asked[0] is (flags == AVX512_BF16)  # bf16 candidates are timed only where oneDNN has bf16 convolutions


def test_simulated_flags_never_time_this_machine(monkeypatch):
    monkeypatch.setattr(tuning, "backbone_speeds", lambda *a, **k: pytest.fail("timed this machine"))
    assert inference_plan("auto", flags=AVX2).backbone == "fused"
    assert inference_plan("auto", flags=AVX512_BF16, speeds=XEON_BF16_NO_AMX).precision == "fp32"
