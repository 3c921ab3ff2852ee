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
        ch = model.encode_channels(batch["x"], kinds=self.kinds, sensor_mask=batch.get("sensor_mask"))  # (b, C, E)
        txt = model.encode_text(self.text_emb)  # (U, E) normalised
        # `* 1` makes the scale a non-leaf output, so DDP sees the parameter used in this forward.
        return {"channels": ch, "text": txt, "scale": model.logit_scale * 1}

    def loss(self, out: dict, batch: dict) -> torch.Tensor:
        ch = out["channels"].float()  # (B, C, E)
        b, c, e = ch.shape
        targets = self.text_ids.repeat(b)  # (B*C,)
        ch = ch.reshape(b * c, e)
        if self.present is not None:  # several sources: only the channels a window has
            keep = torch.from_numpy(np.repeat(self.present[batch["rows"]], 3, axis=1).reshape(-1)).to(ch.device)
            ch, targets = ch[keep], targets[keep]
        return self.criterion(ch, out["text"].float(), targets, out["scale"])

    @torch.no_grad()
    def validate(self, model, bf16: bool) -> dict:
        model.eval()
        txt = model.encode_text(self.text_emb).float()  # (U, E)
        hits, rows_all = [], []
        for rows, x in self._val_batches():
            with autocast(bf16, self.device):
                ch = model.encode_channels(x, kinds=self.kinds, sensor_mask=self.val_mask(rows))  # (b, C, E)
            hits.append((ch.float() @ txt.T).argmax(-1).cpu())  # (b, C)
            rows_all.append(rows)
        model.train()
        present = None if self.present is None else np.repeat(self.present[np.concatenate(rows_all)], 3, axis=1)
        return channel_retrieval_report(torch.cat(hits).numpy(), self.text_ids.cpu().numpy(), self.channels,
                                        present=present)


def channel_retrieval_report(pred: np.ndarray, truth: np.ndarray, channels, present: np.ndarray | None = None
                             ) -> dict:
    """Stage I validation: does each channel embedding retrieve its own description among the layout's?

    Args:
        pred: `(N, C)` text id retrieved for each channel of each window.
        truth: `(C,)` the text id of each channel's own description.
        channels: the layout's channels (kind and axis of each).
        present: `(N, C)` bool, the channels each window has (several sources); None = all. Every figure is
            then over the present channels only (retrieval still among every description of the layout).

    Returns:
        `channel_acc` (overall), `kind_acc` / `axis_acc` (the retrieved description names the right sensor
        kind / axis), accuracy per kind (`acc_acc`, `gyro_acc`) and per axis (`x_acc`, ...), and per channel.
    """
    ok = pred == truth[None, :]  # (N, C)
    have = np.ones_like(ok) if present is None else present.astype(bool)

    def mean(a: np.ndarray, m: np.ndarray) -> float:
        return float(a[m].mean()) if m.any() else float("nan")

    out = {"channel_acc": mean(ok, have)}
    # The channel each retrieved text describes (the first channel with that text).
    first = {int(t): i for i, t in reversed(list(enumerate(truth)))}
    pred_ch = np.vectorize(lambda p: first[int(p)])(pred)  # (N, C)
    kinds = np.array([ch.sensor for ch in channels])
    axes = np.array([ch.axis for ch in channels])
    out["kind_acc"] = mean(kinds[pred_ch] == kinds[None, :], have)
    out["axis_acc"] = mean(axes[pred_ch] == axes[None, :], have)
    if present is not None:
        places = np.array([ch.placement for ch in channels])
        out["placement_acc"] = mean(places[pred_ch] == places[None, :], have)
    for k in dict.fromkeys(kinds):
        out[f"{k}_acc"] = mean(ok[:, kinds == k], have[:, kinds == k])
    for a in dict.fromkeys(axes):
        out[f"{a}_acc"] = mean(ok[:, axes == a], have[:, axes == a])
    names = [f"{ch.sensor}_{ch.axis}" for ch in channels]
    if len(set(names)) < len(names):
        names = [f"s{i // 3}_{n}" for i, n in enumerate(names)]
    for i, n in enumerate(names):
        out[f"channel/{n}"] = mean(ok[:, i], have[:, i])
    return out


