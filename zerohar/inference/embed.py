"""The fast inference path: window embeddings of many windows at once, what measures fastest on this CPU.

Used by `zerohar classify` and `zerohar eval` (and measured by `zerohar speed`). Which implementation runs,
per precision and per part, is the :class:`~zerohar.inference.plan.InferencePlan` of the CPU: a part that does
not measure faster than the plain module on that kind of CPU runs the plain module. What makes it fast:

- **bf16** on CPUs with native bf16 arithmetic (AVX512-BF16 or AMX-BF16, see :func:`resolve_precision`);
  `precision="fp32"` forces fp32 (the reference);
- **a fused HARNet backbone** (:class:`FusedHARNet`) where the plan says it pays (bf16 on native-bf16 CPUs):
  eval BatchNorm folded into the following convolution where no nonlinearity sits between them, ReLU and the
  residual add fused into oneDNN convolutions, weights cast to bf16 once (autocast would re-cast them every
  batch), activations kept channels_last, the first layer and the residual stream in fp32 (gravity-dominated
  input; see the class). It is checked against the plain backbone when built; where it cannot be built
  (another backbone, a torch without the fused oneDNN ops) the plain module runs under bf16 autocast;
- **batching**: all sensors of `batch_size` windows go through the backbone together, in calls of at most the
  plan's `backbone_batch` triads (activations stay in the caches); no Python loop per window;
  `torch.inference_mode()`; the model in eval mode;
- the small head (sensor tokens, sensor transformer, projection) stays in fp32: it is cheap, and it keeps the
  embeddings close to the fp32 ones.

`torch.compile` was measured on this path (inductor, with and without freezing) and did not beat the fused
backbone, while costing 30-40 s of compilation per process, so it is not used.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zerohar.data.layout import SensorLayout
from zerohar.errors import ZeroharError
from zerohar.inference.plan import InferencePlan, inference_plan
from zerohar.model.fused import FUSED_IMPLEMENTATIONS, fused_backbone
from zerohar.model.harnet import DistilledHARNet
from zerohar.model.onnx_backend import onnx_backbone
from zerohar.text.encoder import get_text_encoder
from zerohar.text.sensors import sensor_description

logger = logging.getLogger(__name__)

#: Windows whose triads calibrate the int8 backbone's activation ranges (`precision="int8"`): the triads of 256
#: windows of one sensor quantize in about 5 s on one core of the AVX2 EPYC.
CALIBRATION_WINDOWS = 256
#: `classify`'s `precision="int8"` and `cascade`: the int8 activation ranges and the student's error bounds are
#: calibrated on windows spread over the recording's first this many windows (about 85 min at the 2.5 s step;
#: 2,048 windows of a wrist accelerometer hold 3.7 MB), the worn ones where a device flagged non-wear. Read ahead
#: and then classified as usual: the stream stays a stream.
CALIBRATION_SPAN = 2048


# ---------------------------------------------------------------------------------------------- batching
def _chunks(X) -> Iterator[np.ndarray]:
    if isinstance(X, (np.ndarray, torch.Tensor)):
        yield X
        return
    if not isinstance(X, Iterable):
        raise ZeroharError(f"windows must be an array (N, C, T) or an iterable of such arrays, found {type(X)}")
    yield from X


def batch_sizes(n: int, batch_size: int) -> list[int]:
    """The batches of `n` windows: `batch_size` while it fits, then the rest in halving powers of two, at most one
    of each (300 windows in batches of 256: 256, 32, 8, 4), so a model meets a handful of batch shapes whatever
    the callers' sizes are.

    Why: the process keeps freed buffers of every shape apart (glibc's heap fragments), so calls of every size
    grow it without bound, as `classify --cascade` did, whose teacher embeds a different number of a batch's
    windows each time. Measured (the USC-HAD fold1 run's backbone, 300 calls of random sizes 1-256, one thread):
    peak RSS 1,431 MB in one batch per call, 455 MB in these batches, for the same CPU time (127.4 and 130.5 s).
    """
    sizes = [batch_size] * (n // batch_size)
    rest, size = n % batch_size, 1 << max(0, (batch_size - 1).bit_length() - 1)
    while rest:
        while size > rest:
            size //= 2
        sizes.append(size)
        rest -= size
    return sizes


def _batches(X, batch_size: int) -> Iterator[torch.Tensor]:
    for chunk in _chunks(X):
        a = 0
        for size in batch_sizes(len(chunk), batch_size):
            b = chunk[a : a + size]
            a += size
            yield (b if isinstance(b, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(b))).float()


def _n_windows(X) -> int | None:
    return len(X) if isinstance(X, (np.ndarray, torch.Tensor)) else None


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise ZeroharError(f"batch size must be at least 1, found {batch_size}")


class MicroBatched(nn.Module):
    """`module` over a batch in calls of at most `size` rows (inference only; outputs concatenated).

    Args:
        module: maps `(N, ...)` to `(N, ...)` row by row (a backbone: triads to features).
        size: rows per call.
    """

    def __init__(self, module: nn.Module, size: int):
        super().__init__()
        self.module, self.size = module, int(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(x) <= self.size:
            return self.module(x)
        return torch.cat([self.module(x[a : a + self.size]) for a in range(0, len(x), self.size)])


def plan_backbone(backbone: nn.Module, plan: InferencePlan, device: torch.device,
                  calibration: np.ndarray | None = None) -> tuple[nn.Module, bool]:
    """The backbone module the plan runs, and whether it runs under bf16 autocast.

    `"fused"` builds (once, cached) the :class:`FusedHARNet` of `backbone`; where that cannot be built the
    plain module runs, under bf16 autocast for bf16. `"fused-all"` (every residual block in bf16) that fails
    its self-check on gravity windows runs `"fused"` instead: on a random-weight model with BatchNorm calibrated
    on HAPT it did (cosine 0.9955), and "fused" kept 99.0% of fp32's labels there where autocast kept 98.2%.
    `"onnx"` (int8) builds the ONNX Runtime backbone (:func:`~zerohar.model.onnx_backend.onnx_backbone`),
    calibrated on the triads `calibration` (N, 3, T) or
    the int8 model cached for these weights; it fails with a ZeroharError rather than fall back, as int8 was
    asked for. The plan's `backbone_batch` wraps the result in :class:`MicroBatched`.

    A distilled backbone (:class:`~zerohar.model.harnet.DistilledHARNet`) is a narrower HARNet and a linear map:
    the plan applies to the HARNet, and the map runs after it as the plain fp32 Linear (256 x 512 for harnet5
    at width 0.5: under 1% of the work).
    """
    head, net = None, backbone
    if isinstance(backbone, DistilledHARNet):
        head, net = backbone.proj, backbone.net
    run = None
    if plan.backbone == "onnx":
        run = onnx_backbone(net, plan.precision, calibration)
    elif plan.backbone in FUSED_IMPLEMENTATIONS and device.type == "cpu":
        # "fused-all" that fails its self-check falls back to "fused" (more exact), then to the plain module
        for name in dict.fromkeys((plan.backbone, "fused")):
            run = fused_backbone(net, plan.precision, FUSED_IMPLEMENTATIONS[name])
            if run is not None:
                break
    autocast = run is None and plan.precision == "bf16"
    if run is None:
        run = backbone
    elif head is not None:
        run = nn.Sequential(run, head)  # (N, 3, T) -> (N, D') -> (N, D)
    if plan.backbone_batch:
        run = MicroBatched(run, plan.backbone_batch)
    return run, autocast


def _with_backbone(model: nn.Module, fast: nn.Module | None) -> nn.Module:
    """`model`, or a shallow copy of it whose `backbone` is `fast` (the model itself is not modified)."""
    if fast is None or fast is getattr(model, "backbone", None):
        return model
    return model.with_backbone(fast)


# ---------------------------------------------------------------------------------------------- public API
def calibration_windows(X: np.ndarray, n: int = CALIBRATION_WINDOWS) -> np.ndarray:
    """`n` windows of `X (N, C, T)` spread evenly over it (all of them when N <= n): the int8 calibration set.

    No labels are used: the int8 ranges only need windows like the ones to be named, and spreading them over the
    input keeps a still start (a device on a table) from setting ranges too narrow for the movement after it.
    """
    if len(X) <= n:
        return np.asarray(X)
    return np.asarray(X[np.unique(np.linspace(0, len(X) - 1, n).round().astype(np.int64))])


def sensor_context(model, layout: SensorLayout, text_encoder=None) -> np.ndarray:
    """Sentence embeddings `(S, d_text)` of the sensor descriptions of `layout` (the Stage II context).

    The text encoder is `text_encoder` (a TextEncoder or a name), else the one the model was trained with
    (`model.metadata["extra"]["text_encoder_name"]`), else the default.
    """
    if text_encoder is None or isinstance(text_encoder, str):
        name = text_encoder or (getattr(model, "metadata", {}) or {}).get("extra", {}).get("text_encoder_name")
        text_encoder = get_text_encoder(name)
    return text_encoder.encode([sensor_description(s) for s in layout.sensors], progress=False)


def embed_windows(
    model,
    X,
    context,
    *,
    batch_size: int = 512,
    precision: str = "auto",
    progress: bool = False,
    sensor_mask: np.ndarray | None = None,
    kinds=None,
    text_encoder=None,
    calibration: np.ndarray | None = None,
) -> np.ndarray:
    """Window embeddings `(N, E)` float32 (L2-normalised) of a ZeroHARModel, on the fast path.

    Args:
        model: a :class:`~zerohar.model.zerohar.ZeroHARModel`; it is run in eval mode and left as it was.
        X: windows `(N, C, T)` (numpy or torch, canonical channel order), or an iterable of such chunks
            (e.g. a stream over a long recording; the result is their concatenation).
        context: the sensor layout of the windows (its sensor descriptions are embedded with the model's text
            encoder, and it gives the sensor kinds for clipping / scaling), or sentence embeddings of the sensor
            descriptions `(S, d_text)`.
        batch_size: windows per forward pass (all their sensors go through the backbone at once).
        precision: "auto" (bf16 on CPUs with native bf16, else fp32), "bf16", "fp32", or "int8" (the backbone
            on ONNX Runtime, optional extra `onnx`); the implementation of each part is the plan's
            (:func:`zerohar.inference.plan.inference_plan`).
        progress: show a progress bar.
        sensor_mask: `(N, S)` bool, True where a sensor is present (None = all present); only with an array X.
        kinds: sensor kinds when `context` is an array (see ZeroHARModel); taken from the layout otherwise.
        text_encoder: a TextEncoder or name for the sensor descriptions (default: the model's).
        calibration: `precision="int8"` only: unlabelled windows `(M, C, T)` (same channels as `X`; a few
            hundred) whose triads calibrate the int8 backbone's activation ranges. None: with an array `X`, its
            own :func:`calibration_windows` (what `zerohar eval --precision int8` does); with a stream, the int8
            model calibrated last for these weights (see :func:`zerohar.model.onnx_backend.onnx_backbone`;
            `classify` passes the recording's own windows).

    Returns:
        `(N, E)` float32.
    """

    _check_batch_size(batch_size)
    device = _device(model)
    plan = inference_plan(precision, device)
    if isinstance(context, SensorLayout):
        kinds = context if kinds is None else kinds
        context = sensor_context(model, context, text_encoder)
    ctx = torch.as_tensor(np.asarray(context, dtype=np.float32), device=device)  # (S, d_text)
    if sensor_mask is not None and _n_windows(X) is None:
        raise ZeroharError("sensor_mask needs the windows as one array, not a stream of chunks")
    mask = None if sensor_mask is None else torch.as_tensor(np.asarray(sensor_mask, dtype=bool), device=device)

    backbone = getattr(model, "backbone", None) if getattr(model.cfg, "encoder", "harnet") == "harnet" else None
    if backbone is not None:
        cal = None
        if calibration is None and plan.backbone == "onnx" and _n_windows(X):
            calibration = calibration_windows(X)
        if calibration is not None and plan.backbone == "onnx":
            with torch.no_grad():  # the backbone's own input: clipped / scaled triads of every sensor
                cw = torch.as_tensor(np.asarray(calibration, dtype=np.float32))
                cal = model._triads(cw, kinds).reshape(-1, 3, cw.shape[-1]).numpy()  # (M S, 3, T)
        run, autocast = plan_backbone(backbone, plan, device, cal)
        runner = _with_backbone(model, run)
    elif plan.backbone == "onnx":
        raise ZeroharError("int8 inference runs the HARNet backbone on ONNX Runtime; this model's encoder has none")
    else:  # the original encoder: the module itself, under bf16 autocast for bf16
        runner, autocast = model, plan.precision == "bf16"
    done = 0

    def step(xb: torch.Tensor) -> torch.Tensor:
        nonlocal done
        mb = None if mask is None else mask[done : done + len(xb)]
        done += len(xb)
        return F.normalize(runner.encode_windows(xb, ctx, mb, kinds=kinds).float(), dim=-1)  # (b, E)

    out = _run(model, step, X, batch_size, device, autocast, progress, "embedding")
    return out if out is not None else np.zeros((0, int(model.cfg.embed_dim)), dtype=np.float32)


def _device(module: nn.Module) -> torch.device:
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _run(module: nn.Module, step, X, batch_size: int, device: torch.device, autocast: bool, progress: bool,
         desc: str) -> np.ndarray | None:
    """`step` over the batches of `X` with `module` in eval mode (restored after) under inference_mode."""
    from tqdm.auto import tqdm

    was_training = module.training
    module.eval()
    out: list[np.ndarray] = []
    bar = tqdm(total=_n_windows(X), unit="window", desc=desc, disable=not progress)
    try:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            for xb in _batches(X, batch_size):
                out.append(step(xb.to(device)).float().cpu().numpy())
                bar.update(len(xb))
    finally:
        bar.close()
        module.train(was_training)
    return np.concatenate(out) if out else None


def embed_backbone(
    backbone: nn.Module, X, *, batch_size: int = 256, precision: str = "auto", progress: bool = False,
    calibration: np.ndarray | None = None,
) -> np.ndarray:
    """Backbone features `(N, D)` float32 of triads `(N, 3, T)` (numpy / torch, or an iterable of chunks).

    The implementation is the plan's for `precision` (:func:`zerohar.inference.plan.inference_plan`): the
    plain module, the fused backbone (:class:`FusedHARNet`), the module under bf16 autocast where a fused
    bf16 backbone cannot be built, or for "int8" the ONNX Runtime backbone calibrated on the triads
    `calibration` `(M, 3, T)`.
    """
    _check_batch_size(batch_size)
    device = _device(backbone)
    run, autocast = plan_backbone(backbone, inference_plan(precision, device), device, calibration)
    out = _run(backbone, run, X, batch_size, device, autocast, progress, "backbone")
    return out if out is not None else np.zeros((0, int(getattr(backbone, "out_dim", 0))), dtype=np.float32)
