"""The fused inference backbone: an inference-only copy of HARNet with the same outputs, faster on CPU.

In bf16 on CPUs with native bf16 (about 2x fp32), and in fp32 on AVX2-only CPUs (1.05-1.14x the plain module);
which one runs where is :mod:`zerohar.inference.plan`'s rule.

Built once from a model's weights (:func:`fused_backbone`): eval BatchNorm folded into the following
convolution where no nonlinearity sits between them, ReLU and the residual add fused into oneDNN convolutions,
weights cast to bf16 once (autocast would re-cast them every batch), activations kept channels_last, the first
layer and the residual stream in fp32 (gravity-dominated input; see :class:`FusedHARNet`). It is checked
against the plain backbone when built, on windows with gravity in them (:func:`check_windows`); where it cannot
be built or disagrees, the caller runs the plain module.
"""

from __future__ import annotations

import logging
import weakref

import torch
import torch.nn.functional as F
from torch import nn

from zerohar.errors import ZeroharError
from zerohar.model.harnet import ACC_CLIP_G, CircularConv1d, Downsample, ResBlock, circular_pad

logger = logging.getLogger(__name__)

#: Leading HARNet layers whose convolutions stay in fp32 on the bf16 path (see :class:`FusedHARNet`).
FP32_LAYERS = 1
#: The plan's fused implementations and their fp32 leading layers: `"fused"` keeps the first layer's convolutions
#: in fp32; `"fused-all"` runs every residual block in bf16 (only the network's first convolution and the residual
#: stream stay fp32). On an Intel Xeon with AMX the first layer's fp32 convolutions were 30% of the bf16 backbone's
#: time (harnet5, 1 thread: fused 1,258, fused-all 1,791 triads/s); elsewhere the two ran within 3%.
FUSED_IMPLEMENTATIONS = {"fused": FP32_LAYERS, "fused-all": 0}


