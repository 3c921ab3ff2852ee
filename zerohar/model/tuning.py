"""How fast each backbone implementation runs on this machine, measured once and kept: what the plan picks from.

A CPU's flags do not say which implementation of the backbone is fastest. harnet5, 256 triads per call, 2
threads, windows/s (`zerohar speed`):

| CPU | plain fp32 | fused fp32 | fused bf16 | fused-all bf16 |
|---|---:|---:|---:|---:|
| AMD EPYC (Zen 3), AVX2 only | 438 | 495 | no bf16 convolution | |
| AMD EPYC, AVX512-BF16, no AMX (an earlier session) | | | about 2x fp32 | within 3% of fused |
| Intel Xeon, AVX512-BF16 + AVX512-FP16 + AVX-VNNI, no AMX | 620 | 752 | 550 | |
| Intel Xeon with AMX-BF16 / AMX-INT8 | 726 | 871 | 2,275 | 2,915 |

The same flag (`avx512_bf16`) means bf16 at 2x fp32 on one machine and at 0.73x on the other, so a rule keyed by
flags picks the slowest path on the second. On a real CPU the plan (:func:`zerohar.inference.plan.
inference_plan`) therefore asks :func:`backbone_speeds`: each candidate (plain and fused fp32; where oneDNN has
bf16 convolutions, fused and fused-all bf16, or where those cannot be built the plain module under bf16
autocast; fused-all, which keeps fewer labels, counts only where it is :data:`LESS_EXACT_MIN_GAIN` times the
others) is timed on a random-weight harnet5, 256 triads per call, the calls of the candidates interleaved over a
few rounds and the best kept, after one warm-up call each (oneDNN builds its kernels on the first). That takes
about 5-10 s, once per machine: the result is kept in `$ZEROHAR_CACHE/tuning/`, keyed by the CPU model and
every flag of /proc/cpuinfo, the torch version, the number of threads and this module's
:data:`TUNING_VERSION`, and a file lock makes the workers of one machine (a cohort) measure once between them.
Weights do not change the speed of these kernels, and harnet10 ranks the candidates as harnet5 does on the
machines above, so one measurement serves every variant.

Both rules read it: the plan's choice of implementation per precision, and `"auto"`'s choice of precision for
inference and training (:func:`zerohar.model.precision.bf16_pays`: bf16 only where it measured at least
:data:`BF16_MIN_GAIN` times fp32). `ZEROHAR_TUNE=off` (or 0 / false / no) skips the measurement: both then
follow the CPU flags alone (:data:`zerohar.inference.plan.BACKBONE_RULES`). `zerohar speed` measures afresh and
replaces the kept result; a run's `info.json` / speed notes say which implementation ran and why.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch

from zerohar.io import atomic_write_json
from zerohar.model.cpu import cpu_model, proc_flags
from zerohar.model.fused import FUSED_IMPLEMENTATIONS, check_windows, fused_backbone
from zerohar.model.harnet import HARNet
from zerohar.paths import cache_dir

logger = logging.getLogger(__name__)

#: Bump when the candidates or the way they are timed change: kept results of another version are ignored.
TUNING_VERSION = 2
#: The environment variable that turns the measurement off (values in :data:`OFF`).
TUNE_ENV = "ZEROHAR_TUNE"
OFF = frozenset({"0", "off", "false", "no"})
#: Triads per timed call (the plan's calls are this size) and the variant timed.
BATCH, VARIANT = 256, "harnet5"
#: Timed rounds after the warm-up call; each candidate keeps its fastest call.
ROUNDS = 3
#: "auto" runs bf16 only when its fastest backbone is at least this many times the fastest fp32 one: bf16
#: changes up to about 1% of labels (README), which only a clear gain pays for; the gains seen are 2x or below 1.
BF16_MIN_GAIN = 1.15


#: Implementations that keep fewer labels of fp32 than the others of their precision (`"fused-all"`: every
#: residual block in bf16), and the gain over the fastest of the others they must measure to be chosen.
LESS_EXACT = frozenset({"fused-all"})
LESS_EXACT_MIN_GAIN = 1.15


def fastest(speeds: dict[str, float], precision: str) -> tuple[str, float] | None:
    """`(implementation, triads/s)` of the fastest measured candidate of `precision`, or None.

    An implementation of :data:`LESS_EXACT` counts only where it measured at least :data:`LESS_EXACT_MIN_GAIN`
    times the fastest of the others (it changes more labels; README "An Intel Xeon with AMX").
    """
    got = [(k.split()[1], v) for k, v in speeds.items() if k.split()[0] == precision and v > 0]
    exact = [kv for kv in got if kv[0] not in LESS_EXACT]
    if exact:
        bar = LESS_EXACT_MIN_GAIN * max(v for _, v in exact)
        got = exact + [kv for kv in got if kv[0] in LESS_EXACT and kv[1] >= bar]
    return max(got, key=lambda kv: kv[1]) if got else None


def bf16_gain(speeds: dict[str, float]) -> float:
    """The fastest bf16 candidate's speed over the fastest fp32 one's (0 when bf16 was not measured)."""
    bf16, fp32 = fastest(speeds, "bf16"), fastest(speeds, "fp32")
    return bf16[1] / fp32[1] if bf16 and fp32 else 0.0


def tuning_enabled() -> bool:
    """False when `ZEROHAR_TUNE` says off (the plan then follows the CPU flags alone)."""
    return os.environ.get(TUNE_ENV, "").strip().lower() not in OFF


def machine_identity(part: str, **settings) -> dict:
    """What a kept measurement of `part` is valid for: CPU model and flags, torch, threads, the settings."""
    return {"part": part, "cpu": cpu_model() or platform.processor() or platform.machine(),
            "flags": sorted(proc_flags() or ()), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "version": TUNING_VERSION, **settings}


def _path(identity: dict) -> Path:
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / "tuning" / f"{identity['part']}-{digest}.json"


def _read(path: Path, identity: dict) -> dict[str, float] | None:
    try:
        kept = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(kept, dict) or kept.get("identity") != identity:
        return None
    speeds = kept.get("per_s")
    if not isinstance(speeds, dict) or not speeds:
        return None
    return {str(k): float(v) for k, v in speeds.items()}


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock beside `path` (POSIX; elsewhere no lock: at worst two processes measure)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl  # POSIX only: the lock is a convenience, not needed for correctness
    except ImportError:
        yield
        return
    with open(path.with_suffix(".lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def candidates(net: torch.nn.Module, bf16: bool) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """The implementations of `net` to time (a fused one that cannot be built here is left out)."""

    def autocast(x):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return net(x)

    out: dict[str, Callable] = {"fp32 plain": net}
    for name in ("fp32 fused", "bf16 fused", "bf16 fused-all") if bf16 else ("fp32 fused",):
        prec, impl = name.split()
        fused = fused_backbone(net, prec, FUSED_IMPLEMENTATIONS[impl])
        if fused is not None:
            out[name] = fused
    if bf16 and "bf16 fused" not in out:  # the fused one keeps gravity in fp32 (more labels kept): preferred
        out["bf16 autocast"] = autocast
    return out


def interleaved_rates(fns: dict[str, Callable[[], object]], n: int, rounds: int = ROUNDS) -> dict[str, float]:
    """Items/s of each call in `fns` (each handles `n` items): one warm-up call each (kernels are built on the
    first), then `rounds` rounds calling each once in turn, the fastest call of each kept."""
    best = dict.fromkeys(fns, float("inf"))
    for fn in fns.values():
        fn()
    for _ in range(max(1, rounds)):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return {name: round(n / s, 1) for name, s in best.items()}


def measure(bf16: bool, rounds: int = ROUNDS, batch: int = BATCH, variant: str = VARIANT) -> dict[str, float]:
    """Triads/s of each candidate implementation of a random-weight `variant` (see the module docstring)."""
    torch.manual_seed(0)
    net = HARNet(variant).eval()
    x = check_windows(batch, net.window)  # (batch, 3, T): gravity on one axis, like worn accelerometers
    with torch.inference_mode():
        fns = {name: (lambda fn=fn: fn(x)) for name, fn in candidates(net, bf16).items()}
        return interleaved_rates(fns, batch, rounds)


def backbone_speeds(bf16: bool, refresh: bool = False) -> dict[str, float] | None:
    """Triads/s of each candidate backbone on this machine (measured once, then read from the cache).

    Args:
        bf16: also time the bf16 candidates (where oneDNN has bf16 convolutions).
        refresh: measure again and replace the kept result (`zerohar speed` does).

    Returns:
        `{"fp32 plain": ..., "fp32 fused": ..., ["bf16 fused", "bf16 fused-all" or "bf16 autocast": ...]}`, or
        None when `ZEROHAR_TUNE` is off or the measurement failed (the plan then follows the CPU flags).
    """
    identity = machine_identity("backbone", bf16_candidates=bool(bf16), variant=VARIANT, batch=BATCH)
    return kept_speeds(identity, lambda: measure(bf16), refresh)


def kept_speeds(identity: dict, measure_part: Callable[[], dict[str, float]],
                refresh: bool = False) -> dict[str, float] | None:
    """`measure_part()` on this machine once, kept in the cache under `identity` (:func:`machine_identity`).

    The one mechanism of every part the plans time (the backbone here, the label search in
    :mod:`zerohar.inference.index`): a process reads the kept result, or measures it under a file lock (the
    processes of one machine measure once between them) and keeps it atomically. None when `ZEROHAR_TUNE` is
    off or the measurement failed; the caller then follows its fixed rule.
    """
    if not tuning_enabled():
        return None
    path = _path(identity)
    if not refresh:
        kept = _MEMO.get(path) or _read(path, identity)
        if kept is not None:
            _MEMO[path] = kept
            return kept
    with _locked(path):
        kept = None if refresh else _read(path, identity)  # another process may have measured meanwhile
        if kept is None:
            logger.info("timing the %s implementations on this CPU once (a few seconds; kept in %s)",
                        identity["part"], path)
            try:
                kept = measure_part()
            except (RuntimeError, TypeError, ValueError) as e:
                logger.warning("could not time the %s implementations (%s); following the CPU flags",
                               identity["part"], e)
                return None
            try:
                atomic_write_json(path, {"identity": identity, "per_s": kept,
                                         "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
            except OSError as e:  # a read-only cache: the next process measures again, still correct
                logger.warning("could not keep the %s timings in %s (%s)", identity["part"], path, e)
    _MEMO[path] = kept
    return kept


#: This process's copy of each kept result (one file read per process).
_MEMO: dict[Path, dict[str, float]] = {}
