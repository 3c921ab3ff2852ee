"""The fast inference path: window embeddings of many windows at once, bf16 where the CPU does it natively.

Used by `zerohar classify` and `zerohar eval` (and measured by `zerohar speed`). What makes it fast:

- **bf16** on CPUs with native bf16 arithmetic (AVX512-BF16 or AMX-BF16, see :func:`resolve_precision`);
  `precision="fp32"` forces the plain fp32 model (the reference);
- **a fused HARNet backbone** (:class:`FusedHARNet`) built once from the model's weights: eval BatchNorm
  folded into the following convolution where no nonlinearity sits between them, ReLU and the residual add
  fused into oneDNN convolutions, weights cast to bf16 once (autocast would re-cast them every batch),
  activations kept channels_last, the first layer and the residual stream in fp32 (gravity-dominated input;
  see the class).
  It is checked against the plain backbone when built; where it cannot be built (another backbone, a torch
  without the fused oneDNN ops) the plain module runs under bf16 autocast;
- **batching**: all sensors of `batch_size` windows go through the backbone as one batch; no Python loop per
  window; `torch.inference_mode()`; the model in eval mode;
- the small head (sensor tokens, sensor transformer, projection) stays in fp32: it is cheap, and it keeps the
  embeddings close to the fp32 ones.

`torch.compile` was measured on this path (inductor, with and without freezing) and did not beat the fused
backbone, while costing 30-40 s of compilation per process, so it is not used.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zerohar.data.layout import SensorLayout
from zerohar.errors import ZeroharError
from zerohar.model.fused import fused_backbone
from zerohar.model.precision import resolve_precision
from zerohar.text.encoder import get_text_encoder
from zerohar.text.sensors import sensor_description

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------- batching
def _chunks(X) -> Iterator[np.ndarray]:
    if isinstance(X, (np.ndarray, torch.Tensor)):
        yield X
        return
    if not isinstance(X, Iterable):
        raise ZeroharError(f"windows must be an array (N, C, T) or an iterable of such arrays, found {type(X)}")
    yield from X


def _batches(X, batch_size: int) -> Iterator[torch.Tensor]:
    for chunk in _chunks(X):
        for a in range(0, len(chunk), batch_size):
            b = chunk[a : a + batch_size]
            yield (b if isinstance(b, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(b))).float()


def _n_windows(X) -> int | None:
    return len(X) if isinstance(X, (np.ndarray, torch.Tensor)) else None


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise ZeroharError(f"batch size must be at least 1, found {batch_size}")


def _with_backbone(model: nn.Module, fast: nn.Module | None) -> nn.Module:
    """`model`, or a shallow copy of it whose `backbone` is `fast` (the model itself is not modified)."""
    if fast is None:
        return model
    view = copy.copy(model)
    view._modules = dict(model._modules)
    view._modules["backbone"] = fast
    return view


# ---------------------------------------------------------------------------------------------- public API
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
        precision: "auto" (bf16 on CPUs with native bf16, else fp32), "bf16" or "fp32" (the plain model).
        progress: show a progress bar.
        sensor_mask: `(N, S)` bool, True where a sensor is present (None = all present); only with an array X.
        kinds: sensor kinds when `context` is an array (see ZeroHARModel); taken from the layout otherwise.
        text_encoder: a TextEncoder or name for the sensor descriptions (default: the model's).

    Returns:
        `(N, E)` float32.
    """

    _check_batch_size(batch_size)
    device = _device(model)
    prec = resolve_precision(precision, device)
    if isinstance(context, SensorLayout):
        kinds = context if kinds is None else kinds
        context = sensor_context(model, context, text_encoder)
    ctx = torch.as_tensor(np.asarray(context, dtype=np.float32), device=device)  # (S, d_text)
    if sensor_mask is not None and _n_windows(X) is None:
        raise ZeroharError("sensor_mask needs the windows as one array, not a stream of chunks")
    mask = None if sensor_mask is None else torch.as_tensor(np.asarray(sensor_mask, dtype=bool), device=device)

    backbone = getattr(model, "backbone", None) if getattr(model.cfg, "encoder", "harnet") == "harnet" else None
    fast = None
    if backbone is not None and prec == "bf16" and device.type == "cpu":
        fast = fused_backbone(backbone, prec)
    runner = _with_backbone(model, fast)
    # bf16 autocast is the generic path: a GPU, the original encoder, a backbone that cannot be fused.
    autocast = prec == "bf16" and fast is None
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
    backbone: nn.Module, X, *, batch_size: int = 256, precision: str = "auto", progress: bool = False
) -> np.ndarray:
    """Backbone features `(N, D)` float32 of triads `(N, 3, T)` (numpy / torch, or an iterable of chunks).

    `precision="fp32"` runs the plain module; bf16 runs the fused backbone (:class:`FusedHARNet`) on the CPU,
    or the module under bf16 autocast where that cannot be built.
    """
    _check_batch_size(batch_size)
    device = _device(backbone)
    prec = resolve_precision(precision, device)
    fast = fused_backbone(backbone, prec) if prec == "bf16" and device.type == "cpu" else None
    run = fast if fast is not None else backbone
    out = _run(backbone, run, X, batch_size, device, prec == "bf16" and fast is None, progress, "backbone")
    return out if out is not None else np.zeros((0, int(getattr(backbone, "out_dim", 0))), dtype=np.float32)
