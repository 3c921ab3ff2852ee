"""RelCon pretraining of the HARNet backbone (`zerohar pretrain --method relcon --distance RUN`), step 2 of RelCon.

RelCon (Xu et al., ICLR 2025; facts in `reference/RELCON.md`) trains an encoder so that the *order* of its
similarities follows a learned motif distance. Per training step:

- **Anchors**: the triads (`train.pretrain_sensors`, ZeroHAR's input handling,
  :func:`~zerohar.model.zerohar.scale_and_clip`) of the batch's windows.
- **Within-subject candidates**: for each anchor, `train.relcon_within_cands` (K, RelCon: 20) windows of the
  *same recording* (so the same subject), same triad, starting at most `train.relcon_within_s` seconds before
  or after the anchor (RelCon: the same hour folder; the default +-30 min spans an hour), drawn without
  replacement each step. Windows that overlap the anchor in time are not candidates (zerohar's windows
  overlap by half; a window sharing samples with the anchor would be a trivial neighbour, RelCon's
  segments do not overlap). Training windows with fewer than K such windows are not used as anchors, as
  RelCon drops hour folders with fewer than K + 1 windows.
- **Between-subject candidates**: the other anchors of the (global) batch, in RelCon's cyclic order. Nothing
  makes them another subject; with many subjects they mostly are.
- **Ranking**: the frozen motif distance (:mod:`zerohar.model.motif`, loaded from the motif-distance run
  `train.relcon_distance`) of every anchor from each of its B - 1 + K candidates (anchor = query). The
  distances are computed with the global batch in :meth:`RelConTask.make_batch`, under `inference_mode`, by
  :meth:`~zerohar.model.motif.MotifDistance.distance_matrix`: the key / value encodings of the B (1 + K)
  candidate windows are computed once per step and reused by every anchor, and so is the first convolution
  of each anchor's query encoding.
- **Loss**: :func:`~zerohar.losses.relcon.relative_contrastive_loss` on the backbone's features (cosine / tau,
  no projection head). As in RelCon, anchors and within-subject candidates go through the encoder in two
  separate forward passes (so BatchNorm sees two batches), both with gradient.

Validation: the same loss on the held-out subjects (BatchNorm in eval mode, fixed candidate draws, distances
computed once per run), selected on ``neg_relcon_loss`` (higher is better: RelCon keeps the lowest validation
loss); ``rank_corr`` is the mean Spearman correlation between an anchor's embedding similarities and its
negated motif distances (0 for an encoder that ignores the ranking).

**Deviation from RelCon's windows.** RelCon uses 100 Hz windows of 256 samples (2.56 s) with a ResNet1D
encoder. zerohar keeps its own 30 Hz, 5 s (150-sample) windows, because the encoder being pretrained is the
HARNet backbone and every zerohar model (Stage I / II, inference) consumes 30 Hz 5 s windows (harnet5; 10 s /
30 s for the larger variants): a backbone pretrained at another rate or length would not fit them. The motif
distance network keeps RelCon's kernel size in samples (15, receptive field 57 samples), which covers 1.9 s
at 30 Hz instead of 0.57 s at 100 Hz.

The artefact is the backbone alone, written exactly as :meth:`~zerohar.train.pretrain_ssl.PretrainTask.save_model`
writes it (HARNet keys, ``"format": "zerohar-harnet-backbone"``), so `load_backbone(run_dir)`, Stage I and
Stage II take it unchanged. Its metadata also records the motif-distance run and what that run saw.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from zerohar.config import Config
from zerohar.errors import ZeroharError
from zerohar.losses.relcon import relative_contrastive_loss
from zerohar.model.motif import load_motif_distance
from zerohar.model.precision import autocast
from zerohar.model.pretrained import load_backbone
from zerohar.train.base import BaseTask, TriadInput, check_backbone_run, save_backbone_run
from zerohar.train.runs import read_run_meta

logger = logging.getLogger(__name__)

#: Provenance of the motif-distance run copied into the RelCon backbone's metadata.
MOTIF_PROVENANCE = ("dataset", "data", "fold", "classes", "seen", "unseen", "subjects", "seed", "zerohar_version")


class WithinCandidates:
    """For each window, the windows of its recording that start within +-`radius` s but do not overlap it.

    The eligible windows of window i are two contiguous runs of the (recording, start)-sorted order, on each
    side of the overlapping ones, so they are stored as four offsets and sampled without building lists.
    """

    def __init__(self, recording: np.ndarray, subject: np.ndarray, start: np.ndarray, radius: float,
                 window_s: float):
        # Sort by (subject, recording, start): a recording id is per subject, but be safe.
        _, subj = np.unique(subject, return_inverse=True)
        key = subj.astype(np.int64) * (int(recording.max(initial=0)) + 1) + recording.astype(np.int64)
        self.order = np.lexsort((start, key))  # sorted position -> window row
        self.pos = np.empty_like(self.order)
        self.pos[self.order] = np.arange(len(self.order))  # window row -> sorted position
        k, s = key[self.order], start[self.order]
        eps = 1e-9
        # Per recording, search within its run of the sorted order: offset each key's starts far apart.
        span = float(np.ptp(s)) + 2 * radius + 2 * window_s + 1.0 if len(s) else 1.0
        _, kk = np.unique(k, return_inverse=True)
        g = kk * span + (s - (s.min() if len(s) else 0.0))
        self.lo = np.searchsorted(g, g - radius - eps, side="left")  # first start >= s - radius
        self.a = np.searchsorted(g, g - window_s + eps, side="left")  # first start > s - window (overlapping)
        self.b = np.searchsorted(g, g + window_s - eps, side="left")  # first start >= s + window
        self.hi = np.searchsorted(g, g + radius + eps, side="right")  # past the last start <= s + radius
        self.a, self.b = np.maximum(self.a, self.lo), np.minimum(self.b, self.hi)  # radius < window: none

    def count(self, rows: np.ndarray) -> np.ndarray:
        p = self.pos[rows]
        return (self.a[p] - self.lo[p]) + (self.hi[p] - self.b[p])

    def sample(self, rows: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        """`(len(rows), k)` window rows: k distinct eligible windows per row (each must have at least k)."""
        out = np.empty((len(rows), k), dtype=np.int64)
        for i, p in enumerate(self.pos[rows]):
            n_left = self.a[p] - self.lo[p]
            pick = rng.choice(n_left + self.hi[p] - self.b[p], size=k, replace=False)
            sorted_pos = np.where(pick < n_left, self.lo[p] + pick, self.b[p] + pick - n_left)
            out[i] = self.order[sorted_pos]
        return out


class RelConModel(nn.Module):
    """The HARNet backbone being pretrained; forward gives its features `(N, D)` (no projection head)."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)


