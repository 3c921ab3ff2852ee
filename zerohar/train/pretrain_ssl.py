"""SSL pretraining of the HARNet backbone (`zerohar pretrain`): the pretext multi-task of SSL-Wearables.

Each training window's triads (accelerometers by default, `train.pretrain_sensors`) get the input handling of
the ZeroHAR model (:func:`~zerohar.model.zerohar.scale_and_clip`), are transformed by the pretext tasks of
:mod:`zerohar.losses.pretext` (arrow of time, permutation, time warp), and a head per task predicts whether its
transformation was applied (:func:`~zerohar.losses.pretext.pretext_loss_from_logits`). Selected on the
held-out subjects' pretext accuracy. The artefact is the backbone alone, in HARNet's key format.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from zerohar.config import Config
from zerohar.errors import ZeroharError
from zerohar.losses.pretext import PRETEXT_TASKS, PretextHeads, pretext_batch, pretext_loss_from_logits
from zerohar.model.precision import autocast
from zerohar.model.pretrained import load_backbone
from zerohar.train.base import BaseTask, TriadInput, check_backbone_run, save_backbone_run


class PretrainTask(BaseTask):
    """SSL pretext multi-task on single triads (arrow of time, permutation, time warp)."""

    metric = "pretext_acc"

    def __init__(self, cfg: Config, dist):
        super().__init__(cfg, dist)
        self.tri = TriadInput(self, cfg)  # the same input handling as ZeroHARModel (scale, clip to +-3 g)
        if cfg.model.encoder != "harnet":
            raise ZeroharError(f"pretraining trains a HARNet backbone; model.encoder is {cfg.model.encoder!r}")
        if cfg.init is not None and Path(cfg.init).is_dir():
            check_backbone_run(Path(cfg.init))
        self.model = PretrainModel(load_backbone(cfg.init, cfg.model.backbone, partial=cfg.train.partial_backbone))

    def _triads(self, rows: np.ndarray) -> torch.Tensor:
        tri = self.tri(rows)  # (B, S', 3, T)
        return tri.reshape(-1, *tri.shape[2:])  # (B*S', 3, T)

    def _pretext(self, tri: torch.Tensor, seed: int) -> tuple[torch.Tensor, dict]:
        return pretext_batch(tri, torch.Generator().manual_seed(seed))

    def make_batch(self, idx, lo_hi, rng, device) -> dict:
        rows = self.train_idx[idx]
        xt, labels = self._pretext(self._triads(rows), int(rng.integers(2**62)))  # global batch
        per = self.tri.per_window
        lo, hi = lo_hi[0] * per, lo_hi[1] * per
        return {"x": xt[lo:hi].to(device), "labels": {k: v[lo:hi].to(device) for k, v in labels.items()}}

    def forward(self, model, batch: dict) -> dict:
        return model(batch["x"])  # {task: logits (N,)}

    def loss(self, out: dict, batch: dict) -> torch.Tensor:
        return pretext_loss_from_logits(out, batch["labels"])[0]

    @torch.no_grad()
    def validate(self, model, bf16: bool) -> dict:
        model.eval()
        hits = {k: 0.0 for k in PRETEXT_TASKS}
        n = 0
        for i, (rows, _) in enumerate(self._val_batches()):
            xt, labels = self._pretext(self._triads(rows), self.cfg.train.seed * 1000 + i)  # fixed draws
            with autocast(bf16, self.device):
                out = model(xt.to(self.device))
            for k in PRETEXT_TASKS:
                hits[k] += float(((out[k].float() > 0).long().cpu() == labels[k].cpu()).sum())
            n += len(xt)
        model.train()
        res = {f"{k}_acc": v / n for k, v in hits.items()}
        return {"pretext_acc": float(np.mean(list(res.values()))), **res}

    def save_model(self, model, out: Path, info: dict) -> None:
        """The artefact of pretraining is the backbone (see :func:`~zerohar.train.base.save_backbone_run`)."""
        save_backbone_run(self, model.backbone, out, info)


class PretrainModel(nn.Module):
    """A HARNet backbone with the pretext heads; forward returns each head's logits `(N,)`."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.heads = PretextHeads(backbone.out_dim)

    def forward(self, x: torch.Tensor) -> dict:
        return self.heads(self.backbone(x))  # {task: (N,)}
