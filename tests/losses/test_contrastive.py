"""The contrastive loss of Stage I / II, against a hand computation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from zerohar.losses.contrastive import ContrastiveLoss, compute_loss_from_embeddings, unique_targets


# ============================================================================================ contrastive
def test_unique_targets_lists_and_tensors():
    ids, targets = unique_targets(["x of acc", "y of acc", "x of acc", "z of gyro", "y of acc"])
    assert ids == ["x of acc", "y of acc", "z of gyro"]
    assert targets.tolist() == [0, 1, 0, 2, 1]
    assert [ids[t] for t in targets] == ["x of acc", "y of acc", "x of acc", "z of gyro", "y of acc"]
    uniq, targets = unique_targets(torch.tensor([7, 3, 7, 9]))
    assert uniq.tolist() == [3, 7, 9] and targets.tolist() == [1, 0, 1, 2]


def hand_loss(f: torch.Tensor, t: torch.Tensor, y: list[int], scale: float) -> float:
    """The loss by explicit loops over samples and texts (float64)."""
    n, m = f.shape[0], t.shape[0]
    sim = [[scale * float(f[i] @ t[j]) for j in range(m)] for i in range(n)]
    s2t = 0.0
    for i in range(n):  # each sample against all M unique texts
        denom = sum(math.exp(sim[i][j]) for j in range(m))
        s2t += -math.log(math.exp(sim[i][y[i]]) / denom)
    s2t /= n
    present = sorted(set(y))
    t2s = 0.0
    for j in present:  # each text present in the batch against all N samples; positives share weight 1/n_j
        denom = sum(math.exp(sim[i][j]) for i in range(n))
        pos = [i for i in range(n) if y[i] == j]
        q = 1 / len(pos)
        t2s += sum(q * (math.log(q) - math.log(math.exp(sim[i][j]) / denom)) for i in pos)  # KL(q || p)
    t2s /= len(present)
    return (s2t + t2s) / 2


def test_contrastive_loss_equals_hand_computation():
    g = torch.Generator().manual_seed(0)
    f = F.normalize(torch.randn(5, 4, generator=g, dtype=torch.float64), dim=-1)
    t = F.normalize(torch.randn(4, 4, generator=g, dtype=torch.float64), dim=-1)  # text 3 absent from the batch
    y = [0, 1, 0, 2, 0]
    scale = 3.0
    got = compute_loss_from_embeddings(f, t, torch.tensor(y), math.log(scale))
    assert got.item() == pytest.approx(hand_loss(f, t, y, scale), rel=1e-5)
    # The module is the same function.
    assert ContrastiveLoss()(f, t, torch.tensor(y), math.log(scale)).item() == pytest.approx(got.item(), rel=1e-6)


def test_one_directional_loss_is_cross_entropy_over_unique_texts():
    g = torch.Generator().manual_seed(1)
    f = F.normalize(torch.randn(6, 8, generator=g), dim=-1)
    t = F.normalize(torch.randn(3, 8, generator=g), dim=-1)
    y = torch.tensor([2, 2, 0, 1, 2, 0])
    got = compute_loss_from_embeddings(f, t, y, math.log(10.0), symmetric=False)
    want = sum(-math.log(torch.softmax(10.0 * f[i] @ t.T, 0)[y[i]].item()) for i in range(6)) / 6
    assert got.item() == pytest.approx(want, rel=1e-5)


def test_equal_texts_are_never_negatives():
    # Two texts, orthogonal; four samples each exactly on its text, three sharing text 0.
    t = torch.eye(2, 4)
    y = torch.tensor([0, 0, 0, 1])
    f = t[y]
    # sample -> text: with duplicates as negatives (CLIP over N x N) the loss could not drop below log(3);
    # here it vanishes as the scale grows.
    assert compute_loss_from_embeddings(f, t, y, math.log(100.0), symmetric=False).item() < 1e-6
    # text -> sample: the three samples of text 0 are all its positives, so it vanishes too.
    assert compute_loss_from_embeddings(f, t, y, math.log(100.0)).item() < 1e-6


def test_scale_is_learnable_and_clamped():
    g = torch.Generator().manual_seed(2)
    f = F.normalize(torch.randn(4, 8, generator=g), dim=-1)
    t = F.normalize(torch.randn(2, 8, generator=g), dim=-1)
    y = torch.tensor([0, 1, 1, 0])
    logit_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    ContrastiveLoss()(f, t, y, logit_scale).backward()
    assert logit_scale.grad is not None and logit_scale.grad.abs() > 0
    at_cap = compute_loss_from_embeddings(f, t, y, math.log(100.0))
    above = compute_loss_from_embeddings(f, t, y, math.log(1000.0))
    assert above.item() == pytest.approx(at_cap.item())


def test_gradients_reach_both_sides():
    g = torch.Generator().manual_seed(3)
    f = torch.randn(5, 8, generator=g, requires_grad=True)
    t = torch.randn(3, 8, generator=g, requires_grad=True)
    loss = ContrastiveLoss()(F.normalize(f, dim=-1), F.normalize(t, dim=-1), torch.tensor([0, 1, 1, 2, 0]))
    loss.backward()
    assert f.grad.abs().sum() > 0 and t.grad.abs().sum() > 0


# ============================================================================================ pretext
