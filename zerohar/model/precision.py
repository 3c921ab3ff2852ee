"""bf16 or fp32: one rule for training (autocast) and inference (the fused bf16 backbone).

`"auto"` means bf16 where the hardware computes in bf16 natively **and it measured faster here**: on the CPU,
AMX-BF16 or AVX512-BF16 (an AVX512 CPU without the bf16 extension would emulate bf16, slower than fp32, so the
flag matters), and the fastest bf16 backbone at least :data:`zerohar.model.tuning.BF16_MIN_GAIN` times the
fastest fp32 one in this machine's one-off timing (:func:`zerohar.model.tuning.backbone_speeds`); on CUDA,
`torch.cuda.is_bf16_supported()`. The flag alone is not enough (`zerohar speed`, idle, 2 cores):

- AMD EPYC, AVX512-BF16, no AMX: Stage I / Stage II training steps 1.55x / 1.43x the fp32 ones, harnet5
  inference about 2x: bf16 pays;
- Intel Xeon, AVX512-BF16 + AVX512-FP16, no AMX: training steps 0.71x / 0.69x, harnet5 inference 0.73x of the
  fused fp32 backbone: bf16 is slower, and "auto" is fp32 there.

The inference timing decides for training too: on both machines the two moved together.
"""

from __future__ import annotations

import contextlib
import functools

import torch

from zerohar.config import PRECISIONS
from zerohar.errors import ZeroharError
from zerohar.model import tuning
from zerohar.model.cpu import proc_flags

#: The CPU features the precision rule and the speed figures depend on (the VNNI and FP16 ones for int8 and
#: the record: an Intel Xeon with avx512_fp16 and avx_vnni ran bf16 slower than fp32 and int8 at 2x).
SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "avx512_vnni", "avx_vnni", "avx512_fp16")
#: The flags that mean native bf16 arithmetic (an AVX512 CPU without them would emulate bf16, slower than fp32).
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_flags() -> list[str]:
    """Which of :data:`SPEED_FLAGS` this CPU has (from /proc/cpuinfo; empty where that cannot be read).

    The one reader of the CPU's flags: the precision rule, the inference plan and the speed figures all ask it
    (tests simulate another CPU by replacing it).
    """
    have = proc_flags() or frozenset()
    return [flag for flag in SPEED_FLAGS if flag in have]


@functools.lru_cache(maxsize=1)
def mkldnn_bf16_supported() -> bool:
    """True when this torch's oneDNN can run bf16 kernels at all (emulated or not)."""
    try:
        return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes in bf16 natively (AMX-BF16 or AVX512-BF16) and oneDNN can use it.

    The flags come from :func:`cpu_flags` (Linux); where /proc/cpuinfo cannot be read, torch's CPU capability
    decides (AMX only: an AVX512 CPU without the bf16 extension would emulate bf16, slower than fp32).
    """
    if not mkldnn_bf16_supported():
        return False
    if proc_flags() is None and not cpu_flags():
        return "AMX" in str(torch.backends.cpu.get_cpu_capability()).upper()
    return bool(NATIVE_BF16_FLAGS & set(cpu_flags()))


def resolve_precision(precision: str = "auto", device: torch.device | str | None = None) -> str:
    """`"bf16"` or `"fp32"`: `"auto"` is bf16 where the hardware computes in bf16 natively and that pays.

    On the CPU (the default `device`) that means AMX-BF16 or AVX512-BF16 measured faster than fp32 here
    (:func:`bf16_pays`); on a CUDA device, `torch.cuda.is_bf16_supported()`.

    Raises:
        ZeroharError: `precision` is not one of auto, bf16, fp32.
    """
    if precision not in PRECISIONS:
        raise ZeroharError(f"precision {precision!r} is not known: expected one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if device is not None and torch.device(device).type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if bf16_pays() else "fp32"


def bf16_pays() -> bool:
    """True when the CPU has native bf16 and, where its backbones were timed, bf16 measured faster than fp32.

    With `ZEROHAR_TUNE=off` (or a timing that failed) the flags alone decide, as before the timing existed.
    """
    if not cpu_has_native_bf16():
        return False
    speeds = tuning.backbone_speeds(bf16=True)
    return True if not speeds else tuning.bf16_gain(speeds) >= tuning.BF16_MIN_GAIN


def autocast(enabled: bool, device: torch.device):
    """bf16 autocast on `device`, or a no-op context."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)
