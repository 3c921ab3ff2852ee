"""HARNet: the self-supervised 1D ResNet feature extractor of SSL-Wearables, reimplemented.

Written from the architecture facts in `reference/HARNET.md` only (the original code is under an academic
licence). The module layout reproduces the released state_dict exactly, so the released checkpoints load
unchanged once their `module.feature_extractor.` prefix is stripped (see :mod:`zerohar.model.pretrained`).

Each of the five layers is an `nn.Sequential`:

=========  ==========================================================================
index      module
=========  ==========================================================================
0          Conv1d(in, out, 5, padding 2, circular, no bias)
1..m       pre-activation residual blocks (BN, ReLU, Conv, BN, ReLU, Conv, + identity)
m+1        BatchNorm1d(out)
m+2        ReLU
m+3        anti-aliasing downsample (fixed depthwise kernel, a buffer named `kernel`)
=========  ==========================================================================

Input: `(N, 3, T)` accelerometer (or any triad) at 30 Hz, T = 150 / 300 / 900 for harnet5 / 10 / 30.
Output: `(N, D)` with D = 512 (harnet5) or 1024 (harnet10, harnet30); the time axis is reduced to 1.

**Narrower networks.** `HARNet(variant, width=w)` scales every layer's channels by `w` (harnet5 at 0.5: 32, 64,
128, 128, 256) and keeps everything else: residual blocks, kernels, circular padding, anti-aliasing downsamples,
input length, module names. It is therefore still a HARNet to the fast paths (the fused backbone, the ONNX
export). :class:`DistilledHARNet` puts a linear map after it to the full network's feature size, so a student
trained to match a full backbone (:mod:`zerohar.train.distill`) replaces `model.backbone` unchanged. Width 1
is the released architecture, whose state_dict loads the released files.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zerohar.config import VARIANTS
from zerohar.errors import ZeroharError

#: Per-layer (out channels, residual blocks, downsample factor, downsample order), from HARNET.md.
LAYER_CONFIGS: dict[str, tuple[tuple[int, int, int, int], ...]] = {
    "harnet5": ((64, 2, 2, 2), (128, 2, 2, 2), (256, 2, 3, 1), (256, 2, 3, 1), (512, 0, 3, 1)),
    "harnet10": ((64, 2, 2, 2), (128, 2, 2, 2), (256, 2, 5, 1), (512, 2, 5, 1), (1024, 0, 3, 1)),
    "harnet30": ((64, 2, 3, 1), (128, 2, 3, 1), (256, 2, 5, 1), (512, 2, 5, 1), (1024, 0, 4, 0)),
}
#: The fewest channels a layer of a narrower HARNet keeps (`width` scales the channels of LAYER_CONFIGS).
MIN_CHANNELS = 4

#: The clip range (g) of the original pipeline, for accelerometer input.
ACC_CLIP_G = 3.0


def check_variant(variant: str) -> str:
    """Return `variant` if it names a HARNet variant, else raise a ZeroharError listing the known ones."""
    if variant not in VARIANTS:
        raise ZeroharError(f"unknown HARNet variant {variant!r}: expected one of {', '.join(VARIANTS)}")
    return variant


def check_width(width: float) -> float:
    """Return `width` as a float if it is a channel factor in (0, 1], else raise a ZeroharError."""
    try:
        w = float(width)
    except (TypeError, ValueError):
        raise ZeroharError(f"HARNet width must be a number in (0, 1], found {width!r}") from None
    if not 0 < w <= 1:
        raise ZeroharError(f"HARNet width must be in (0, 1] (a fraction of the released channels), found {w:g}")
    return w


def layer_channels(variant: str, width: float = 1.0) -> tuple[int, ...]:
    """Output channels of the five layers of `variant` scaled by `width` (rounded, at least MIN_CHANNELS)."""
    w = check_width(width)
    return tuple(c if w == 1 else max(MIN_CHANNELS, int(round(c * w))) for c, *_ in LAYER_CONFIGS[variant])


def circular_pad(x: torch.Tensor, p: int = 2) -> torch.Tensor:
    """Pad the last (time) axis circularly by `p` samples each side (`(..., L)` -> `(..., L + 2p)`): one `cat`
    of the edge samples, cheaper than `F.pad(mode="circular")`. The only circular padding of the package."""
    return torch.cat([x[..., -p:], x, x[..., :p]], dim=-1)


class CircularConv1d(nn.Conv1d):
    """Conv1d, kernel 5, circular padding 2, no bias; state_dict identical to `nn.Conv1d`.

    Accepts `(N, C, L)` or the internal 2-D form `(N, C, 1, L)` in channels_last memory, which oneDNN runs
    faster on CPU than 1-D convolutions (no layout reorders between layers). The circular pad is one `cat`
    of the 2 + 2 edge samples, cheaper than `F.pad(mode="circular")`, followed by a padding-free conv.
    """

    def __init__(self, c_in: int, c_out: int):
        super().__init__(c_in, c_out, kernel_size=5, stride=1, padding=0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = circular_pad(x)  # (N, C, [1,] L + 4)
        if x.ndim == 4:
            return F.conv2d(x, self.weight.unsqueeze(2))  # (N, C_out, 1, L)
        return F.conv1d(x, self.weight)  # (N, C_out, L)


class BatchNorm(nn.BatchNorm1d):
    """BatchNorm1d that also takes the internal `(N, C, 1, L)` form (same statistics, same state_dict)."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.ndim not in (2, 3, 4):
            raise ValueError(f"expected 2-D, 3-D or 4-D input (got {input.ndim}-D input)")


