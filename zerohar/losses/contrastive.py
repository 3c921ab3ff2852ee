"""The CLIP-style contrastive loss of Stage I and Stage II.

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
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import torch
import torch.nn.functional as F
from torch import nn


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


def inverse_temperature(logit_scale: torch.Tensor, max_scale: float = 100.0) -> torch.Tensor:
    """The scale that multiplies cosine similarities: `exp(logit_scale)`, clamped at `max_scale` (CLIP: 100)."""
    return logit_scale.exp().clamp(max=max_scale)


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
    scale = inverse_temperature(torch.as_tensor(logit_scale, dtype=torch.float32, device=features.device), max_scale)
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
