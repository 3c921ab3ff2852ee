"""The ZeroHAR paper's IMU encoder, as a baseline: a transformer over the time steps of all channels.

ZeroHAR (AAAI 2025) encodes a window by turning each time step of all channels, together with each channel's
sensor context, into one token and running a transformer over time. This module is our reading of that design,
made layout-agnostic and small enough to train on a CPU:

- Time is cut into patches of `patch` samples (10 samples = 1/3 s at 30 Hz by default, so a 5 s window is 15
  tokens instead of 150): a per-time-step transformer on 150 steps is ~100x the attention cost for the same
  information at 30 Hz. `patch=1` is the literal per-time-step version.
- Token of patch t = masked mean over channels c of `fuse(value(x[c, t]) + context(c))`, where `context(c)` is
  the projected sensor-context text embedding of c's triad plus a learned axis (x / y / z) embedding. The
  non-linear `fuse` keeps each value bound to its channel's context before channels are pooled, so any number
  of channels (and a padding mask) works.
- Sinusoidal positional encoding, a pre-norm TransformerEncoder over time, mean pooling, projection to E.

Stage I (:meth:`OriginalEncoder.encode_channels`) runs the same value embedding and transformer on each channel
alone, **without** its context (the point of Stage I is to recognise the context from the signal), and a head
P maps the pooled state to the channel embedding.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_positions(n: int, d: int, device=None, dtype=None) -> torch.Tensor:
    """Fixed sinusoidal positional encoding `(n, d)` (Vaswani et al., 2017)."""
    pos = torch.arange(n, device=device, dtype=torch.float32)[:, None]  # (n, 1)
    freq = torch.exp(torch.arange(0, d, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(n, d, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : d // 2]
    return pe.to(dtype) if dtype is not None else pe


def transformer(d_model: int, n_heads: int, n_layers: int, dropout: float) -> nn.TransformerEncoder:
    """A pre-norm, GELU, batch-first TransformerEncoder."""
    layer = nn.TransformerEncoderLayer(
        d_model, n_heads, dim_feedforward=4 * d_model, dropout=dropout, activation="gelu",
        batch_first=True, norm_first=True,
    )
    return nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)


class OriginalEncoder(nn.Module):
    """The ZeroHAR paper's encoder (patched time x all channels), with the zerohar encode interface.

    Args:
        embed_dim: joint space size E.
        d_model: token width.
        patch: samples per time token.
        n_layers, n_heads, dropout: transformer over time.
        context_fusion: "add" (value + context), "concat" (linear map of [value, context]) or "none".
    """

    def __init__(
        self, embed_dim: int = 256, d_model: int = 128, patch: int = 10, n_layers: int = 2, n_heads: int = 4,
        dropout: float = 0.1, context_fusion: str = "add",
    ):
        super().__init__()
        self.patch, self.d_model, self.context_fusion = patch, d_model, context_fusion
        self.value = nn.Linear(patch, d_model)
        self.axis = nn.Embedding(3, d_model)
        self.context = nn.Linear(embed_dim, d_model)
        self.merge = nn.Linear(2 * d_model, d_model) if context_fusion == "concat" else None
        self.fuse = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, d_model), nn.GELU(),
                                  nn.Linear(d_model, d_model))
        self.time = transformer(d_model, n_heads, n_layers, dropout)
        self.norm = nn.LayerNorm(d_model)
        self.channel_head = nn.Linear(d_model, embed_dim)  # Stage I head P
        self.window_head = nn.Linear(d_model, embed_dim)

    def _patches(self, x: torch.Tensor) -> torch.Tensor:
        """`(..., T)` -> `(..., T / patch, patch)`; a ragged end is padded by repeating the last sample."""
        rem = x.shape[-1] % self.patch
        if rem:
            x = torch.cat([x, x[..., -1:].expand(*x.shape[:-1], self.patch - rem)], dim=-1)
        return x.unflatten(-1, (-1, self.patch))

    def _over_time(self, tokens: torch.Tensor) -> torch.Tensor:
        """Transformer over time tokens `(N, P, d)`, mean-pooled and normalised -> `(N, d)`."""
        tokens = tokens + sinusoidal_positions(tokens.shape[1], self.d_model, tokens.device, tokens.dtype)
        return self.norm(self.time(tokens).mean(1))  # (N, d)

    def encode_channels(self, x: torch.Tensor) -> torch.Tensor:
        """Channel embeddings (unnormalised) of windows `(B, C, T)` -> `(B, C, E)`; context is not an input."""
        b, c, _ = x.shape
        v = self.value(self._patches(x.reshape(b * c, -1)))  # (B*C, P, d)
        h = self._over_time(self.fuse(v))  # (B*C, d)
        return self.channel_head(h).view(b, c, -1)  # (B, C, E)

    def encode_windows(
        self, triads: torch.Tensor, context: torch.Tensor, sensor_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Window embeddings (unnormalised).

        Args:
            triads: `(B, S, 3, T)` preprocessed signals.
            context: `(B, S, E)` projected sensor-context text embeddings.
            sensor_mask: `(B, S)` bool, True where the sensor is present, or None.

        Returns:
            `(B, E)`.
        """
        b, s = triads.shape[:2]
        v = self.value(self._patches(triads))  # (B, S, 3, P, d)
        if self.context_fusion != "none":
            ctx = self.context(context)[:, :, None, None, :] + self.axis.weight[None, None, :, None, :]  # (B,S,3,1,d)
            if self.merge is not None:
                v = self.merge(torch.cat([v, ctx.expand_as(v)], dim=-1))  # (B, S, 3, P, d)
            else:
                v = v + ctx
        tok = self.fuse(v)  # (B, S, 3, P, d)
        w = torch.ones(b, s, device=triads.device) if sensor_mask is None else sensor_mask
        w = w[:, :, None, None, None].to(tok.dtype)  # (B, S, 1, 1, 1)
        tok = (tok * w).sum((1, 2)) / (3 * w.sum((1, 2)).clamp(min=1))  # (B, P, d) / (B, 1, 1)
        return self.window_head(self._over_time(tok))  # (B, E)