def _conv5(c_in: int, c_out: int) -> CircularConv1d:
    return CircularConv1d(c_in, c_out)


class ResBlock(nn.Module):
    """Pre-activation residual block: BN, ReLU, Conv, BN, ReLU, Conv, then + identity (channels unchanged)."""

    def __init__(self, channels: int):
        super().__init__()
        # Registration order fixes the state_dict key order; it follows the released files (bn1, bn2, conv1, conv2).
        self.bn1 = BatchNorm(channels)
        self.bn2 = BatchNorm(channels)
        self.conv1 = _conv5(channels, channels)
        self.conv2 = _conv5(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.relu(self.bn1(x)))  # (N, C, L)
        h = self.conv2(F.relu(self.bn2(h)))  # (N, C, L)
        return x + h


def downsample_kernel(factor: int, order: int) -> torch.Tensor:
    """The anti-aliasing filter: a box of width `factor` convolved with itself `order` times, summing to 1.

    Returns a 1-D tensor of length `(factor - 1) * (order + 1) + 1`.
    """
    box = torch.ones(factor, dtype=torch.float64)
    k = box.clone()
    for _ in range(order):
        # Full convolution of k with the box (conv1d is a correlation; the box is symmetric, so equal).
        k = F.conv1d(k.view(1, 1, -1), box.view(1, 1, -1), padding=factor - 1).view(-1)
    return (k / k.sum()).float()


class Downsample(nn.Module):
    """Depthwise low-pass filter then subsampling by `factor`; the fixed kernel is a buffer (not trained).

    Padding is `order * (factor - 1) / 2` zeros, which keeps the filter centred.
    """

    def __init__(self, channels: int, factor: int, order: int):
        super().__init__()
        if (order * (factor - 1)) % 2:
            raise ValueError(f"downsample factor {factor} with order {order} has no centred padding")
        self.channels, self.factor, self.order = channels, factor, order
        self.padding = order * (factor - 1) // 2
        k = downsample_kernel(factor, order)
        self.register_buffer("kernel", k.view(1, 1, -1).repeat(channels, 1, 1))  # (C, 1, L)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel.to(x.dtype)  # (C, 1, K)
        c, f, p = self.channels, self.factor, self.padding
        if x.ndim == 4:
            return F.conv2d(x, k.unsqueeze(2), stride=(1, f), padding=(0, p), groups=c)  # (N, C, 1, L / f)
        return F.conv1d(x, k, stride=f, padding=p, groups=c)  # (N, C, L / f)

    def extra_repr(self) -> str:
        return f"{self.channels}, factor={self.factor}, order={self.order}"


