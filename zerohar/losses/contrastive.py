"""Losses: the CLIP-style contrastive loss of Stage I and Stage II, and the SSL pretext tasks of HARNet.

**Contrastive** (:class:`ContrastiveLoss`). In both stages many samples share a text: every accelerometer
x-channel of a batch has the same axis description (Stage I); every walking window has the same label
prototype (Stage II). CLIP's loss over an N x N similarity matrix would treat two samples with the same text
as negatives of each other's text, pushing apart what should be together (the false negatives that
sentence-transformers' `NoDuplicatesBatchSampler` avoids by sampling). Here texts are deduplicated first:
the logits are N samples x M *unique* texts, so a text is never its own negative.

- sample -> text: cross-entropy of each sample over the M unique texts (those absent from the batch, such as
  prototypes of other seen classes, are valid negatives);
- text -> sample: for each text present in the batch, cross-entropy over the N samples with a multi-positive
  target q, uniform over the samples of that text (the supervised-contrastive form), minus the entropy of q.
  Subtracting that constant (it makes the term KL(q || p)) changes no gradient, but puts the minimum at 0
  whatever the number of samples per text, so loss curves stay comparable across batches;
- the loss is the mean of the two directions, scaled by a learnable inverse temperature (the model's
  `logit_scale`, CLIP's log(1/0.07) initialisation, clamped at 100).

**SSL pretext** (:func:`pretext_batch`, :class:`PretextHeads`, :func:`pretext_loss`), multi-task as in
SSL-Wearables (reimplemented): each window is, independently with probability 0.5, time-warped, chunk-permuted
and reversed in time; one binary head per task on the backbone feature predicts whether it was.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

PRETEXT_TASKS = ("aot", "permute", "time_warp")


# ============================================================================================ contrastive
def unique_targets(text_ids: Sequence[Hashable] | torch.Tensor) -> tuple[list | torch.Tensor, torch.Tensor]:
    """Deduplicate the texts of a batch.

    Args:
        text_ids: one id per sample (a text, an integer, any hashable), or an integer tensor `(N,)`.

    Returns:
        `(unique_ids, targets)`: the distinct ids (a list in order of first appearance, or for a tensor the
        sorted distinct values) and `targets (N,)` long, the index of each sample's id in `unique_ids`.

    Example:
        >>> unique_targets(["walk", "sit", "walk"])
        (['walk', 'sit'], tensor([0, 1, 0]))
    """
    if isinstance(text_ids, torch.Tensor):
        uniq, inverse = torch.unique(text_ids, sorted=True, return_inverse=True)
        return uniq, inverse.long()
    index: dict[Hashable, int] = {}
    targets = [index.setdefault(t, len(index)) for t in text_ids]
    return list(index), torch.tensor(targets, dtype=torch.long)


def compute_loss_from_embeddings(
    features: torch.Tensor,
    text_features: torch.Tensor,
    targets: torch.Tensor,
    logit_scale: torch.Tensor | float,
    max_scale: float = 100.0,
    symmetric: bool = True,
) -> torch.Tensor:
    """The contrastive loss of :class:`ContrastiveLoss`, as a pure function of the embeddings.

    Args:
        features: `(N, E)` sample embeddings (L2-normalised).
        text_features: `(M, E)` embeddings of the unique texts (L2-normalised).
        targets: `(N,)` long, index of each sample's text in `text_features`.
        logit_scale: log of the inverse temperature (a learnable scalar); `exp` is clamped at `max_scale`.
        max_scale: upper bound of the scale.
        symmetric: add the text -> sample direction (else sample -> text only).

    Returns:
        The scalar loss.
    """
    logit_scale = torch.as_tensor(logit_scale, dtype=torch.float32, device=features.device)
    scale = logit_scale.exp().clamp(max=max_scale)
    # fp32 logits: bf16 similarities lose the small differences a temperature of 0.01 amplifies.
    logits = scale * features.float() @ text_features.float().T  # (N, M)
    loss_s2t = F.cross_entropy(logits, targets)
    if not symmetric:
        return loss_s2t
    present = torch.unique(targets)  # (P,)
    positives = (targets[None, :] == present[:, None]).float()  # (P, N)
    q = positives / positives.sum(1, keepdim=True)  # (P, N) uniform over the samples of each text
    log_p = F.log_softmax(logits.T[present], dim=1)  # (P, N)
    # KL(q || p) = cross-entropy - entropy(q); entropy(q) = log(number of samples of the text).
    loss_t2s = (-(q * log_p).sum(1) - positives.sum(1).log()).mean()
    return (loss_s2t + loss_t2s) / 2


class ContrastiveLoss(nn.Module):
    """CLIP-style contrastive loss where samples sharing a text are positives, never negatives.

    Args:
        max_scale: the inverse temperature `exp(logit_scale)` is clamped at this value (CLIP: 100).
        symmetric: average the sample -> text and text -> sample directions (CLIP); False keeps only
            sample -> text (a softmax classifier over text embeddings).

    Inputs:
        ============== ========================== =====================================================
        features       (N, E) float               L2-normalised sample embeddings (channels or windows)
        text_features  (M, E) float               L2-normalised embeddings of the M unique texts
        targets        (N,) long                  index into `text_features` (see :func:`unique_targets`)
        logit_scale    () float                   log inverse temperature; pass the model's parameter
        ============== ========================== =====================================================

    Relations:
        Stage I: features are channel embeddings (`encode_channels`, flattened to `(B*C, E)`), texts the
        per-axis sensor descriptions. Stage II: features are window embeddings, texts the label
        prototypes of the seen classes (targets = class index among them).

    References:
        Radford et al., "Learning Transferable Visual Models From Natural Language Supervision" (CLIP), 2021.
        Khosla et al., "Supervised Contrastive Learning", 2020 (multi-positive targets).
        Chowdhury et al., "ZeroHAR: Sensor Context Augments Zero-Shot Wearable Action Recognition", AAAI 2025.

    Example:
        >>> loss_fn = ContrastiveLoss()
        >>> names, targets = unique_targets(["walk", "sit", "walk", "walk"])
        >>> feats = F.normalize(torch.randn(4, 8), dim=-1)
        >>> texts = F.normalize(torch.randn(len(names), 8), dim=-1)
        >>> logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        >>> loss = loss_fn(feats, texts, targets, logit_scale)
        >>> loss.backward()
    """

    def __init__(self, max_scale: float = 100.0, symmetric: bool = True):
        super().__init__()
        self.max_scale = max_scale
        self.symmetric = symmetric

    def forward(
        self, features: torch.Tensor, text_features: torch.Tensor, targets: torch.Tensor,
        logit_scale: torch.Tensor | float = math.log(1 / 0.07),
    ) -> torch.Tensor:
        return compute_loss_from_embeddings(
            features, text_features, targets, logit_scale, self.max_scale, self.symmetric
        )


# ============================================================================================ SSL pretext
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
    order = torch.arange(n_chunks)
    while bool((order == torch.arange(n_chunks)).all()):
        order = torch.randperm(n_chunks, generator=generator)
    return torch.cat([chunks[i] for i in order.tolist()])


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
    logits = heads(feats)
    losses, accs = [], {}
    for k in PRETEXT_TASKS:
        y = labels[k].to(logits[k].device)
        losses.append(F.binary_cross_entropy_with_logits(logits[k].float(), y.float()))
        accs[k] = ((logits[k].detach() > 0).long() == y).float().mean()
    return torch.stack(losses).mean(), accs