def candidate_index(n: int, k: int) -> torch.Tensor:
    """`(n, n - 1 + k)` rows of the candidate pool for each anchor: the other anchors in RelCon's cyclic order
    (i+1, ..., n-1, 0, ..., i-1) then its own k within-subject windows (pool = n anchors, then n x k windows)."""
    i = torch.arange(n)[:, None]
    others = (i + 1 + torch.arange(n - 1)[None, :]) % n
    within = n + i * k + torch.arange(k)[None, :]
    return torch.cat([others, within], dim=1)


def rank_candidates(motif, x: torch.Tensor, xw: torch.Tensor, device) -> torch.Tensor:
    """The ranking of a RelCon step: motif distances `(N, N - 1 + K)` of N anchors `(N, 3, T)` from their
    candidates in the order of :func:`candidate_index` (the other anchors, then their own within-subject
    windows `(N, K, 3, T)`), under `torch.inference_mode` (the network is frozen), in float32."""
    n, k, t = xw.shape[0], xw.shape[1], x.shape[-1]
    pool = torch.cat([x, xw.reshape(-1, 3, t)]).to(device)
    with torch.inference_mode():
        d = motif.distance_matrix(x.to(device), pool, candidate_index(n, k).to(device))
    return d.float().clone()  # clone: a normal tensor (an inference tensor cannot be used by autograd)


