"""Stage I: each channel embedding against the projected description of its channel (axis, sensor, placement,
device); equal texts are positives. Selected on held-out subjects' channel retrieval accuracy: does each channel
embedding retrieve its own description among the layout's?
"""

from __future__ import annotations

import numpy as np
import torch

from zerohar.config import Config
from zerohar.model.precision import autocast
from zerohar.text.sensors import axis_description
from zerohar.train.base import ZeroHARTask, build_zerohar_model


class Stage1Task(ZeroHARTask):
    """Channel embeddings <-> per-axis sensor descriptions."""

    gather_keys = ("channels",)
    metric = "channel_acc"
    # No large rotations: the axes' identity is what Stage I learns. A few degrees mimic device placement.
    aug_deg, aug_scale = 10.0, 0.1

    def __init__(self, cfg: Config, dist):
        super().__init__(cfg, dist)

        self.channels = self.layout.channels
        texts = [axis_description(ch) for ch in self.channels]
        self.texts = list(dict.fromkeys(texts))  # unique texts; equal descriptions are one text (positives)
        self.text_ids = torch.tensor([self.texts.index(t) for t in texts], device=self.device)  # (C,)
        self.text_emb = self.embed(self.texts)  # (U, d_text)
        self.model = build_zerohar_model(cfg, cfg.init)

    def forward(self, model, batch: dict) -> dict:
        ch = model.encode_channels(batch["x"], kinds=self.kinds)  # (b, C, E) normalised
        txt = model.encode_text(self.text_emb)  # (U, E) normalised
        # `* 1` makes the scale a non-leaf output, so DDP sees the parameter used in this forward.
        return {"channels": ch, "text": txt, "scale": model.logit_scale * 1}

    def loss(self, out: dict, batch: dict) -> torch.Tensor:
        ch = out["channels"].float()  # (B, C, E)
        b, c, e = ch.shape
        targets = self.text_ids.repeat(b)  # (B*C,)
        return self.criterion(ch.reshape(b * c, e), out["text"].float(), targets, out["scale"])

    @torch.no_grad()
    def validate(self, model, bf16: bool) -> dict:
        model.eval()
        txt = model.encode_text(self.text_emb).float()  # (U, E)
        hits = []
        for _, x in self._val_batches():
            with autocast(bf16, self.device):
                ch = model.encode_channels(x, kinds=self.kinds)  # (b, C, E)
            hits.append((ch.float() @ txt.T).argmax(-1).cpu())  # (b, C)
        model.train()
        return channel_retrieval_report(torch.cat(hits).numpy(), self.text_ids.cpu().numpy(), self.channels)


def channel_retrieval_report(pred: np.ndarray, truth: np.ndarray, channels) -> dict:
    """Stage I validation: does each channel embedding retrieve its own description among the layout's?

    Args:
        pred: `(N, C)` text id retrieved for each channel of each window.
        truth: `(C,)` the text id of each channel's own description.
        channels: the layout's channels (kind and axis of each).

    Returns:
        `channel_acc` (overall), `kind_acc` / `axis_acc` (the retrieved description names the right sensor
        kind / axis), accuracy per kind (`acc_acc`, `gyro_acc`) and per axis (`x_acc`, ...), and per channel.
    """
    ok = pred == truth[None, :]  # (N, C)
    out = {"channel_acc": float(ok.mean())}
    # The channel each retrieved text describes (the first channel with that text).
    first = {int(t): i for i, t in reversed(list(enumerate(truth)))}
    pred_ch = np.vectorize(lambda p: first[int(p)])(pred)  # (N, C)
    kinds = np.array([ch.sensor for ch in channels])
    axes = np.array([ch.axis for ch in channels])
    out["kind_acc"] = float((kinds[pred_ch] == kinds[None, :]).mean())
    out["axis_acc"] = float((axes[pred_ch] == axes[None, :]).mean())
    for k in dict.fromkeys(kinds):
        out[f"{k}_acc"] = float(ok[:, kinds == k].mean())
    for a in dict.fromkeys(axes):
        out[f"{a}_acc"] = float(ok[:, axes == a].mean())
    names = [f"{ch.sensor}_{ch.axis}" for ch in channels]
    if len(set(names)) < len(names):
        names = [f"s{i // 3}_{n}" for i, n in enumerate(names)]
    for i, n in enumerate(names):
        out[f"channel/{n}"] = float(ok[:, i].mean())
    return out


