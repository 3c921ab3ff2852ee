"""Contrastive loss (against a hand computation) and the SSL pretext transforms and heads."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from zerohar.losses.contrastive import ContrastiveLoss, compute_loss_from_embeddings, unique_targets
from zerohar.losses.pretext import (
    PRETEXT_TASKS,
    PretextHeads,
    permutation_index,
    pretext_batch,
    pretext_loss,
    time_warp,
)


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
def smooth_signal(n: int, t: int, seed: int = 0) -> torch.Tensor:
    """Random, non-periodic, non-constant signals: no transform leaves them unchanged by accident."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, t, generator=g).cumsum(-1) + torch.linspace(0, 5, t)


def test_pretext_batch_identity_when_label_0_and_change_when_1():
    x = smooth_signal(96, 150)
    out, labels = pretext_batch(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert set(labels) == set(PRETEXT_TASKS)
    combo = torch.stack([labels[k] for k in ("aot", "permute", "time_warp")], 1)  # (N, 3)
    for c in ([0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]):
        assert (combo == torch.tensor(c)).all(1).any(), f"combination {c} not drawn"
    for i in range(len(x)):
        aot, perm, warp = combo[i].tolist()
        if (aot, perm, warp) == (0, 0, 0):
            assert torch.equal(out[i], x[i])
        elif (aot, perm, warp) == (1, 0, 0):
            assert torch.equal(out[i], x[i].flip(-1))
        elif (aot, perm, warp) == (0, 1, 0):  # the same samples, in another order
            assert torch.equal(out[i].sort(-1).values, x[i].sort(-1).values)
            assert not torch.equal(out[i], x[i])
        elif (aot, perm, warp) == (0, 0, 1):  # resampled, endpoints fixed, not the same signal
            torch.testing.assert_close(out[i][:, [0, -1]], x[i][:, [0, -1]])
            assert (out[i] - x[i]).abs().max() > 1e-3
        else:
            assert not torch.equal(out[i], x[i])


def test_pretext_batch_is_reproducible_and_balanced():
    x = smooth_signal(400, 30)
    a, la = pretext_batch(x, torch.Generator().manual_seed(5))
    b, lb = pretext_batch(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and all(torch.equal(la[k], lb[k]) for k in PRETEXT_TASKS)
    for k in PRETEXT_TASKS:
        assert 0.35 < la[k].float().mean() < 0.65
    none, lab = pretext_batch(x[:8], torch.Generator().manual_seed(0), p=0.0)
    assert torch.equal(none, x[:8]) and all(lab[k].sum() == 0 for k in PRETEXT_TASKS)


@settings(max_examples=30, deadline=None)
@given(t=st.integers(8, 400), n_chunks=st.integers(2, 6), seed=st.integers(0, 10_000))
def test_permutation_index_is_a_non_identity_permutation(t, n_chunks, seed):
    idx = permutation_index(t, n_chunks, torch.Generator().manual_seed(seed))
    assert sorted(idx.tolist()) == list(range(t))
    assert not torch.equal(idx, torch.arange(t))


@settings(max_examples=30, deadline=None)
@given(t=st.integers(4, 300), seed=st.integers(0, 10_000))
def test_time_warp_keeps_length_endpoints_and_range(t, seed):
    x = smooth_signal(2, t, seed)
    y = time_warp(x, torch.Generator().manual_seed(seed))
    assert y.shape == x.shape
    torch.testing.assert_close(y[..., [0, -1]], x[..., [0, -1]])
    # Linear interpolation never leaves the range of the neighbouring samples.
    assert (y <= x.amax(-1, keepdim=True) + 1e-5).all() and (y >= x.amin(-1, keepdim=True) - 1e-5).all()


def test_pretext_heads_and_loss_match_hand_computation():
    torch.manual_seed(0)
    heads = PretextHeads(16, hidden=8)
    feats = torch.randn(6, 16)
    labels = {k: torch.tensor([0, 1, 1, 0, 1, 0]) for k in PRETEXT_TASKS}
    loss, acc = pretext_loss(heads, feats, labels)
    logits = heads(feats)
    assert set(logits) == set(PRETEXT_TASKS) and all(v.shape == (6,) for v in logits.values())
    want = 0.0
    for k in PRETEXT_TASKS:
        for z, y in zip(logits[k].tolist(), labels[k].tolist()):
            p = 1 / (1 + math.exp(-z))
            want += -(y * math.log(p) + (1 - y) * math.log(1 - p)) / 6
    assert loss.item() == pytest.approx(want / 3, rel=1e-5)
    for k in PRETEXT_TASKS:
        hits = sum(int((z > 0) == bool(y)) for z, y in zip(logits[k].tolist(), labels[k].tolist()))
        assert acc[k].item() == pytest.approx(hits / 6)
    loss.backward()
    assert all(p.grad is not None for p in heads.parameters())
