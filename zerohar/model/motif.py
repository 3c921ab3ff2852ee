"""RelCon's learnable motif distance ("MotifDist"), written from `reference/RELCON.md` section 1.

How well can the anchor window be rebuilt from pieces of the candidate window? The distance of an anchor
``X_anc`` from a candidate ``X_cand`` (both `(3, T)`) is the squared error of that reconstruction::

    d(X_anc, X_cand) = sum_{t, c} ( Xhat_{anc|cand}[c, t] - X_anc[c, t] )^2

- **Normalisation (RevIN)**: both windows are standardised with the *candidate's* per-channel mean and std
  over time (std = sqrt(biased var + 1e-5), no gradient through the statistics), then a learnable per-channel
  affine (gamma, beta; shared by query and key) is applied. The output is de-normalised with the inverse,
  ``((y - beta) / (gamma + 1e-10)) * sigma_cand + mu_cand``, so the error is in the anchor's own units.
- **Encoders**: three separate dilated convolution nets f_q (anchor), f_k, f_v (candidate), 3 -> 64 channels at
  full time resolution: a partial convolution (kernel 15, "same" zero padding, the edge outputs rescaled by
  kernel / in-range taps), GELU, InstanceNorm; then two residual blocks (1x1 bottleneck 64 -> 8, dilated
  conv 8 -> 64 with dilation 1 and 2, + input, GELU, InstanceNorm). Receptive field 57 samples (1.9 s at
  zerohar's 30 Hz; 0.57 s at RelCon's 100 Hz: the kernel is kept in samples).
- **Cross-attention**: single head of width 64, scores ``<q_t, k_s> / sqrt(64)`` normalised over all candidate
  time steps s, dropout 0.1 on the weights in training, then a linear 64 -> 3 output (with bias). The Q/K/V
  projections are the conv nets themselves (no further learned projection).
- **Training** (:mod:`zerohar.train.motif_distance`): the anchor is a clean window and the candidate an
  augmented copy of it (:mod:`zerohar.data.relcon_augment`), so the network learns which changes (rotation,
  scaling, warping, ...) do not make two motifs different.

Sparsemax or softmax: the paper's formula uses sparsemax; the released code uses sparsemax while training but
PyTorch's fused softmax attention in eval mode, i.e. for every distance RelCon ranks with (RELCON.md 1.2).
``attention="sparsemax"`` (the default) uses sparsemax in both, as the formula says; ``attention="released"``
reproduces the released code (sparsemax in training, softmax for distances and validation).

Batched distances: :meth:`MotifDistance.distance_matrix` takes A anchors, C candidate windows and an index
`(A, M)` of each anchor's candidates. The statistics, key encodings (pre-scaled by 1 / sqrt(E)) and value
encodings (already through the linear output layer) of the C candidates are computed once and reused by every
anchor that ranks them; the query encodings depend on the pair (the anchor is normalised by the candidate's
statistics), but their first convolution is linear in the normalised input, so it is computed once per anchor
and channel and combined per pair. The rest is computed for all pairs at once, in chunks of pairs to bound
memory. Measured on a shared 2-core AVX2 CPU (batch 64, 20 + 63 candidates per anchor): about 3x the pairs/s of the
plain per-pair batching (instance norm as layer norm, 1x1 convolution as a matrix product and a top-k
sparsemax account for much of it).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from zerohar.config import MOTIF_ATTENTIONS
from zerohar.errors import ZeroharError
from zerohar.io import atomic_write, atomic_write_json
from zerohar.losses.sparsemax import sparsemax

#: `model.json` "format" of a saved motif distance network.
MOTIF_FORMAT = "zerohar-motif-distance"
ATTENTIONS = MOTIF_ATTENTIONS
REVIN_EPS = 1e-5


@dataclass(frozen=True)
class MotifConfig:
    """Architecture of the motif distance network (RelCon's `25_3_8_motifdist`)."""

    channels: int = 3
    embed_dim: int = 64
    kernel_size: int = 15
    blocks: int = 2  # `double_receptivefield`: residual blocks with dilation 1, 2, 4, ...
    dropout: float = 0.1  # on the attention weights, in training
    attention: str = "sparsemax"  # sparsemax | released (sparsemax in training, softmax for distances)

    def __post_init__(self):
        if self.attention not in ATTENTIONS:
            raise ZeroharError(f"motif distance attention {self.attention!r}: expected one of {', '.join(ATTENTIONS)}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ZeroharError(f"motif distance kernel_size must be a positive odd number, found {self.kernel_size}")
        if self.embed_dim < 8 or self.embed_dim % 8:
            raise ZeroharError(f"motif distance embed_dim must be a multiple of 8, found {self.embed_dim}")


class PartialConv1d(nn.Conv1d):
    """A "same" zero-padded Conv1d whose edge outputs are rescaled by kernel / (number of in-range taps).

    With an all-ones mask (the only case RelCon uses) this is the partial convolution of Liu et al.: the part
    of the output coming from the weights, ``conv(x) - bias``, is scaled up where the kernel hangs over the
    padding, which compensates for the zeros it sees there.
    """

    def __init__(self, c_in: int, c_out: int, kernel_size: int):
        super().__init__(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[-1]
        k = self.kernel_size[0]
        taps = F.conv1d(torch.ones(1, 1, t, dtype=x.dtype, device=x.device),
                        torch.ones(1, 1, k, dtype=x.dtype, device=x.device), padding=k // 2)  # (1, 1, T)
        ratio = k / taps
        out = F.conv1d(x, self.weight.to(x.dtype), None, padding=k // 2)
        return out * ratio + self.bias.to(out.dtype)[None, :, None]


def instance_norm(h: torch.Tensor) -> torch.Tensor:
    """`F.instance_norm` of `(N, C, T)` without affine or running statistics (per row, over time, eps 1e-5),
    computed as a layer norm over the last dim: the same numbers, about 3x faster on a CPU."""
    return F.layer_norm(h, h.shape[-1:], eps=1e-5)


class _Block(nn.Module):
    """1x1 bottleneck, dilated conv back to full width, residual, GELU, InstanceNorm."""

    def __init__(self, width: int, kernel_size: int, dilation: int):
        super().__init__()
        self.reduce = nn.Conv1d(width, width // 8, 1)
        self.conv = nn.Conv1d(width // 8, width, kernel_size, dilation=dilation, padding=dilation * (kernel_size // 2))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        # the 1x1 bottleneck as a matrix product: the same numbers, about 2x faster than a 1x1 Conv1d on a CPU
        r = torch.matmul(self.reduce.weight[:, :, 0].to(h.dtype), h) + self.reduce.bias.to(h.dtype)[:, None]
        return instance_norm(F.gelu(self.conv(r) + h))


class DilatedConvEncoder(nn.Module):
    """`(N, 3, T)` -> `(N, embed_dim, T)`: partial conv layer, then residual blocks of growing dilation."""

    def __init__(self, cfg: MotifConfig):
        super().__init__()
        self.first = PartialConv1d(cfg.channels, cfg.embed_dim, cfg.kernel_size)
        self.blocks = nn.ModuleList(_Block(cfg.embed_dim, cfg.kernel_size, 2**i) for i in range(cfg.blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.after_first(self.first(x))

    def after_first(self, h: torch.Tensor) -> torch.Tensor:
        """The encoder from the output of its first (partial) convolution `(N, E, T)` on."""
        h = instance_norm(F.gelu(h))
        for b in self.blocks:
            h = b(h)
        return h


class MotifDistance(nn.Module):
    """The learnable motif distance network (see the module docstring)."""

    def __init__(self, cfg: MotifConfig | None = None):
        super().__init__()
        self.cfg = cfg or MotifConfig()
        c = self.cfg
        self.gamma = nn.Parameter(torch.ones(c.channels))  # RevIN affine, shared by query and key
        self.beta = nn.Parameter(torch.zeros(c.channels))
        self.f_q, self.f_k, self.f_v = (DilatedConvEncoder(c) for _ in range(3))
        self.out = nn.Linear(c.embed_dim, c.channels)

    # ------------------------------------------------------------------ parts
    @staticmethod
    def stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-window, per-channel mean and std over time of `(N, C, T)`: `(N, C, 1)` each, detached."""
        x = x.detach()
        mu = x.mean(-1, keepdim=True)
        sd = torch.sqrt(x.var(-1, keepdim=True, unbiased=False) + REVIN_EPS)
        return mu, sd

    def _norm(self, x: torch.Tensor, mu: torch.Tensor, sd: torch.Tensor) -> torch.Tensor:
        return self.gamma[:, None] * (x - mu) / sd + self.beta[:, None]

    def _denorm(self, y: torch.Tensor, mu: torch.Tensor, sd: torch.Tensor) -> torch.Tensor:
        return (y - self.beta[:, None]) / (self.gamma[:, None] + 1e-10) * sd + mu

    def _use_sparsemax(self) -> bool:
        return self.training or self.cfg.attention == "sparsemax"

    def encode_candidates(self, cand: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """What depends on the candidate alone: keys, values `(C, T, E)`, statistics `(C, 3, 1)` x 2."""
        mu, sd = self.stats(cand)
        xc = self._norm(cand, mu, sd)
        return self.f_k(xc).transpose(1, 2), self.f_v(xc).transpose(1, 2), mu, sd

    def reconstruct_pairs(self, anchors: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mu: torch.Tensor,
                          sd: torch.Tensor) -> torch.Tensor:
        """The anchors `(P, 3, T)` rebuilt from their candidates (given by per-pair encodings and statistics,
        `(P, T', E)` and `(P, 3, 1)`): `(P, 3, T)` in the anchors' units."""
        q = self.f_q(self._norm(anchors, mu, sd)).transpose(1, 2)  # (P, T, E)
        scores = torch.matmul(q, keys.transpose(1, 2)) / math.sqrt(q.shape[-1])  # (P, T, T')
        w = sparsemax(scores, dim=-1) if self._use_sparsemax() else torch.softmax(scores.float(), -1).to(q.dtype)
        if self.training and self.cfg.dropout > 0:
            w = F.dropout(w, self.cfg.dropout)
        y = self.out(torch.matmul(w, values))  # (P, T, 3)
        return self._denorm(y.transpose(1, 2), mu, sd)

    # ------------------------------------------------------------------ API
    def forward(self, anchor: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
        """Reconstruction of each anchor `(N, 3, T)` from its own candidate `(N, 3, T)`: `(N, 3, T)`."""
        keys, values, mu, sd = self.encode_candidates(cand)
        return self.reconstruct_pairs(anchor, keys, values, mu, sd)

    def pair_distance(self, anchor: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
        """d(anchor_n, cand_n) for `(N, 3, T)` pairs: `(N,)` sums of squared reconstruction errors."""
        return ((self(anchor, cand) - anchor) ** 2).sum(dim=(1, 2))

    def distance_matrix(self, anchors: torch.Tensor, cands: torch.Tensor, index: torch.Tensor | None = None,
                        chunk: int = 256) -> torch.Tensor:
        """Distances of A anchors from their candidates, in one batched computation.

        Equal (within float rounding) to :meth:`pair_distance` of every (anchor, candidate) pair, computed
        without repeating what pairs share (see :meth:`_distances_shared`). In training mode with attention
        dropout the pairs go through :meth:`reconstruct_pairs` instead (the dropout draw is per pair).

        Args:
            anchors: `(A, 3, T)`.
            cands: `(C, 3, T')` candidate windows; each is encoded once.
            index: `(A, M)` long, the candidates (rows of `cands`) of each anchor; None = all C for every anchor.
            chunk: pairs per batched call (bounds the `(chunk, T, T')` attention memory).

        Returns:
            `(A, M)` distances (`(A, C)` without `index`); gradients flow unless called under `no_grad`.
        """
        a = anchors.shape[0]
        if index is None:
            index = torch.arange(cands.shape[0], device=cands.device).expand(a, -1)
        if self.training and self.cfg.dropout > 0:
            return self._distances_per_pair(anchors, cands, index, chunk)
        return self._distances_shared(anchors, cands, index, chunk)

    def _distances_per_pair(self, anchors: torch.Tensor, cands: torch.Tensor, index: torch.Tensor,
                            chunk: int) -> torch.Tensor:
        """:meth:`distance_matrix` through :meth:`reconstruct_pairs` (candidate encodings computed once)."""
        a, m = index.shape
        keys, values, mu, sd = self.encode_candidates(cands)  # cached for every anchor that ranks them
        flat_c = index.reshape(-1)
        flat_a = torch.arange(a, device=anchors.device).repeat_interleave(m)
        out = []
        for lo in range(0, flat_c.numel(), chunk):
            ci, ai = flat_c[lo : lo + chunk], flat_a[lo : lo + chunk]
            x = anchors[ai]
            rec = self.reconstruct_pairs(x, keys[ci], values[ci], mu[ci], sd[ci])
            out.append(((rec - x) ** 2).sum(dim=(1, 2)))
        return torch.cat(out).reshape(a, m)

    def _distances_shared(self, anchors: torch.Tensor, cands: torch.Tensor, index: torch.Tensor,
                          chunk: int) -> torch.Tensor:
        """:meth:`distance_matrix` without dropout, sharing everything that does not depend on the pair.

        Per candidate, once: its statistics; its keys, pre-scaled by 1 / sqrt(E); its values already through
        the output layer (``out(w @ V) = w @ (V W^T) + b``, exact without dropout), `(C, T', 3)` instead of
        `(C, T', E)`. Per anchor, once: the first (partial, linear) convolution of f_q. The query input of a
        pair is the anchor under a per-channel affine map set by the candidate's statistics,
        ``x' = s * x + o`` (``s = gamma / sd_c``, ``o = beta - gamma * mu_c / sd_c``), so that convolution of
        the pair is ``sum_c s_c conv(x_c) + o_c conv(1)``: a product with the anchor's per-channel
        convolutions. The anchor is centred on its own mean first (``o`` absorbs it) so that the sum does not
        cancel large offsets. The rest of f_q, the attention and the error are per pair, in chunks of whole
        anchors (an anchor's row is split only when it has more than `chunk` candidates).
        """
        a, m = index.shape
        e = self.cfg.embed_dim
        t = anchors.shape[-1]
        f_q = self.f_q
        # ---- per candidate
        mu, sd = self.stats(cands)  # (C, 3, 1) each
        xc = self._norm(cands, mu, sd)
        keys = self.f_k(xc) * (1.0 / math.sqrt(e))  # (C, E, T')
        vo = torch.matmul(self.f_v(xc).transpose(1, 2), self.out.weight.t().to(xc.dtype))  # (C, T', 3)
        # ---- per anchor: the first convolution of f_q, one output per input channel, edge-rescaled
        conv = f_q.first
        k = conv.kernel_size[0]
        mu_a = anchors.mean(-1, keepdim=True)  # (A, 3, 1)
        xa = (anchors - mu_a).reshape(-1, 1, t)  # (A*3, 1, T)
        w = conv.weight.to(xa.dtype)  # (E, 3, k)
        ones = torch.ones(1, 1, t, dtype=xa.dtype, device=xa.device)
        ratio = k / F.conv1d(ones, torch.ones(1, 1, k, dtype=xa.dtype, device=xa.device), padding=k // 2)
        per_c = torch.stack([F.conv1d(xa.reshape(a, 3, t)[:, c : c + 1], w[:, c : c + 1], padding=k // 2)
                             for c in range(3)], 1) * ratio  # (A, 3, E, T)
        one_c = torch.cat([F.conv1d(ones, w[:, c : c + 1], padding=k // 2) for c in range(3)]) * ratio  # (3, E, T)
        per_c, one_c = per_c.reshape(a, 3, e * t), one_c.reshape(3, e * t)
        bias = conv.bias.to(xa.dtype)[:, None].expand(e, t).reshape(1, 1, e * t)
        # ---- per pair: the affine map of the query input (A, M, 3)
        gamma, beta = self.gamma.to(xa.dtype), self.beta.to(xa.dtype)
        mu_p, sd_p = mu[index][..., 0], sd[index][..., 0]  # (A, M, 3)
        scale = gamma / sd_p
        offset = beta + scale * (mu_a[:, None, :, 0] - mu_p)
        use_sparsemax = self._use_sparsemax()
        out_b = self.out.bias.to(xa.dtype)
        gamma_c, beta_c = gamma[:, None], beta[:, None]
        rows = max(1, chunk // m)  # anchors per call
        cols = m if rows > 1 or m <= chunk else chunk  # candidates per call
        res = []
        for a0 in range(0, a, rows):
            a1 = min(a, a0 + rows)
            parts = []
            for m0 in range(0, m, cols):
                m1 = min(m, m0 + cols)
                n_a, n_m = a1 - a0, m1 - m0
                sc, of = scale[a0:a1, m0:m1], offset[a0:a1, m0:m1]  # (n_a, n_m, 3)
                h = torch.baddbmm(torch.matmul(of, one_c) + bias, sc, per_c[a0:a1])  # (n_a, n_m, E*T)
                q = f_q.after_first(h.reshape(n_a * n_m, e, t))  # (P, E, T)
                ci = index[a0:a1, m0:m1].reshape(-1)
                scores = torch.bmm(q.transpose(1, 2), keys[ci])  # (P, T, T')
                att = sparsemax(scores, dim=-1) if use_sparsemax else torch.softmax(scores.float(), -1).to(q.dtype)
                y = (torch.bmm(att, vo[ci]) + out_b).transpose(1, 2)  # (P, 3, T)
                rec = (y - beta_c) / (gamma_c + 1e-10) * sd[ci] + mu[ci]
                x = anchors[a0:a1, None].expand(n_a, n_m, 3, t).reshape(-1, 3, t)
                parts.append(((rec - x) ** 2).sum(dim=(1, 2)).reshape(n_a, n_m))
            res.append(torch.cat(parts, 1))
        return torch.cat(res).reshape(a, m)


# ---------------------------------------------------------------------------------------------- files
def save_motif_distance(net: MotifDistance, out: str | Path, extra: dict) -> Path:
    """Write `model.safetensors` (the network) and `model.json` (format, architecture, provenance) in `out`."""
    from safetensors.torch import save_file

    out = Path(out)
    arch = asdict(net.cfg)
    meta = {"format": MOTIF_FORMAT, "config": json.dumps(arch), "extra": json.dumps(extra)}
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    atomic_write(out / "model.safetensors", lambda tmp: save_file(state, tmp, metadata=meta))
    atomic_write_json(out / "model.json", {"format": MOTIF_FORMAT, "config": arch, "extra": extra})
    return out


def load_motif_distance(run_dir: str | Path) -> tuple[MotifDistance, dict]:
    """A saved motif distance network, frozen (eval mode, no gradients), and its run metadata ("extra").

    Raises:
        ZeroharError: `run_dir` is not a finished motif-distance run.
    """
    from safetensors import safe_open

    d = Path(run_dir)
    j_path, w_path = d / "model.json", d / "model.safetensors"
    if not j_path.is_file() or not w_path.is_file():
        raise ZeroharError(f"{d} is not a motif-distance run directory (it lacks model.json or model.safetensors)")
    try:
        j = json.loads(j_path.read_text())
    except ValueError:
        raise ZeroharError(f"{j_path} is not valid JSON; the run directory is damaged") from None
    if not isinstance(j, dict) or j.get("format") != MOTIF_FORMAT:
        found = j.get("format") if isinstance(j, dict) else None
        raise ZeroharError(f"{d} holds a {found or 'non-zerohar'} model, not a motif distance network "
                           f"(train one with train.pretrain_method=motif-distance)")
    try:
        cfg = MotifConfig(**j["config"])
    except (KeyError, TypeError):
        raise ZeroharError(f"{j_path} has no valid motif distance 'config'; the run directory is damaged") from None
    net = MotifDistance(cfg)
    try:
        with safe_open(str(w_path), framework="pt", device="cpu") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}
        net.load_state_dict(state)
    except Exception as e:  # noqa: BLE001 - a damaged or foreign file: one message
        raise ZeroharError(f"{w_path} does not hold this motif distance network ({e.__class__.__name__})") from None
    net.eval().requires_grad_(False)
    return net, dict(j.get("extra") or {})