class RelConTask(BaseTask):
    """RelCon on the HARNet backbone (see the module docstring)."""

    metric = "neg_relcon_loss"
    gather_keys = ("z", "z_within")

    def __init__(self, cfg: Config, dist):
        super().__init__(cfg, dist)
        t = cfg.train
        if cfg.model.encoder != "harnet":
            raise ZeroharError(f"pretraining trains a HARNet backbone; model.encoder is {cfg.model.encoder!r}")
        if t.relcon_distance is None:
            raise ZeroharError("train.relcon_distance must name a motif-distance run directory for RelCon")
        self.tri = TriadInput(self, cfg)
        self.k = t.relcon_within_cands
        ws = self.data.ws
        self.within = WithinCandidates(ws.recording, ws.subject, ws.start, t.relcon_within_s, cfg.data.window_s)
        all_train = self.data.train_idx
        self.train_idx = all_train[self.within.count(all_train) >= self.k]
        if len(self.train_idx) == 0:
            raise ZeroharError(
                f"{self.data.source}: no training window has {self.k} non-overlapping windows of its own recording "
                f"within {t.relcon_within_s:g} s; lower train.relcon_within_cands or raise train.relcon_within_s"
            )
        if len(self.train_idx) < len(all_train):
            logger.info("relcon: %d of %d training windows have %d within-subject candidates and are anchors",
                        len(self.train_idx), len(all_train), self.k)
        self.val_anchors = self.data.val_idx[self.within.count(self.data.val_idx) >= self.k]
        self.motif_dir = Path(t.relcon_distance)
        self.motif_meta = read_run_meta(self.motif_dir)  # a finished run, else ZeroharError
        if self.motif_meta.get("pretrain_method") != "motif-distance":
            raise ZeroharError(f"train.relcon_distance {self.motif_dir} is a {self.motif_meta.get('stage')} run, not "
                               "a motif-distance run (train one with train.pretrain_method=motif-distance)")
        self.motif, _ = load_motif_distance(self.motif_dir)
        rate = self.motif_meta.get("rate")
        if rate is not None and float(rate) != float(ws.rate):
            raise ZeroharError(f"the motif distance {self.motif_dir} was trained on {rate:g} Hz windows, "
                               f"the data is {ws.rate:g} Hz")
        self.motif.to(self.device)
        if cfg.init is not None and Path(cfg.init).is_dir():
            check_backbone_run(Path(cfg.init))
        self.model = RelConModel(load_backbone(cfg.init, cfg.model.backbone, partial=cfg.train.partial_backbone))
        self._val_cache: list | None = None

    @property
    def n_train(self) -> int:
        return len(self.train_idx)

    @property
    def has_validation(self) -> bool:
        return len(self.val_anchors) >= 2

    # ------------------------------------------------------------------ batches
    def _items(self, rows: np.ndarray, rng: np.random.Generator) -> dict:
        """Anchor triads `(N, 3, T)`, their within-subject triads `(N, K, 3, T)` and distances `(N, N-1+K)`."""
        per, k = self.tri.per_window, self.k
        within_rows = self.within.sample(rows, k, rng)  # (B, K)
        x = self.tri(rows)  # (B, S', 3, T)
        t = x.shape[-1]
        xw = self.tri(within_rows.reshape(-1)).reshape(len(rows), k, per, 3, t).transpose(1, 2)  # (B, S', K, 3, T)
        x, xw = x.reshape(-1, 3, t), xw.reshape(-1, k, 3, t)  # N = B*S' anchors
        return {"x": x, "x_within": xw, "dist": rank_candidates(self.motif, x, xw, self.device)}

    def make_batch(self, idx, lo_hi, rng, device) -> dict:
        it = self._items(self.train_idx[idx], rng)  # global batch: distances of every anchor
        per = self.tri.per_window
        lo, hi = lo_hi[0] * per, lo_hi[1] * per
        return {"x": it["x"][lo:hi].to(device), "x_within": it["x_within"][lo:hi].flatten(0, 1).to(device),
                "dist": it["dist"].to(device)}

    def forward(self, model, batch: dict) -> dict:
        z = model(batch["x"])  # (n, D)
        zw = model(batch["x_within"])  # (n*K, D): a separate pass, as in RelCon
        return {"z": z, "z_within": zw.reshape(len(z), self.k, -1)}

    def loss(self, out: dict, batch: dict) -> torch.Tensor:
        return self._loss(out["z"], out["z_within"], batch["dist"])

    def _loss(self, z: torch.Tensor, zw: torch.Tensor, dist: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        n = len(z)
        others = candidate_index(n, 0).to(z.device)  # (n, n-1)
        z_cand = torch.cat([z[others], zw], dim=1)  # (n, n-1+K, D), the order of `dist`
        return relative_contrastive_loss(z, z_cand, dist, self.cfg.train.relcon_temperature, reduction)

    # ------------------------------------------------------------------ validation
    def _val_batches_relcon(self) -> list:
        """Fixed validation batches (anchors, candidates, distances), computed once per run."""
        if self._val_cache is None:
            anchors = self.val_anchors
            n_chunks = max(1, int(np.ceil(len(anchors) / self.cfg.train.batch_size)))
            rng = np.random.default_rng([self.cfg.train.seed, 0x4E1C])
            self._val_cache = [self._items(c, rng) for c in np.array_split(anchors, n_chunks) if len(c) >= 2]
        return self._val_cache

    @torch.no_grad()
    def validate(self, model, bf16: bool) -> dict:
        model.eval()
        total, corr, n = 0.0, 0.0, 0
        for it in self._val_batches_relcon():
            x, xw, dist = it["x"].to(self.device), it["x_within"].to(self.device), it["dist"].to(self.device)
            with autocast(bf16, self.device):
                z = model(x).float()
                zw = model(xw.flatten(0, 1)).float().reshape(len(x), self.k, -1)
            total += float(self._loss(z, zw, dist, "none").sum())
            others = candidate_index(len(z), 0).to(z.device)
            zc = torch.nn.functional.normalize(torch.cat([z[others], zw], 1), dim=-1)
            sim = torch.einsum("nd,nmd->nm", torch.nn.functional.normalize(z, dim=-1), zc)
            corr += float(_spearman(sim, -dist).sum())
            n += len(z)
        model.train()
        return {"neg_relcon_loss": -total / n, "val_relcon_loss": total / n, "rank_corr": corr / n}

    # ------------------------------------------------------------------ artefact
    def metadata(self) -> dict:
        prov = {k: self.motif_meta.get(k) for k in MOTIF_PROVENANCE}
        return {**super().metadata(), "pretrain_method": "relcon",
                "motif_distance": {"run": str(self.motif_dir), **prov},
                "relcon": {"within_cands": self.k, "within_s": self.cfg.train.relcon_within_s,
                           "temperature": self.cfg.train.relcon_temperature}}

    def save_model(self, model, out: Path, info: dict) -> None:
        """The artefact of pretraining is the backbone (see :func:`~zerohar.train.base.save_backbone_run`)."""
        save_backbone_run(self, model.backbone, out, info)


def _spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise Spearman correlation of `(N, M)` tensors (ranks by argsort; ties broken by position)."""
    ra = a.argsort(-1).argsort(-1).float()
    rb = b.argsort(-1).argsort(-1).float()
    ra, rb = ra - ra.mean(-1, keepdim=True), rb - rb.mean(-1, keepdim=True)
    return (ra * rb).sum(-1) / (ra.norm(dim=-1) * rb.norm(dim=-1)).clamp(min=1e-12)
