"""The SSL pretext transforms, heads and loss (against hand computations)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from zerohar.losses.pretext import (
    PRETEXT_TASKS,
    PretextHeads,
    permutation_index,
    pretext_batch,
    pretext_loss,
    time_warp,
)

# ============================================================================================ contrastive


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