def _layer(c_in: int, c_out: int, n_blocks: int, factor: int, order: int) -> nn.Sequential:
    mods: list[nn.Module] = [_conv5(c_in, c_out)]
    mods += [ResBlock(c_out) for _ in range(n_blocks)]
    mods += [BatchNorm(c_out), nn.ReLU(inplace=True), Downsample(c_out, factor, order)]
    return nn.Sequential(*mods)


class HARNet(nn.Module):
    """The HARNet feature extractor.

    Args:
        variant: "harnet5", "harnet10" or "harnet30" (5 s, 10 s, 30 s windows at 30 Hz).
        width: channel factor in (0, 1] of every layer (see the module docstring); 1 is the released network.
        clip_input: clip the input to +-3 g before the network, as the original pipeline does for
            accelerometer data. Off by default because zerohar also feeds gyroscope (and magnetometer)
            triads through the same backbone; :class:`~zerohar.model.zerohar.ZeroHARModel` clips the
            accelerometer triads itself.

    Attributes:
        out_dim: feature size D (512 or 1024 at width 1; the last layer's channels otherwise).
        window: expected window length T in samples.
        width: the channel factor.

    Example:
        >>> net = HARNet("harnet5").eval()
        >>> net(torch.randn(4, 3, 150)).shape
        torch.Size([4, 512])
    """

    def __init__(self, variant: str = "harnet5", clip_input: bool = False, width: float = 1.0):
        super().__init__()
        self.variant = check_variant(variant)
        self.window = VARIANTS[variant]
        self.clip_input = clip_input
        self.width = check_width(width)
        c_in = 3
        channels = layer_channels(variant, self.width)
        for i, (c_out, (_, m, factor, order)) in enumerate(zip(channels, LAYER_CONFIGS[variant]), start=1):
            self.add_module(f"layer{i}", _layer(c_in, c_out, m, factor, order))
            c_in = c_out
        self.out_dim = c_in
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-normal convs (fan-out, ReLU), BN weight 1 / bias 0: the usual ResNet initialisation."""
        for mod in self.modules():
            if isinstance(mod, nn.Conv1d):
                nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(mod, nn.BatchNorm1d):
                mod.reset_parameters()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The feature map `(N, D, 1)` of windows `(N, 3, T)`, T = `self.window`."""
        if x.ndim != 3 or x.shape[1] != 3 or x.shape[2] != self.window:
            raise ZeroharError(
                f"{self.variant} expects windows shaped (N, 3, {self.window}) ({self.window // 30} s at 30 Hz); "
                f"got {tuple(x.shape)}"
            )
        if self.clip_input:
            x = x.clamp(-ACC_CLIP_G, ACC_CLIP_G)
        # Run as 2-D convolutions over (N, C, 1, L) in channels_last memory: the fast oneDNN path on CPU.
        h = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)  # (N, 3, 1, T)
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4, self.layer5):
            h = layer(h)
        h = h.squeeze(2)  # (N, D, L)
        # The length path of HARNET.md ends at 1 for every variant's window; anything else is a wiring bug.
        assert h.shape[-1] == 1, f"{self.variant}: final time axis {h.shape[-1]} != 1"
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features `(N, D)` of windows `(N, 3, T)`."""
        return self.features(x).flatten(1)  # (N, D)

    def extra_repr(self) -> str:
        width = f", width={self.width:g}" if self.width != 1 else ""
        return (f"variant={self.variant!r}, window={self.window}, out_dim={self.out_dim}, "
                f"clip_input={self.clip_input}{width}")


class DistilledHARNet(nn.Module):
    """A narrower HARNet (`net`) and a linear map (`proj`) to another feature size: a distilled backbone.

    Trained so its features match those of a full HARNet (:mod:`zerohar.train.distill`), it takes the full
    backbone's place in a :class:`~zerohar.model.zerohar.ZeroHARModel` (`(N, 3, T) -> (N, out_dim)`), and the
    rest of the model reads its features unchanged. The fast inference paths run `net` as they run any HARNet
    (fused, int8) and `proj` after it as a plain Linear (:func:`zerohar.inference.embed.plan_backbone`).

    Args:
        variant: the HARNet variant (window length and layer plan).
        width: channel factor of `net` (0.5: about a quarter of the convolution work per triad).
        out_dim: feature size of the output (the teacher's: 512 for harnet5); default the full variant's.

    Example:
        >>> DistilledHARNet("harnet5", 0.5)(torch.randn(4, 3, 150)).shape
        torch.Size([4, 512])
    """

    def __init__(self, variant: str = "harnet5", width: float = 0.5, out_dim: int | None = None):
        super().__init__()
        self.net = HARNet(variant, width=width)
        self.variant, self.window, self.width = self.net.variant, self.net.window, self.net.width
        self.out_dim = int(out_dim or LAYER_CONFIGS[self.variant][-1][0])
        self.clip_input = False  # clipping is per triad kind, done by the model (as for HARNet)
        self.proj = nn.Linear(self.net.out_dim, self.out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features `(N, out_dim)` of windows `(N, 3, T)`."""
        return self.proj(self.net(x))  # (N, out_dim)

    def extra_repr(self) -> str:
        return f"variant={self.variant!r}, width={self.width:g}, out_dim={self.out_dim}"


def narrowed(net: HARNet, width: float, keep: dict[str, torch.Tensor]) -> HARNet:
    """A narrower HARNet made of `net`'s own weights: the channels `keep` names, every other one removed.

    `keep["layer{i}"]` are the kept channels of layer i's residual stream (its first conv's outputs, every
    block's input and output, its final BN and downsample), `keep["layer{i}.{b}"]` those inside residual block b
    of it (conv1's outputs, bn2, conv2's inputs); each holds as many as `layer_channels(variant, width)` gives
    the layer. Weights, BN parameters and running statistics are copied for the
    kept channels; the result is an ordinary `HARNet(variant, width=width)`. With every channel kept it is `net`
    again (the test); with fewer, the layers after a cut see fewer inputs, so their BN statistics are stale until
    recalibrated (:func:`zerohar.train.distill.pruned_student` does).

    Raises:
        ZeroharError: `keep` does not give every layer and block the channel count of `width`.
    """
    out = HARNet(net.variant, clip_input=net.clip_input, width=width)
    counts = tuple(len(keep[f"layer{i}"]) for i in range(1, 6))
    if counts != layer_channels(net.variant, out.width):
        raise ZeroharError(f"channels kept per layer {list(counts)} are not those of {net.variant} at width "
                           f"{out.width:g} ({list(layer_channels(net.variant, out.width))})")
    prev = torch.arange(3)
    with torch.no_grad():
        for i in range(1, 6):
            src, dst, k = getattr(net, f"layer{i}"), getattr(out, f"layer{i}"), keep[f"layer{i}"].long()
            dst[0].weight.copy_(src[0].weight[k][:, prev])
            n_blocks = sum(isinstance(m, ResBlock) for m in src)
            for b in range(1, n_blocks + 1):
                j = keep[f"layer{i}.{b}"].long()
                if len(j) != len(k):
                    raise ZeroharError(f"block {b} of layer {i} keeps {len(j)} channels, its stream {len(k)}")
                _copy_bn(dst[b].bn1, src[b].bn1, k)
                _copy_bn(dst[b].bn2, src[b].bn2, j)
                dst[b].conv1.weight.copy_(src[b].conv1.weight[j][:, k])
                dst[b].conv2.weight.copy_(src[b].conv2.weight[k][:, j])
            _copy_bn(dst[n_blocks + 1], src[n_blocks + 1], k)
            prev = k
    return out


def _copy_bn(dst: nn.BatchNorm1d, src: nn.BatchNorm1d, idx: torch.Tensor) -> None:
    """Copy BN parameters and running statistics of channels `idx` of `src` into `dst` (in place)."""
    dst.weight.copy_(src.weight[idx])
    dst.bias.copy_(src.bias[idx])
    dst.running_mean.copy_(src.running_mean[idx])
    dst.running_var.copy_(src.running_var[idx])
    dst.num_batches_tracked.copy_(src.num_batches_tracked)
