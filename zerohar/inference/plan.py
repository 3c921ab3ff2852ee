"""The inference plan: per precision and per part, which implementation the default path runs on this CPU.

The default path of `zerohar classify`, `eval` and `index` (:func:`zerohar.inference.embed.embed_windows`) has
three parts, and each has a plain implementation (the PyTorch modules in fp32, the reference) and possibly a
faster one. A faster one is used only where it measured faster; everywhere else the plain module runs. For the
backbone that measurement is made **on this machine**, once (:mod:`zerohar.model.tuning`): CPU flags do not
predict it (two CPUs with the same `avx512_bf16` flag ran bf16 at 2x and at 0.73x fp32), so the flag rules
(:data:`BACKBONE_RULES`) serve only with `ZEROHAR_TUNE=off` and for simulated CPUs. `zerohar speed` prints the
fast and the plain figure of each part next to each other, and fails when a default path is slower than plain
by more than noise:

- **backbone** (HARNet over every triad, >97% of the work): `"fused"` is :class:`~zerohar.model.fused.FusedHARNet`
  (BatchNorm folded, ReLU and residual add fused into oneDNN convolutions); `"plain"` the module as trained;
  `"autocast"` the module under bf16 autocast (a GPU, or a backbone that cannot be fused). With native bf16
  (AVX512-BF16 or AMX-BF16) the fused bf16 backbone was about 2x fp32 on an AMD EPYC, but 0.73x the fused fp32 one
  on an Intel Xeon with AVX512-BF16 and AVX512-FP16 and no AMX (harnet5: fused fp32 752, plain fp32 620, fused bf16
  550 triads/s), where the measured plan runs fused fp32 and "auto" is fp32. On an Intel Xeon **with AMX** bf16 is
  3.3x fp32, and the first layer's fp32 convolutions (kept for gravity) became 30% of the fused bf16 backbone:
  `"fused-all"` (every residual block in bf16; the network's first convolution and the residual stream still fp32)
  ran 2,915 vs 2,275 triads/s and kept 99.97% of fp32's labels on all HAPT windows (a trained fold1 run; "fused"
  100%), so it runs there; being less exact, it is chosen only where it measured at least
  :data:`~zerohar.model.tuning.LESS_EXACT_MIN_GAIN` times "fused" (not on the AMD EPYC, where the two were within
  3%). On an AVX2-only CPU oneDNN has no bf16
  convolution at all: the fused bf16 backbone cannot be built and autocast falls back to a reference kernel
  (harnet5: about 6 windows/s instead of 500), so a `bf16` request runs the fp32 backbone there and says so. On that
  AVX2 CPU the fused fp32 backbone measured 1.14x the plain one for harnet5 and 1.09x for harnet10 (best of 5-6
  interleaved rounds, 256 triads per call, a shared 2-core AMD EPYC), so fp32 runs fused there. `backbone_batch`
  caps the triads per backbone call (a batch of 512 windows of 2 sensors is 1,024 triads): activations of a few
  hundred triads stay in the caches. harnet5 on that CPU, triads/s at 256 vs 1,024 per call: plain 537 vs 339, fused
  610 vs 431; harnet10 at 128 vs 256: plain 134 vs 181, fused 106 vs 197.
- **less work per window, on request** (`precision="int8"`, never a default): the backbone in int8 on ONNX
  Runtime (:mod:`zerohar.model.onnx_backend`, the optional `onnx` extra; weights per channel, activations
  calibrated on unlabelled windows: `classify` takes 256 of the recording's own). Same on every CPU kind.
  On the AVX2 CPU: harnet5 about 2x the fused fp32 backbone per core, 99.6% of the labels of fp32 on all
  labelled HAPT windows and 97.5% on USC-HAD (fold1 runs, the input layer in fp32; README). ONNX Runtime in fp32
  gave the same labels as fp32 but only 1.06x the fused backbone per core (1.5x on 2 threads of a heavily loaded
  machine): too little to put an optional package on the default path, so the fp32 rule stays the fused
  backbone.
- **sensor transformer and heads**: always the plain fp32 modules. In eval mode under `inference_mode` PyTorch
  already runs `nn.TransformerEncoder` on its fused fast path, and the whole head costs about 1% of the
  backbone's FLOPs (2 tokens per window: ~6 MFLOP vs 468): nothing to gain from another implementation.
- **label search** (:class:`~zerohar.inference.index.LabelIndex`, exact either way): faiss `IndexFlatIP` or the
  same search in numpy (matrix product, partial sort), numpy unless faiss measured 1.1x it on this machine at the
  nearest of 10, 1,000 and 10,000 labels (:func:`~zerohar.inference.index.numpy_search_pays`, timed once like
  the backbone).
  On the AVX2 EPYC faiss measured 1.15x numpy at 10 labels, 2.3x at 100, 2.2x at 1,000 (`index_*` figures); on
  the Intel Xeon numpy was faster at every size (1.2x at 10, 1.9x at 1,000, 1.5x at 100,000). A restricted
  search over fewer than 2,048 candidates is always one numpy matrix product (faiss' id selector costs more
  there).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from zerohar.config import PRECISIONS
from zerohar.errors import ZeroharError
from zerohar.model import precision as _precision
from zerohar.model import tuning

#: `(CPU kind, precision) -> (backbone, triads per backbone call)`; see the module docstring for the kinds.
BACKBONE_RULES: dict[tuple[str, str], tuple[str, int]] = {
    ("native-bf16", "bf16"): ("fused", 256),  # about 2x fp32 (AVX512-BF16, no AMX; batch 256)
    ("native-bf16", "fp32"): ("plain", 256),  # fused fp32 not measured faster there: the reference runs
    ("avx512", "bf16"): ("autocast", 256),  # oneDNN emulates bf16 with AVX512BW: slower than fp32, as asked
    ("avx512", "fp32"): ("plain", 256),
    ("avx2", "fp32"): ("fused", 256),  # 1.14x plain (harnet5), 1.09x (harnet10); a bf16 request runs this
    ("other", "fp32"): ("plain", 256),  # a bf16 request runs this too
}
#: Triads per call of the int8 backbone (precision "int8", every CPU kind).
INT8_BATCH = 256
#: CPU kinds where oneDNN has no bf16 convolution: a bf16 request runs the fp32 rule (see the module docstring).
NO_BF16_KINDS = ("avx2", "other")


@dataclass(frozen=True)
class InferencePlan:
    """What the default inference path runs, part by part (see the module docstring).

    Attributes:
        precision: the precision the backbone computes in, "bf16", "fp32" or "int8" (a bf16 request can run in
            fp32 where the CPU has no bf16 convolutions; `reason` says so).
        backbone: "fused", "fused-all", "plain", "autocast" or "onnx" (int8 on ONNX Runtime).
        backbone_batch: at most this many triads per backbone call (0: all of a batch at once).
        cpu: the CPU kind the rule was chosen for ("native-bf16", "avx512", "avx2", "other", or "cuda").
        reason: one line for logs and speed notes.
    """

    precision: str
    backbone: str
    backbone_batch: int
    cpu: str
    reason: str = ""

    @property
    def head(self) -> str:
        """The sensor transformer and heads: always the plain fp32 modules."""
        return "plain fp32"

    def describe(self) -> str:
        """`"backbone fused bf16 (256 triads/call), head plain fp32"`: what runs, for notes and logs."""
        batch = f" ({self.backbone_batch} triads/call)" if self.backbone_batch else ""
        return f"backbone {self.backbone} {self.precision}{batch}, head {self.head}"


def cpu_kind(flags: Iterable[str] | None = None) -> str:
    """The CPU class the rules are keyed by: "native-bf16", "avx512", "avx2" or "other".

    Args:
        flags: CPU flags (default: :func:`zerohar.model.precision.cpu_flags` of this machine).
    """
    have = set(_precision.cpu_flags() if flags is None else flags)
    if have & _precision.NATIVE_BF16_FLAGS:
        return "native-bf16"
    if "avx512f" in have:
        return "avx512"
    return "avx2" if "avx2" in have else "other"


def machine_kind() -> str:
    """This CPU's kind; "native-bf16" only where oneDNN can also run bf16 (else the kind its other flags give)."""
    kind = cpu_kind()
    if kind == "native-bf16" and not _precision.cpu_has_native_bf16():
        kind = cpu_kind(set(_precision.cpu_flags()) - _precision.NATIVE_BF16_FLAGS)
    return kind


