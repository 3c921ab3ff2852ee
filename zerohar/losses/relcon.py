"""The relative contrastive loss of RelCon (Xu et al., ICLR 2025), written from `reference/RELCON.md` 2.3.

Ordinary contrastive learning splits the other windows into one positive and many negatives. RelCon instead
*ranks* them. Each **anchor** window comes with a set of **candidates** (in zerohar: the other anchors of the
batch, mostly other subjects, and windows of the anchor's own recording from nearby time; see
:mod:`zerohar.train.relcon`). A frozen, learned motif distance (:mod:`zerohar.model.motif`) orders the
candidates of an anchor from nearest ``c_1`` to farthest ``c_M``. Only that **order** enters the loss; the
distance values never do.

With ``s_m = cos(z_anchor, z_{c_m}) / tau`` (encoder embeddings, no projection head, temperature tau = 0.1),
every candidate in turn is the positive, and its negatives are all candidates that are *strictly farther*
from the anchor than it::

    L_anchor = sum_m [ -s_m + log( exp(s_m) + sum_{m' : d_m' > d_m} exp(s_m') ) ]

Each term is an InfoNCE whose denominator holds the positive and its negatives. The farthest candidate has no
negatives: its term is ``-s + log exp(s) = 0``, so there are M - 1 non-trivial terms. They are **summed** per
anchor (not averaged); the batch loss is the **mean** over anchors. The result pulls the anchor towards each
candidate more than towards everything ranked behind it, so the embedding learns the whole ordering (near
motifs nearer than far ones), not only "same vs different".

Choices where the text leaves room:

- **Ties** in distance: the text defines negatives by a strictly larger distance, so tied candidates are not
  each other's negatives (each gets its own term with only the strictly farther ones in its denominator). The
  released code sorts and uses a plain cumulative sum, which would make the first of a tie a negative of
  nothing and the later ones negatives of the earlier ones; with continuous distances ties never occur and
  both agree.
- The log of the cumulative sum is a running ``logcumsumexp`` from the farthest candidate (stable for any
  temperature), computed in float32 even under bf16 autocast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: RelCon's temperature (the `RelCon_ModelConfig` default).
RELCON_TAU = 0.1


def relative_contrastive_loss(
    z_anchor: torch.Tensor, z_cand: torch.Tensor, dist: torch.Tensor, tau: float = RELCON_TAU,
    reduction: str = "mean",
) -> torch.Tensor:
    """The relative contrastive loss of anchors against their ranked candidates.

    Args:
        z_anchor: `(B, D)` anchor embeddings.
        z_cand: `(B, M, D)` embeddings of each anchor's M candidates (M >= 2).
        dist: `(B, M)` distance of each candidate from its anchor (smaller = more similar); only its order
            along M is used.
        tau: temperature of the cosine similarity.
        reduction: "mean" (over anchors, RelCon's batch loss) or "none" (the `(B,)` per-anchor losses).

    Returns:
        The loss (a scalar, or `(B,)`).
    """
    if z_cand.ndim != 3 or z_anchor.ndim != 2 or dist.shape != z_cand.shape[:2] or z_cand.shape[0] != len(z_anchor):
        raise ValueError(f"shapes: z_anchor {tuple(z_anchor.shape)}, z_cand {tuple(z_cand.shape)}, "
                         f"dist {tuple(dist.shape)}; expected (B, D), (B, M, D), (B, M)")
    za = F.normalize(z_anchor.float(), dim=-1)
    zc = F.normalize(z_cand.float(), dim=-1)
    s = torch.einsum("bd,bmd->bm", za, zc) / tau  # (B, M) similarity / tau
    d_sorted, order = torch.sort(dist.float(), dim=-1)  # ascending: nearest first
    s = s.gather(-1, order)  # (B, M), s[:, 0] is the nearest candidate
    # tail[:, m] = log sum_{m' >= m} exp(s_m'), and tail[:, M] = -inf (nothing farther than the farthest).
    tail = torch.logcumsumexp(s.flip(-1), dim=-1).flip(-1)
    tail = torch.cat([tail, torch.full_like(tail[:, :1], float("-inf"))], dim=-1)  # (B, M + 1)
    # First position strictly farther than candidate m (ties share it): its tail is the sum over negatives.
    after = torch.searchsorted(d_sorted.contiguous(), d_sorted.contiguous(), right=True)  # (B, M) in [1, M]
    denom = torch.logaddexp(s, tail.gather(-1, after))  # log(exp(s_m) + sum over strictly farther)
    per_anchor = (denom - s).sum(-1)  # (B,)
    if reduction == "none":
        return per_anchor
    if reduction != "mean":
        raise ValueError(f"reduction must be 'mean' or 'none', found {reduction!r}")
    return per_anchor.mean()


class RelativeContrastiveLoss(nn.Module):
    """:func:`relative_contrastive_loss` as a module with a fixed temperature."""

    def __init__(self, tau: float = RELCON_TAU):
        super().__init__()
        self.tau = float(tau)

    def forward(self, z_anchor: torch.Tensor, z_cand: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
        return relative_contrastive_loss(z_anchor, z_cand, dist, self.tau)

    def extra_repr(self) -> str:
        return f"tau={self.tau}"