# ---------------------------------------------------------------------------------------------- fused backbone
def _bn_affine(bn: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval BatchNorm as `x * scale + shift` (per channel)."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias.detach() - bn.running_mean * scale


class FusedHARNet(nn.Module):
    """An inference-only copy of a :class:`~zerohar.model.harnet.HARNet` (eval semantics), same outputs.

    Per residual block (pre-activation: BN1, ReLU, conv1, BN2, ReLU, conv2, + identity) it runs three
    kernels: `relu(x * a + b)` for BN1 + ReLU, conv1 with BN2 folded in and ReLU fused, and conv2 (with the
    residual add fused when the stream and the convolution share a dtype). The convolutions are oneDNN's fused
    pointwise convolutions over `(N, C, 1, L)` in channels_last memory; the circular padding is a
    concatenation of the 2 + 2 edge samples. Measured on an AVX2 CPU (harnet5, CPU time on 1 thread), the padding
    is not worth more work: BN1 + ReLU written straight into a preallocated padded buffer ran 1.02x (noise), and
    no circular padding at all (oneDNN's zero padding, an upper bound for edge corrections) 0.88x.

    With `dtype` bf16 the convolutions of layers after the first `fp32_layers` run in bf16 (weights cast
    once), while the residual stream and the BatchNorm affine maps stay in fp32 everywhere. Accelerometer input
    carries gravity (about 1 g) on top of movements of a few hundredths of a g; a bf16 stream (8 significant
    bits, steps of 0.008 near 1) would round those movements away before the first BatchNorm removes the
    offset. After BN + ReLU the convolution inputs are centred, so bf16's relative precision suffices there.
    The fp32 stream costs no measurable speed (the convolutions dominate), and neither does the first layer in
    fp32 (oneDNN's bf16 convolutions gain little at 64 channels): 1,377 vs 1,423 windows/s for harnet5 with
    every convolution but the very first in bf16. Labels of bf16 vs fp32 over all 6,480 labelled HAPT
    windows, 12 prototypes: 99.04% the same with `fp32_layers=1` on a random-weight model with BatchNorm
    calibrated on the data (the hard case: 98.38% with 0, 99.41% with 2 at 0.76x the speed); 99.95% on a
    trained HAPT Stage II model with its label prototypes.

    Args:
        net: the HARNet (its weights are copied; later changes to `net` are not seen).
        dtype: convolution dtype, torch.bfloat16 or torch.float32.
        fp32_layers: leading layers whose convolutions stay in fp32 whatever `dtype` is (the first convolution
            of the network always does).

    Raises:
        TypeError: `net` does not have HARNet's structure.
    """

    def __init__(self, net: nn.Module, dtype: torch.dtype = torch.bfloat16, fp32_layers: int = FP32_LAYERS):
        super().__init__()
        self.dtype = dtype
        self.clip = ACC_CLIP_G if getattr(net, "clip_input", False) else None
        f32 = torch.float32
        self.layers: list[tuple] = []
        i = 0
        while hasattr(net, f"layer{i + 1}"):
            i += 1
            mods = list(getattr(net, f"layer{i}"))
            if not (len(mods) >= 4 and isinstance(mods[0], CircularConv1d) and isinstance(mods[-1], Downsample)
                    and isinstance(mods[-3], nn.BatchNorm1d) and all(isinstance(b, ResBlock) for b in mods[1:-3])):
                raise TypeError(f"layer{i} does not have HARNet's structure")
            dt = f32 if i <= fp32_layers else dtype
            blocks = [(_affine(b.bn1, f32), _conv(b.conv1, dt, b.bn2), _conv(b.conv2, dt)) for b in mods[1:-3]]
            down = mods[-1]
            self.layers.append((
                _conv(mods[0], f32 if i == 1 else dt), blocks, _affine(mods[-3], f32),
                (down.kernel.detach().unsqueeze(2).to(dt), down.factor, down.padding, down.channels), dt,
            ))
        if not self.layers:
            raise TypeError("no layer1..layerN: not a HARNet")
        self.out_dim = int(net.out_dim)
        self._pointwise = torch.ops.mkldnn._convolution_pointwise

    def _conv_relu(self, x: torch.Tensor, w, relu: bool) -> torch.Tensor:
        return self._pointwise(circular_pad(x), w[0], w[1], [0, 0], [1, 1], [1, 1], 1,
                               "relu" if relu else "none", [], "")

    def _conv_add(self, x: torch.Tensor, w, other: torch.Tensor) -> torch.Tensor:
        if other.dtype != x.dtype:  # bf16 convolution into the fp32 stream
            return other.add_(self._conv_relu(x, w, relu=False))
        return self._pointwise.binary(circular_pad(x), other, w[0], w[1], [0, 0], [1, 1], [1, 1], 1,
                                      "add", None, None, [], None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features `(N, D)` float32 of windows `(N, 3, T)`."""
        if self.clip is not None:
            x = x.clamp(-self.clip, self.clip)
        h = x.float().unsqueeze(2).contiguous(memory_format=torch.channels_last)  # (N, 3, 1, T)
        for conv0, blocks, (a, b), (kernel, factor, padding, channels), dt in self.layers:
            h = self._conv_relu(h.to(conv0[0].dtype), conv0, relu=False).float()  # (N, C, 1, L), fp32 stream
            for (a1, b1), conv1, conv2 in blocks:
                t = torch.relu_(torch.addcmul(b1, h, a1)).to(dt)  # BN1 + ReLU
                t = self._conv_relu(t, conv1, relu=True)  # conv1 + BN2 + ReLU
                h = self._conv_add(t, conv2, h)  # conv2 + identity
            t = torch.relu_(torch.addcmul(b, h, a)).to(dt)
            h = F.conv2d(t, kernel, stride=(1, factor), padding=(0, padding), groups=channels)  # (N, C, 1, L')
        if h.shape[-1] != 1:
            raise ZeroharError(f"the backbone expects windows of another length; got {x.shape[-1]} samples")
        return h.flatten(1).float()  # (N, D)


def _affine(bn: nn.BatchNorm1d, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = _bn_affine(bn)
    return a.view(1, -1, 1, 1).to(dtype), b.view(1, -1, 1, 1).to(dtype)


def _conv(conv: nn.Conv1d, dtype: torch.dtype, bn: nn.BatchNorm1d | None = None) -> tuple:
    """Weight `(C_out, C_in, 1, 5)` (and bias) of `conv`, with a following eval BatchNorm `bn` folded in."""
    w = conv.weight.detach().clone()  # (C_out, C_in, 5)
    bias = None
    if bn is not None:  # BN(conv(x)) = conv'(x) + b': scale the output channels, add the shift
        scale, shift = _bn_affine(bn)
        w = w * scale[:, None, None]
        bias = shift.to(dtype)
    return w.unsqueeze(2).to(dtype).contiguous(), bias


#: Fused backbones by source module, rebuilt when its weights change (training in between).
_FUSED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _weights_signature(net: nn.Module) -> tuple:
    return tuple((t.data_ptr(), t._version) for t in list(net.parameters()) + list(net.buffers()))


def check_windows(n: int = 8, window: int = 150, seed: int = 0) -> torch.Tensor:
    """Windows `(n, 3, window)` like accelerometer data, for the self-checks of the fast backbones.

    Gravity (+-1 g) on one axis (a different axis and sign per window) plus movement: three slow sinusoids per
    axis and 2% noise, at a level from 0.01 g (sitting still) to 0.5 g (walking) that differs between windows.
    Zero-mean noise would hide the failure that matters on wrist data: a path that rounds away small movements
    riding on the 1 g offset (bf16 has steps of 0.008 near 1).
    """
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(window, dtype=torch.float32) / 30.0  # seconds at 30 Hz
    freq = 0.3 + 2.7 * torch.rand(n, 3, 3, 1, generator=g)  # (n, 3 axes, 3 components, 1) Hz
    phase = 2 * torch.pi * torch.rand(n, 3, 3, 1, generator=g)
    level = 10 ** torch.linspace(-2, -0.3, n).view(n, 1, 1)  # (n, 1, 1) g: 0.01 to 0.5
    x = level * (torch.sin(2 * torch.pi * freq * t + phase).mean(2) + 0.02 * torch.randn(n, 3, window, generator=g))
    for i in range(n):  # (n, 3, T): gravity on one axis
        x[i, i % 3] += 1.0 if (i // 3) % 2 == 0 else -1.0
    return x


def agreement(net: nn.Module, candidate: nn.Module, x: torch.Tensor | None = None) -> float:
    """The lowest cosine similarity between the features of `candidate` and of `net` (eval mode, restored) on
    windows `x` (default :func:`check_windows` of the net's window length)."""
    if x is None:
        x = check_windows(window=int(getattr(net, "window", 150)))
    was_training = net.training
    net.eval()
    try:
        with torch.inference_mode():
            ref, got = net(x).float(), candidate(x).float()  # (n, D)
    finally:
        net.train(was_training)
    return F.cosine_similarity(ref, got, dim=1).min().item()


def fused_backbone(net: nn.Module, precision: str = "bf16", fp32_layers: int = FP32_LAYERS) -> nn.Module | None:
    """A :class:`FusedHARNet` of `net` for `precision` ("bf16" / "fp32"), or None where it cannot be used.

    The fused network is checked against `net` when it is built, on windows with gravity in them
    (:func:`check_windows`): the cosine similarity of the features must be above 0.999; on any failure the caller
    falls back to the plain module. Cached per `net` (and `fp32_layers`) until its weights change.

    Args:
        fp32_layers: leading layers kept in fp32 on the bf16 path (:class:`FusedHARNet`); 0 is the plan's
            `"fused-all"` implementation (:data:`FUSED_IMPLEMENTATIONS`).
    """
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    sig = _weights_signature(net)
    key = (dtype, fp32_layers)
    cached = _FUSED.get(net, {}).get(key)
    if cached is not None and cached[0] == sig:
        return cached[1]
    fused = None
    try:
        candidate = FusedHARNet(net, dtype, fp32_layers=fp32_layers)
        cos = agreement(net, candidate)
        if cos > 0.999:
            fused = candidate
        else:
            logger.warning("the fused backbone disagrees with the plain one (cosine %.4f); not using it", cos)
    except (TypeError, AttributeError, RuntimeError) as e:
        logger.debug("fused backbone unavailable (%s: %s); using the plain one", e.__class__.__name__, e)
    _FUSED.setdefault(net, {})[key] = (sig, fused)
    return fused