def machine_has_bf16_convolutions() -> bool:
    """True where oneDNN runs bf16 convolutions on this CPU (natively or emulated): the bf16 candidates exist."""
    return machine_kind() not in NO_BF16_KINDS and _precision.mkldnn_bf16_supported()


def machine_speeds(refresh: bool = False) -> dict[str, float] | None:
    """This machine's timing of the backbone implementations the plan chooses from (see :mod:`~zerohar.model.
    tuning`; bf16 ones where oneDNN has bf16 convolutions); `refresh` measures afresh (`zerohar speed`)."""
    return tuning.backbone_speeds(bf16=machine_has_bf16_convolutions(), refresh=refresh)


def choose(precision: str, kind: str, speeds: dict[str, float]) -> tuple[str, str, str]:
    """`(precision, backbone, reason)` from measured triads/s (:func:`zerohar.model.tuning.backbone_speeds`).

    An explicit precision runs its fastest measured implementation. `"auto"` runs bf16 only on a native-bf16
    CPU where its fastest implementation is at least :data:`~zerohar.model.tuning.BF16_MIN_GAIN` times the
    fastest fp32 one: bf16 changes up to about 1% of labels, which only a real gain pays for; otherwise the
    fastest fp32 one.

    Args:
        precision: "auto", "bf16" or "fp32" (a bf16 request on a CPU kind without bf16 convolutions is fp32).
        kind: the CPU kind (:func:`cpu_kind`).
        speeds: `{"<precision> <implementation>": triads/s}`, implementations "plain", "fused", "fused-all",
            "autocast" (see :func:`zerohar.model.tuning.fastest` for the rule of the less exact "fused-all").
    """
    fp32 = tuning.fastest(speeds, "fp32")
    bf16 = tuning.fastest(speeds, "bf16") if kind not in NO_BF16_KINDS else None
    if fp32 is None:
        raise ZeroharError(f"no fp32 backbone speed among the measured ones: {sorted(speeds)}")
    shown = ", ".join(f"{k} {v:.0f}/s" for k, v in sorted(speeds.items(), key=lambda kv: -kv[1]))
    if precision == "bf16" and bf16 is not None:
        return "bf16", bf16[0], f"{kind} CPU, bf16 asked for; measured here: {shown}"
    gain = bf16[1] / fp32[1] if bf16 is not None and kind == "native-bf16" else None
    if precision == "auto" and gain is not None and gain >= tuning.BF16_MIN_GAIN:
        return "bf16", bf16[0], f"{kind} CPU, bf16 {gain:.2f}x fp32; measured here: {shown}"
    why = f"bf16 only {gain:.2f}x fp32" if precision == "auto" and gain is not None else "fp32"
    if precision == "bf16":
        why = "oneDNN has no bf16 convolution here, the backbone runs in fp32"
    return "fp32", fp32[0], f"{kind} CPU, {why}; measured here: {shown}"


