"""SSL pretraining of the HARNet backbone (`zerohar pretrain`): the pretext multi-task of SSL-Wearables.

Each training window's triads (accelerometers by default, `train.pretrain_sensors`) are transformed by the
pretext tasks of :mod:`zerohar.losses.contrastive` (arrow of time, permutation, time warp), and a head per task predicts
whether its transformation was applied. The artefact is the backbone alone, in HARNet's key format.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from zerohar.config import Config
from zerohar.errors import ZeroharError
from zerohar.model.precision import autocast
from zerohar.train.tasks import BaseTask, check_backbone_run


class PretrainTask(BaseTask):
    """SSL pretext multi-task on single triads (arrow of time, permutation, time warp)."""

    metric = "pretext_acc"

    def __init__(self, cfg: Config, dist):
        super().__init__(cfg, dist)
        from zerohar.model.pretrained import load_backbone

        kinds = cfg.train.pretrain_sensors
        self.triads = [i for i, s in enumerate(self.layout.sensors) if s.sensor in kinds]
        if not self.triads:
            raise ZeroharError(
                f"{self.data.source}: no sensor of kind {', '.join(kinds)} to pretrain on (train.pretrain_sensors); "
                f"the layout has {', '.join(sorted({s.sensor for s in self.layout.sensors}))}"
            )
        self.channels = [3 * i + a for i in self.triads for a in range(3)]
        # The same input handling as ZeroHARModel: per-kind scale, accelerometer clipped to +-3 g.
        m = cfg.model
        self.scale = np.array([m.kind_scale.get(self.layout.sensors[i].sensor, 1.0) for i in self.triads],
                              dtype=np.float32)[:, None, None]  # (S', 1, 1)
        self.clip = np.array([m.clip_acc and self.layout.sensors[i].sensor == "acc" for i in self.triads])
        if cfg.model.encoder != "harnet":
            raise ZeroharError(f"pretraining trains a HARNet backbone; model.encoder is {cfg.model.encoder!r}")
        if cfg.init is not None and Path(cfg.init).is_dir():
            check_backbone_run(Path(cfg.init))
        self.model = PretrainModel(load_backbone(cfg.init, cfg.model.backbone))

    def _triads(self, rows: np.ndarray) -> np.ndarray:
        x = self.X[rows][:, self.channels]  # (B, 3S', T)
        b, _, t = x.shape
        tri = x.reshape(b, len(self.triads), 3, t) * self.scale  # (B, S', 3, T)
        tri[:, self.clip] = np.clip(tri[:, self.clip], -3.0, 3.0)
        return tri.reshape(b * len(self.triads), 3, t)  # (B*S', 3, T)

    def _pretext(self, tri: np.ndarray, seed: int) -> tuple[torch.Tensor, dict]:
        from zerohar.losses.contrastive import pretext_batch

        g = torch.Generator().manual_seed(seed)
        return pretext_batch(torch.from_numpy(np.ascontiguousarray(tri, dtype=np.float32)), g)

    def make_batch(self, idx, lo_hi, rng, device) -> dict:
        rows = self.train_idx[idx]
        xt, labels = self._pretext(self._triads(rows), int(rng.integers(2**62)))  # global batch
        per = len(self.triads)
        lo, hi = lo_hi[0] * per, lo_hi[1] * per
        return {"x": xt[lo:hi].to(device), "labels": {k: v[lo:hi].to(device) for k, v in labels.items()}}

    def forward(self, model, batch: dict) -> dict:
        return model(batch["x"])

    def loss(self, out: dict, batch: dict) -> torch.Tensor:
        from zerohar.losses.contrastive import PRETEXT_TASKS

        return torch.stack([
            nn.functional.binary_cross_entropy_with_logits(out[k].float(), batch["labels"][k].float())
            for k in PRETEXT_TASKS
        ]).mean()

    @torch.no_grad()
    def validate(self, model, bf16: bool) -> dict:
        from zerohar.losses.contrastive import PRETEXT_TASKS

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
        """The artefact of pretraining is the backbone: `model.safetensors` (HARNet keys) + `model.json`."""
        from zerohar.model.pretrained import BACKBONE_FORMAT, save_backbone
        from zerohar.train.runs import atomic_write_json

        meta = {**self.metadata(), **info, "backbone": model.backbone.variant,
                "pretrain_sensors": self.cfg.train.pretrain_sensors}
        save_backbone(model.backbone, out / "model.safetensors", extra=meta)
        atomic_write_json(out / "model.json", {"format": BACKBONE_FORMAT, "variant": model.backbone.variant,
                                                "extra": meta})


class PretrainModel(nn.Module):
    """A HARNet backbone with the pretext heads; forward returns each head's logits `(N,)`."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        from zerohar.losses.contrastive import PretextHeads

        self.backbone = backbone
        self.heads = PretextHeads(backbone.out_dim)

    def forward(self, x: torch.Tensor) -> dict:
        return self.heads(self.backbone(x))  # {task: (N,)}
