"""Training RelCon's motif distance network (`zerohar pretrain --method motif-distance`), step 1 of RelCon.

Each training window's triads (accelerometers by default, `train.pretrain_sensors`) get the input handling of
the ZeroHAR model (:func:`~zerohar.model.zerohar.scale_and_clip`: per-kind scale, accelerometer clipped to
+-3 g), exactly what the backbone will later see. The network (:class:`~zerohar.model.motif.MotifDistance`)
learns to rebuild each clean triad (the query) from an augmented copy of itself (key and value): two of the
eight transforms of :mod:`zerohar.data.relcon_augment`, drawn per window and step (RELCON.md 1.4). The loss
is the squared reconstruction error summed over time and channels (the distance itself), averaged over the
batch (RelCon sums over the batch as well; with Adam the constant factor does not matter, and the mean keeps
the logged loss comparable across batch sizes).

Validation on the held-out subjects uses a metric that can fail: the held-out triads are taken in groups of
:data:`VAL_GROUP`, every triad of a group gets one augmented copy (fixed draws), and each clean triad ranks the
augmented copies of its group by distance. ``aug_top1`` is the fraction whose own copy is the nearest
(chance is about 1 / group size, reported as ``chance_top1``), ``aug_mrr`` the mean reciprocal rank of the own
copy. Copies of windows that overlap the anchor in time (same recording, starts less than a window apart) are
left out of its ranking, since they share samples with it. Model selection is on ``aug_top1``.

The artefact is the network alone: `model.safetensors` + `model.json` with ``"format":
"zerohar-motif-distance"`` and the run's provenance (datasets, fold, classes, subjects, zerohar version);
:func:`~zerohar.model.motif.load_motif_distance` reads it back, frozen, for RelCon
(`train.relcon_distance`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from zerohar.config import Config
from zerohar.data.relcon_augment import relcon_augment
from zerohar.errors import ZeroharError
from zerohar.model.motif import MotifConfig, MotifDistance, save_motif_distance
from zerohar.model.precision import autocast
from zerohar.train.base import BaseTask, TriadInput

#: Validation ranks each held-out triad against the augmented copies of this many triads (its own included).
VAL_GROUP = 32


def overlap_mask(rec: np.ndarray, start: np.ndarray, window_s: float) -> np.ndarray:
    """`(n, n)` True where windows i and j are the same recording and overlap in time (diagonal included)."""
    return (rec[:, None] == rec[None, :]) & (np.abs(start[:, None] - start[None, :]) < window_s - 1e-9)


class MotifDistanceTask(BaseTask):
    """Trains the motif distance network on (window, augmented copy) pairs (see the module docstring)."""

    metric = "aug_top1"

    def __init__(self, cfg: Config, dist):
        super().__init__(cfg, dist)
        if cfg.init is not None:
            raise ZeroharError(
                f"train.pretrain_method=motif-distance trains a new motif distance network; init {cfg.init!r} is not "
                "used by it (continue an unfinished run with --resume instead)"
            )
        self.tri = TriadInput(self, cfg)
        t = cfg.train
        self.model = MotifDistance(MotifConfig(embed_dim=t.motif_embed_dim, kernel_size=t.motif_kernel,
                                               attention=t.motif_attention))
        self._val_cache: list | None = None

    def make_batch(self, idx, lo_hi, rng, device) -> dict:
        rows = self.train_idx[idx]
        x = self.tri(rows).flatten(0, 1)  # (B*S', 3, T), global batch
        aug = torch.from_numpy(relcon_augment(x.numpy(), rng))  # drawn for the global batch, then sliced
        per = self.tri.per_window
        lo, hi = lo_hi[0] * per, lo_hi[1] * per
        return {"x": x[lo:hi].to(device), "x_aug": aug[lo:hi].to(device)}

    def forward(self, model, batch: dict) -> dict:
        return {"rec": model(batch["x"], batch["x_aug"])}  # query: clean window; key / value: its copy

    def loss(self, out: dict, batch: dict) -> torch.Tensor:
        return ((out["rec"].float() - batch["x"].float()) ** 2).sum(dim=(1, 2)).mean()

    def _val_groups(self) -> list:
        """Fixed validation groups: (clean, augmented, excluded-pairs mask), drawn once per run."""
        if self._val_cache is None:
            idx = self.data.val_idx
            per = self.tri.per_window
            x = self.tri(idx).flatten(0, 1).numpy()  # (V*S', 3, T)
            rec = np.repeat(self.data.ws.recording[idx], per)
            start = np.repeat(self.data.ws.start[idx], per)
            rng = np.random.default_rng([self.cfg.train.seed, 0x40717F])
            aug = relcon_augment(x, rng)
            groups = []
            n_groups = max(1, int(np.ceil(len(x) / VAL_GROUP)))
            for g in np.array_split(np.arange(len(x)), n_groups):
                if len(g) < 2:
                    continue
                excl = overlap_mask(rec[g], start[g], self.cfg.data.window_s)
                np.fill_diagonal(excl, False)  # the own copy is the target
                groups.append((torch.from_numpy(x[g]), torch.from_numpy(aug[g]), torch.from_numpy(excl)))
            self._val_cache = groups
        return self._val_cache

    @property
    def has_validation(self) -> bool:
        return len(self.data.val_idx) > 0 and len(self._val_groups()) > 0

    @torch.no_grad()
    def validate(self, model, bf16: bool) -> dict:
        model.eval()
        top1, rr, chance, err, n = 0.0, 0.0, 0.0, 0.0, 0
        for x, aug, excl in self._val_groups():
            x, aug, excl = x.to(self.device), aug.to(self.device), excl.to(self.device)
            with autocast(bf16, self.device):
                d = model.distance_matrix(x, aug).float()  # (n, n): clean i vs copy of j
            own = d.diagonal()
            d = d.masked_fill(excl, float("inf"))
            rank = (d < own[:, None]).sum(1)  # 0 = own copy nearest
            top1 += float((rank == 0).sum())
            rr += float((1.0 / (rank + 1).float()).sum())
            chance += float((1.0 / (~excl).sum(1).float()).sum())
            err += float(own.sum())
            n += len(x)
        model.train()
        return {"aug_top1": top1 / n, "aug_mrr": rr / n, "chance_top1": chance / n, "val_recon": err / n}

    def metadata(self) -> dict:
        return {**super().metadata(), "pretrain_method": "motif-distance",
                "pretrain_sensors": self.cfg.train.pretrain_sensors}

    def save_model(self, model, out: Path, info: dict) -> None:
        """The artefact: the motif distance network, `model.safetensors` + `model.json` (format, provenance)."""
        save_motif_distance(model, out, {**self.metadata(), **info})
