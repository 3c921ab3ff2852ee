"""RelCon pretraining of the HARNet backbone (`zerohar pretrain --method relcon --distance RUN`), step 2 of RelCon.

RelCon (Xu et al., ICLR 2025; facts in `reference/RELCON.md`) trains an encoder so that the *order* of its
similarities follows a learned motif distance. Per training step:

- **Anchors**: the triads (`train.pretrain_sensors`, ZeroHAR's input handling,
  :func:`~zerohar.model.zerohar.scale_and_clip`) of the batch's windows.
- **Within-subject candidates**: windows of the anchor's *same recording* (so the same subject), same triad,
  starting at most `train.relcon_within_s` seconds before or after it (RelCon: the same hour folder; the
  default +-30 min spans an hour). Windows that overlap the anchor in time are never candidates (zerohar's
  windows overlap by half; a window sharing samples with the anchor would be a trivial neighbour, RelCon's
  segments do not overlap). Two ways to draw them (`train.relcon_batching`):

  - ``grouped`` (the default): a batch of B windows is B / G groups (`train.relcon_group` G, default 8). A
    group is a seed window of the epoch's order and G - 1 windows of its recording within the radius that
    overlap neither the seed nor each other. Every window of the batch is an anchor, and its candidates are
    *all the other windows of the batch*: the G - 1 of its group are its within-subject candidates, the rest
    its between-subject ones. The encoder runs once over the B windows, and the ranking costs B (B - 1)
    distances.
  - ``separate`` (RelCon's code): each of the B anchors gets `train.relcon_within_cands` (K, RelCon: 20)
    windows of its own, drawn without replacement each step, and they go through the encoder in a second
    pass: B (1 + K) encoder windows and B (B - 1 + K) distances per step. Measured in one `zerohar speed
    --figures relcon_train relcon_train_separate` run (AVX2, 1 thread, B = 64): 0.8 vs 9.1 anchors/s and
    3.3 vs 0.9 GB peak memory, so ``separate`` costs about 11x per anchor.

  Why ``grouped`` is the default: on a CPU the encoder pass over 20 extra windows per anchor is most of a
  step, and the extra windows are used once, as candidates only. Grouping reuses every window as anchor
  *and* candidate; the loss, the ranking, the candidate kinds and the radius are RelCon's. What changes is
  the mix: G - 1 = 7 within-subject and B - G = 56 between-subject candidates per anchor (RelCon: 20 and
  63), and BatchNorm sees one batch, not two. Training windows without G - 1 eligible windows (with some to
  spare: at least 2 (G - 1)) are not seeds, as RelCon drops hour folders with fewer than K + 1 windows. A
  seed whose random draw cannot find G - 1 mutually non-overlapping windows completes its group with
  windows that overlap another member (never the seed); the run counts these groups (`relcon.overlap_groups`
  in its metadata).
- **Between-subject candidates**: the other windows of the (global) batch (grouped: those of the other
  groups), in RelCon's cyclic order. Nothing makes them another subject; with many subjects they mostly are.
- **Ranking**: the frozen motif distance (:mod:`zerohar.model.motif`, loaded from the motif-distance run
  `train.relcon_distance`) of every anchor from each of its candidates (anchor = query). The distances are
  computed with the global batch in :meth:`RelConTask.make_batch`, under `inference_mode`, by
  :meth:`~zerohar.model.motif.MotifDistance.distance_matrix`: the key / value encodings of the candidate
  windows are computed once per step and reused by every anchor, and so is the first convolution of each
  anchor's query encoding.
- **Loss**: :func:`~zerohar.losses.relcon.relative_contrastive_loss` on the backbone's features (cosine / tau,
  no projection head, as RelCon; `train.relcon_head: mlp` adds one, see :class:`RelConModel`). With
  ``separate``, as in RelCon, anchors and within-subject candidates go through the encoder in two separate
  forward passes (so BatchNorm sees two batches), both with gradient.

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


    def sample_group(self, rows: np.ndarray, k: int, rng: np.random.Generator, start: np.ndarray,
                     window_s: float) -> tuple[np.ndarray, int]:
        """`(len(rows), k)` window rows: per row, k eligible windows that also do not overlap each other (a
        random greedy draw), and the number of rows whose draw had to take overlapping members to reach k
        (they never overlap the row itself). Each row must have at least k eligible windows."""
        out = np.empty((len(rows), k), dtype=np.int64)
        short = 0
        for i, p in enumerate(self.pos[rows]):
            n_left = self.a[p] - self.lo[p]
            n = n_left + self.hi[p] - self.b[p]
            pick = rng.permutation(n)
            sorted_pos = np.where(pick < n_left, self.lo[p] + pick, self.b[p] + pick - n_left)
            cand = self.order[sorted_pos]
            taken: list[int] = []
            starts: list[float] = []
            for j, r in enumerate(cand):
                s = start[r]
                if all(abs(s - o) >= window_s - 1e-9 for o in starts):
                    taken.append(j)
                    starts.append(s)
                    if len(taken) == k:
                        break
            if len(taken) < k:
                short += 1
                have = set(taken)
                rest = [j for j in range(n) if j not in have][: k - len(taken)]
                taken += rest
            out[i] = cand[taken]
        return out, short


#: Output width of the optional projection head (`train.relcon_head: mlp`).
HEAD_DIM = 128


class RelConModel(nn.Module):
    """The HARNet backbone being pretrained; forward gives its features `(N, D)`, or with `head` ("mlp") their
    projection `(N, 128)` by a two-layer head (Linear D -> D, ReLU, Linear D -> 128), as SimCLR's.

    RelCon has no head: its loss reads the encoder's output (RELCON.md 2.3). The head is an option because
    HARNet's frozen features collapsed under RelCon here (effective rank 26 on HAPT against a random
    backbone's 60; README "Backbones"): a head lets the loss shape its own space while the features below it,
    the ones exported, keep more directions (SimCLR, Chen et al. 2020, section 4.2). Measured, it did not:
    the same 330 steps with the head gave linear-probe macro-F1 0.532 / 0.650 / 0.411 / 0.282 on HAPT /
    shoulder / sp-sw-har / USC-HAD, against 0.577 / 0.632 / 0.396 / 0.380 without it and a random backbone's
    0.720 / 0.760 / 0.506 / 0.583 (`eval/results/backbones/results.md`). So the default stays RelCon's.
    """

    def __init__(self, backbone: nn.Module, head: str = "none"):
        super().__init__()
        self.backbone = backbone
        d = int(getattr(backbone, "out_dim", 512))
        self.head = (nn.Sequential(nn.Linear(d, d), nn.ReLU(inplace=True), nn.Linear(d, HEAD_DIM))
                     if head == "mlp" else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.backbone(x)
        return z if self.head is None else self.head(z)


def candidate_index(n: int, k: int) -> torch.Tensor:
    """`(n, n - 1 + k)` rows of the candidate pool for each anchor: the other anchors in RelCon's cyclic order
    (i+1, ..., n-1, 0, ..., i-1) then its own k within-subject windows (pool = n anchors, then n x k windows)."""
    i = torch.arange(n)[:, None]
    others = (i + 1 + torch.arange(n - 1)[None, :]) % n
    within = n + i * k + torch.arange(k)[None, :]
    return torch.cat([others, within], dim=1)


def rank_pool(motif, x: torch.Tensor, pool: torch.Tensor, index: torch.Tensor, device) -> torch.Tensor:
    """Motif distances `(N, M)` of anchors `x` `(N, 3, T)` from the rows `index` `(N, M)` of the candidate
    windows `pool`, under `torch.inference_mode` (the network is frozen), in float32."""
    with torch.inference_mode():
        d = motif.distance_matrix(x.to(device), pool.to(device), index.to(device))
    return d.float().clone()  # clone: a normal tensor (an inference tensor cannot be used by autograd)


def rank_candidates(motif, x: torch.Tensor, xw: torch.Tensor, device) -> torch.Tensor:
    """The ranking of a ``separate`` RelCon step: motif distances `(N, N - 1 + K)` of N anchors `(N, 3, T)` from
    their candidates in the order of :func:`candidate_index` (the other anchors, then their own within-subject
    windows `(N, K, 3, T)`)."""
    n, k, t = xw.shape[0], xw.shape[1], x.shape[-1]
    return rank_pool(motif, x, torch.cat([x, xw.reshape(-1, 3, t)]), candidate_index(n, k), device)


def rank_batch(motif, x: torch.Tensor, device) -> torch.Tensor:
    """The ranking of a ``grouped`` RelCon step: distances `(N, N - 1)` of each of the N windows `x` from all
    the others, in :func:`candidate_index` order."""
    return rank_pool(motif, x, x, candidate_index(len(x), 0), device)


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
        self.grouped = t.relcon_batching == "grouped"
        #: within-subject candidates per anchor (grouped: the rest of its group)
        self.k = t.relcon_group - 1 if self.grouped else t.relcon_within_cands
        need = 2 * self.k if self.grouped else self.k  # grouped: some to spare for mutually non-overlapping ones
        self.overlap_groups = 0  # grouped: groups that had to take mutually overlapping members
        ws = self.data.ws
        self.within = WithinCandidates(ws.recording, ws.subject, ws.start, t.relcon_within_s, cfg.data.window_s)
        all_train = self.data.train_idx
        self.train_idx = all_train[self.within.count(all_train) >= need]
        if len(self.train_idx) == 0:
            lower = "train.relcon_group" if self.grouped else "train.relcon_within_cands"
            raise ZeroharError(
                f"{self.data.source}: no training window has {need} non-overlapping windows of its own recording "
                f"within {t.relcon_within_s:g} s; lower {lower} or raise train.relcon_within_s"
            )
        if len(self.train_idx) < len(all_train):
            logger.info("relcon: %d of %d training windows have %d within-subject candidates and are %s",
                        len(self.train_idx), len(all_train), need, "seeds" if self.grouped else "anchors")
        self.val_anchors = self.data.val_idx[self.within.count(self.data.val_idx) >= need]
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
        self.model = RelConModel(load_backbone(cfg.init, cfg.model.backbone, partial=cfg.train.partial_backbone),
                                 t.relcon_head)
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

    def _items_grouped(self, seeds: np.ndarray, n: int, rng: np.random.Generator) -> dict:
        """`n` windows in groups of G (a seed, then G - 1 non-overlapping windows near it; the last group cut
        to fit): their triads `(N, 3, T)`, N = n * triads per window, and distances `(N, N - 1)` of every
        triad from all the others, in :func:`candidate_index` order."""
        g = self.k + 1
        members, short = self.within.sample_group(seeds, self.k, rng, self.data.ws.start, self.cfg.data.window_s)
        rows = np.concatenate([seeds[:, None], members], 1).reshape(-1)[:n]
        assert len(rows) == n, (len(seeds), g, n)
        x = self.tri(rows)  # (n, S', 3, T)
        x = x.reshape(-1, 3, x.shape[-1])  # (N, 3, T), window-major
        return {"x": x, "dist": rank_batch(self.motif, x, self.device), "rows": rows, "overlap_groups": short}

    def _seeds(self, positions: np.ndarray) -> np.ndarray:
        """The seed windows of a grouped batch of `len(positions)` windows: the first ceil(n / G) positions."""
        g = self.k + 1
        return self.train_idx[positions[: -(-len(positions) // g)]]

    def make_batch(self, idx, lo_hi, rng, device) -> dict:
        per = self.tri.per_window
        lo, hi = lo_hi[0] * per, lo_hi[1] * per
        if self.grouped:
            it = self._items_grouped(self._seeds(idx), len(idx), rng)  # global batch: every distance
            self.overlap_groups += it["overlap_groups"]
            return {"x": it["x"][lo:hi].to(device), "dist": it["dist"].to(device)}
        it = self._items(self.train_idx[idx], rng)  # global batch: distances of every anchor
        return {"x": it["x"][lo:hi].to(device), "x_within": it["x_within"][lo:hi].flatten(0, 1).to(device),
                "dist": it["dist"].to(device)}

    def forward(self, model, batch: dict) -> dict:
        z = model(batch["x"])  # (n, D)
        if "x_within" not in batch:
            return {"z": z}  # grouped: the candidates are the batch itself
        zw = model(batch["x_within"])  # (n*K, D): a separate pass, as in RelCon
        return {"z": z, "z_within": zw.reshape(len(z), self.k, -1)}

    def loss(self, out: dict, batch: dict) -> torch.Tensor:
        return self._loss(out["z"], out.get("z_within"), batch["dist"])

    def _candidates(self, z: torch.Tensor, zw: torch.Tensor | None) -> torch.Tensor:
        """`(n, M, D)` candidate embeddings in the order of the distances: the other anchors (cyclic), then,
        with ``separate``, each anchor's own within-subject windows."""
        others = candidate_index(len(z), 0).to(z.device)  # (n, n-1)
        return z[others] if zw is None else torch.cat([z[others], zw], dim=1)

    def _loss(self, z: torch.Tensor, zw: torch.Tensor | None, dist: torch.Tensor,
              reduction: str = "mean") -> torch.Tensor:
        return relative_contrastive_loss(z, self._candidates(z, zw), dist, self.cfg.train.relcon_temperature,
                                         reduction)

    # ------------------------------------------------------------------ validation
    def _val_batches_relcon(self) -> list:
        """Fixed validation batches (anchors, candidates, distances), computed once per run."""
        if self._val_cache is None:
            anchors = self.val_anchors
            n_chunks = max(1, int(np.ceil(len(anchors) / self.cfg.train.batch_size)))
            rng = np.random.default_rng([self.cfg.train.seed, 0x4E1C])
            if self.grouped:  # whole groups of G, about batch_size windows per chunk, one group per seed
                g = self.k + 1
                n_chunks = max(1, int(np.ceil(len(anchors) * g / self.cfg.train.batch_size)))
                self._val_cache = [self._items_grouped(c, len(c) * g, rng)
                                   for c in np.array_split(anchors, n_chunks) if len(c) * g >= 2]
            else:
                self._val_cache = [self._items(c, rng) for c in np.array_split(anchors, n_chunks) if len(c) >= 2]
        return self._val_cache

    @torch.no_grad()
    def validate(self, model, bf16: bool) -> dict:
        model.eval()
        total, corr, n = 0.0, 0.0, 0
        for it in self._val_batches_relcon():
            x, dist = it["x"].to(self.device), it["dist"].to(self.device)
            with autocast(bf16, self.device):
                z = model(x).float()
                zw = None
                if "x_within" in it:
                    zw = model(it["x_within"].to(self.device).flatten(0, 1)).float().reshape(len(x), self.k, -1)
            total += float(self._loss(z, zw, dist, "none").sum())
            zc = torch.nn.functional.normalize(self._candidates(z, zw), dim=-1)
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
                "relcon": {"batching": self.cfg.train.relcon_batching, "within_cands": self.k,
                           "head": self.cfg.train.relcon_head,
                           "within_s": self.cfg.train.relcon_within_s,
                           "temperature": self.cfg.train.relcon_temperature,
                           "overlap_groups": self.overlap_groups if self.grouped else None}}

    def save_model(self, model, out: Path, info: dict) -> None:
        """The artefact of pretraining is the backbone (see :func:`~zerohar.train.base.save_backbone_run`)."""
        save_backbone_run(self, model.backbone, out, info)


def _spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise Spearman correlation of `(N, M)` tensors (ranks by argsort; ties broken by position)."""
    ra = a.argsort(-1).argsort(-1).float()
    rb = b.argsort(-1).argsort(-1).float()
    ra, rb = ra - ra.mean(-1, keepdim=True), rb - rb.mean(-1, keepdim=True)
    return (ra * rb).sum(-1) / (ra.norm(dim=-1) * rb.norm(dim=-1)).clamp(min=1e-12)