def inference_plan(precision: str = "auto", device: torch.device | str | None = None,
                   flags: Iterable[str] | None = None, speeds: dict[str, float] | None = None) -> InferencePlan:
    """The plan of the default inference path for `precision` on `device` (default: this CPU).

    On this machine's CPU the backbone is the fastest implementation measured here (:func:`choose` over
    :func:`zerohar.model.tuning.backbone_speeds`, measured once per machine); with `ZEROHAR_TUNE=off`, or
    for simulated `flags`, the CPU flags' rule (:data:`BACKBONE_RULES`).

    Args:
        precision: "auto", "bf16" or "fp32" (see :func:`zerohar.model.precision.resolve_precision`), or "int8":
            the int8 backbone on ONNX Runtime (:mod:`zerohar.model.onnx_backend`), on request only.
        device: where the model is; on CUDA the backbone is the plain module (under bf16 autocast for bf16).
        flags: CPU flags to plan for (default: this machine's); tests pass another CPU's.
        speeds: measured triads/s per implementation (see :func:`choose`) to plan from instead of this
            machine's; tests pass another CPU's.

    Raises:
        ZeroharError: `precision` is not known, or int8 is asked for on a GPU.
    """
    if precision == "int8":
        if device is not None and torch.device(device).type != "cpu":
            raise ZeroharError("int8 inference (ONNX Runtime) runs on the CPU only; use --precision bf16 on a GPU")
        kind = cpu_kind(flags)
        return InferencePlan("int8", "onnx", INT8_BATCH, kind, f"{kind} CPU, int8 backbone on ONNX Runtime")
    if device is not None and torch.device(device).type == "cuda":
        prec = _precision.resolve_precision(precision, device)
        return InferencePlan(prec, "autocast" if prec == "bf16" else "plain", 0, "cuda", "CUDA")
    if precision not in PRECISIONS:
        _precision.resolve_precision(precision)  # its one-sentence refusal
    kind = cpu_kind(flags) if flags is not None else machine_kind()
    native = kind == "native-bf16"
    if speeds is None and flags is None:
        speeds = machine_speeds()
    if speeds:
        prec, backbone, reason = choose(precision, kind, speeds)
        return InferencePlan(prec, backbone, BACKBONE_RULES[(kind, prec)][1], kind, reason)
    prec = _precision.resolve_precision("bf16" if precision == "auto" and native else
                                        "fp32" if precision == "auto" else precision)
    reason = f"{kind} CPU, {prec} (by its flags)"
    if prec == "bf16" and kind in NO_BF16_KINDS:
        prec, reason = "fp32", f"{kind} CPU: oneDNN has no bf16 convolution here, the backbone runs in fp32"
    backbone, batch = BACKBONE_RULES[(kind, prec)]
    return InferencePlan(prec, backbone, batch, kind, reason)
