"""Helpers shared by test modules (importable: pytest puts tests/ on sys.path through tests/conftest.py)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from zerohar.config import resolve_config
from zerohar.data.layout import UNITS, Channel, SensorLayout

#: A tiny model (the original encoder at width 32): each training run on the embedded data takes a second or two.
TINY_MODEL = {"encoder": "original", "embed_dim": 32, "d_model": 32, "n_heads": 2, "orig_d_model": 32,
              "orig_layers": 1, "dropout": 0.0}
#: Three subjects of the embedded HAPT data.
SUBJECTS = ["01", "02", "03"]


def tiny_cfg(stage: str, data: dict | None = None, model: dict | None = None, **train):
    """A resolved config for `stage` on three embedded HAPT subjects, a tiny model and two steps."""
    over = {
        "data": {"dataset": "hapt", "fold": "fold1", "subjects": SUBJECTS, **(data or {})},
        "model": {**TINY_MODEL, **(model or {})},
        "train": {"epochs": 1, "batch_size": 8, "max_steps_per_epoch": 2, "val_fraction": 0.34,
                  "max_val_windows": 48, **train},
    }
    if stage == "pretrain":
        over["model"] = {"backbone": "harnet5"}
        over["data"]["fold"] = None
    return resolve_config(stage, overrides=over)


def layout_of(*specs) -> SensorLayout:
    """specs: (sensor, placement, device) triads, canonical units."""
    chans = [Channel(s, a, p, d, UNITS[s][0]) for s, p, d in specs for a in ("x", "y", "z")]
    return SensorLayout.from_channels(chans)


def signal_of(t: np.ndarray, seed: int = 0) -> np.ndarray:
    """`(len(t), 6)` smooth random signal with gravity on the third channel (an accelerometer in g + a gyro)."""
    rng = np.random.default_rng(seed)
    f = rng.uniform(0.2, 3.0, size=6)
    x = np.sin(2 * np.pi * f * t[:, None]) + 0.05 * rng.normal(size=(len(t), 6))
    x[:, 2] += 1.0  # gravity on z, so the unit check sees an accelerometer in g
    return x


def randomise_bn(net: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters, so BN folding is really exercised."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return net
