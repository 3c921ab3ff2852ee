"""Sparsemax (Martins & Astudillo, ICML 2016): the Euclidean projection of a score vector onto the simplex.

Softmax turns scores into probabilities that are all positive; sparsemax returns the point of the probability
simplex nearest (in squared distance) to the scores, which puts exactly zero on every score far enough below
the largest ones. For scores `z` sorted in decreasing order `z_(1) >= z_(2) >= ...`:

- the support size is ``k = max{k : 1 + k * z_(k) > sum_{j<=k} z_(j)}``;
- the threshold is ``tau = (sum_{j<=k} z_(j) - 1) / k``;
- ``sparsemax(z)_i = max(z_i - tau, 0)``.

Its Jacobian is ``diag(s) - s s^T / |S|`` with `s` the indicator of the support S, so the backward pass of a
gradient `g` is ``s * (g - sum_{i in S} g_i / |S|)``; :class:`SparsemaxFunction` implements it explicitly
(RelCon's released code relied on autograd through the sort instead; the values are the same).

Low-precision inputs (bf16, fp16) are projected in float32 and returned in their own dtype.
"""

from __future__ import annotations

import torch

#: Sparsemax first looks for the support among this many largest scores (a partial sort); rows whose support
#: may be larger are redone with a full sort. Attention rows of the motif distance have a support of a few.
TOP_K = 16


def _threshold(zs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Support size `(..., 1)` and threshold tau `(..., 1)` from scores sorted in decreasing order."""
    k = torch.arange(1, zs.shape[-1] + 1, device=zs.device, dtype=zs.dtype)
    cums = zs.cumsum(-1)
    support = (1 + k * zs) > cums  # True for the first k entries of the sorted vector
    k_z = support.sum(-1, keepdim=True).clamp(min=1)  # (..., 1); >= 1 for finite input
    return k_z, (cums.gather(-1, k_z - 1) - 1) / k_z.to(zs.dtype)


def _sparsemax_last(z: torch.Tensor) -> torch.Tensor:
    """Sparsemax along the last dim (no autograd bookkeeping).

    The threshold needs the sorted scores only as far as the support reaches: it is computed from the
    :data:`TOP_K` largest (`torch.topk`, much cheaper than a full sort of long rows). Where all of them are in
    the support, the support may extend further and that row's threshold comes from a full sort. The result
    is the one of a full sort (the same sorted prefix, the same cumulative sums).
    """
    n = z.shape[-1]
    if n <= TOP_K or z.numel() == 0:
        _, tau = _threshold(torch.sort(z, dim=-1, descending=True)[0])
        return (z - tau).clamp(min=0)
    k_z, tau = _threshold(torch.topk(z, TOP_K, dim=-1, sorted=True)[0])
    full = (k_z == TOP_K).squeeze(-1)  # support possibly larger than the top k
    if bool(full.any()):
        tau = tau.clone()
        tau[full] = _threshold(torch.sort(z[full], dim=-1, descending=True)[0])[1]
    return (z - tau).clamp(min=0)


class SparsemaxFunction(torch.autograd.Function):
    """Sparsemax along the last dim with its exact Jacobian-vector product in the backward pass."""

    @staticmethod
    def forward(ctx, z: torch.Tensor) -> torch.Tensor:
        p = _sparsemax_last(z)
        ctx.save_for_backward(p)
        return p

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (p,) = ctx.saved_tensors
        s = (p > 0).to(grad.dtype)
        mean_g = (grad * s).sum(-1, keepdim=True) / s.sum(-1, keepdim=True).clamp(min=1)
        return s * (grad - mean_g)


def sparsemax(z: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Sparsemax of `z` along `dim`: non-negative, sums to one along `dim`, exactly zero below a threshold.

    Args:
        z: scores of any shape (finite).
        dim: the dimension that becomes a probability vector.

    Returns:
        A tensor of the shape and dtype of `z`.

    Example:
        >>> sparsemax(torch.tensor([2.0, 1.0, -1.0]))
        tensor([1., 0., 0.])
    """
    dtype = z.dtype
    work = z.float() if dtype in (torch.bfloat16, torch.float16) else z
    out = SparsemaxFunction.apply(work.movedim(dim, -1)).movedim(-1, dim)
    return out.to(dtype)
