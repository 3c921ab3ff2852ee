"""The SSL pretext tasks of HARNet (SSL-Wearables), and their loss.

Multi-task as in SSL-Wearables (reimplemented): each window is, independently with probability 0.5,
time-warped, chunk-permuted and reversed in time; one binary head per task on the backbone feature
predicts whether it was.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: The pretext tasks: arrow of time (reversal), chunk permutation, time warp.
PRETEXT_TASKS = ("aot", "permute", "time_warp")


def _rand(shape, generator, device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=device)


def permutation_index(t: int, n_chunks: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Time indices `(t,)` that cut `[0, t)` into `n_chunks` chunks of jittered length and shuffle them.

    Chunk boundaries move by up to a quarter of the mean chunk length from an even split, so every chunk
    has at least half the mean length; the chunk order is never the identity.
    """
    base = torch.linspace(0, t, n_chunks + 1)
    jitter = (_rand(n_chunks - 1, generator, "cpu") - 0.5) * (t / n_chunks / 2)
    bounds = torch.cat([base[:1], base[1:-1] + jitter, base[-1:]]).round().long().tolist()
    chunks = [torch.arange(bounds[i], bounds[i + 1]) for i in range(n_chunks)]
    identity = torch.arange(t)
    idx = identity
    # A new chunk order until the time order changes: with short windows a jittered chunk can be empty, and an
    # order that only moves empty chunks would leave the window untransformed although labelled permuted.
    while torch.equal(idx, identity):
        order = torch.randperm(n_chunks, generator=generator)
        idx = torch.cat([chunks[i] for i in order.tolist()])
    return idx


def time_warp(
    x: torch.Tensor, generator: torch.Generator | None = None, knots: int = 4, sigma: float = 0.2
) -> torch.Tensor:
    """Smoothly stretch and compress windows in time.

    A random speed is drawn at `knots + 2` evenly spaced points (log-normal around 1, spread `sigma`), made
    a smooth curve over the window by cubic interpolation, and integrated into a monotone time map from
    `[0, T-1]` onto itself; the signal is resampled at the mapped times by linear interpolation.

    Args:
        x: `(N, C, T)`.

    Returns:
        `(N, C, T)`, the same length.
    """
    n, c, t = x.shape
    speed = torch.exp(sigma * torch.randn(n, 1, 1, knots + 2, generator=generator, device=x.device))
    speed = F.interpolate(speed, size=(1, t), mode="bicubic", align_corners=True)[:, 0, 0].clamp(min=0.05)  # (N, T)
    tau = torch.cumsum(speed, dim=1)  # (N, T), increasing
    tau = (tau - tau[:, :1]) / (tau[:, -1:] - tau[:, :1]) * (t - 1)  # (N, T) in [0, T-1]
    i0 = tau.floor().long().clamp(0, t - 2)  # (N, T)
    frac = (tau - i0).to(x.dtype)[:, None, :]  # (N, 1, T)
    i0 = i0[:, None, :].expand(n, c, t)  # (N, C, T)
    x0, x1 = x.gather(2, i0), x.gather(2, i0 + 1)
    return x0 + frac * (x1 - x0)


def pretext_batch(
    x: torch.Tensor, generator: torch.Generator | None = None, p: float = 0.5, n_chunks: int = 4
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Apply the three pretext transforms, each to a random half of the windows.

    Order: time warp, then permutation, then arrow of time (reversal), each independently with probability `p`.

    Args:
        x: `(N, 3, T)` windows.
        generator: a `torch.Generator` for reproducible draws (default: the global RNG).
        p: probability of each transform.
        n_chunks: chunks of the permutation task.

    Returns:
        `(x_aug (N, 3, T), {"aot": y, "permute": y, "time_warp": y})`, each `y (N,)` long in {0, 1}
        (1 = transformed). Windows with label 0 for a task are untouched by it.
    """
    n, _, t = x.shape
    labels = {k: (_rand(n, generator, "cpu") < p).long() for k in ("time_warp", "permute", "aot")}
    out = x.clone()
    warp = labels["time_warp"].bool().to(x.device)
    if warp.any():
        out[warp] = time_warp(out[warp], generator)
    # Permutation and reversal are index maps; compose them and gather once.
    idx = torch.arange(t).repeat(n, 1)  # (N, T)
    for i in labels["permute"].nonzero().flatten().tolist():
        idx[i] = permutation_index(t, n_chunks, generator)
    rev = labels["aot"].bool()
    idx[rev] = idx[rev].flip(-1)
    out = out.gather(2, idx.to(x.device)[:, None, :].expand_as(out))  # (N, 3, T)
    return out, {k: labels[k].to(x.device) for k in PRETEXT_TASKS}


class PretextHeads(nn.Module):
    """One binary classifier per pretext task on the backbone features.

    Args:
        in_dim: backbone feature size D.
        hidden: width of each head's hidden layer (0: a linear head).
    """

    def __init__(self, in_dim: int, hidden: int = 256):
        super().__init__()

        def head() -> nn.Module:
            if hidden <= 0:
                return nn.Linear(in_dim, 1)
            return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

        self.heads = nn.ModuleDict({k: head() for k in PRETEXT_TASKS})

    def forward(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits `(N,)` per task from features `(N, D)`."""
        return {k: h(feats).squeeze(-1) for k, h in self.heads.items()}


def pretext_loss(
    heads: PretextHeads, feats: torch.Tensor, labels: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean binary cross-entropy over the pretext tasks.

    Args:
        heads: the task heads.
        feats: `(N, D)` backbone features of the transformed windows.
        labels: as returned by :func:`pretext_batch`.

    Returns:
        `(loss, accuracies)`: the scalar loss and, per task, the detached accuracy (0-d tensor).
    """
    return pretext_loss_from_logits(heads(feats), labels)


def pretext_loss_from_logits(
    logits: dict[str, torch.Tensor], labels: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """:func:`pretext_loss` from the heads' logits `{task: (N,)}` (what the training loop's forward returns)."""
    losses, accs = [], {}
    for k in PRETEXT_TASKS:
        y = labels[k].to(logits[k].device)
        losses.append(F.binary_cross_entropy_with_logits(logits[k].float(), y.float()))
        accs[k] = ((logits[k].detach() > 0).long() == y).float().mean()
    return torch.stack(losses).mean(), accs
