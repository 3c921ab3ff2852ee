"""The relative contrastive loss (RELCON.md 2.3): values by hand, ranks only, ties, and what it rewards."""

from __future__ import annotations

import math

import pytest
import torch

from zerohar.losses.relcon import RelativeContrastiveLoss, relative_contrastive_loss


def _by_definition(za, zc, d, tau):
    """The paper form, one loop per positive: InfoNCE over {pos} + {candidates strictly farther than pos}."""
    total = 0.0
    for b in range(len(za)):
        s = [float(torch.cosine_similarity(za[b], zc[b, m], dim=0)) / tau for m in range(zc.shape[1])]
        for m in range(len(s)):
            negs = [s[j] for j in range(len(s)) if d[b, j] > d[b, m]]
            if negs:
                total += -s[m] + math.log(math.exp(s[m]) + sum(math.exp(v) for v in negs))
    return total / len(za)


def test_four_candidates_by_hand():
    tau = 0.1
    anchor = torch.tensor([[1.0, 0.0]])
    angles = [0.3, 1.2, 0.1, 2.5]  # candidate directions (radians)
    cands = torch.tensor([[[math.cos(a), math.sin(a)] for a in angles]]) * torch.tensor([[[2.0], [0.5], [1.0], [3.0]]])
    dist = torch.tensor([[0.4, 0.1, 0.9, 0.2]])  # order by distance: c1 (0.1), c3 (0.2), c0 (0.4), c2 (0.9)
    s = {i: math.cos(a) / tau for i, a in enumerate(angles)}  # cosine ignores the norms
    order = [1, 3, 0, 2]
    expected = 0.0
    for m in range(3):  # the farthest (c2) is never a positive
        tail = order[m:]
        expected += -s[order[m]] + math.log(sum(math.exp(s[j]) for j in tail))
    got = relative_contrastive_loss(anchor, cands, dist, tau)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    assert RelativeContrastiveLoss(tau)(anchor, cands, dist).item() == pytest.approx(expected, rel=1e-5)


def test_matches_the_set_definition_with_ties_and_random_input():
    g = torch.Generator().manual_seed(0)
    za, zc = torch.randn(5, 8, generator=g), torch.randn(5, 9, 8, generator=g)
    d = torch.randint(0, 4, (5, 9), generator=g).float()  # many ties
    got = relative_contrastive_loss(za, zc, d, 0.2)
    assert got.item() == pytest.approx(_by_definition(za, zc, d, 0.2), rel=1e-5)
    d2 = torch.rand(5, 9, generator=g)  # no ties
    assert relative_contrastive_loss(za, zc, d2, 0.5).item() == pytest.approx(_by_definition(za, zc, d2, 0.5),
                                                                                rel=1e-5)


def test_only_the_ranking_of_distances_matters():
    g = torch.Generator().manual_seed(1)
    za, zc, d = torch.randn(3, 4, generator=g), torch.randn(3, 6, 4, generator=g), torch.rand(3, 6, generator=g)
    a = relative_contrastive_loss(za, zc, d)
    torch.testing.assert_close(a, relative_contrastive_loss(za, zc, 5 * torch.exp(3 * d) + 1))  # monotone map
    assert not torch.allclose(a, relative_contrastive_loss(za, zc, -d))  # reversed ranking: another loss


def test_lower_when_anchor_is_nearer_its_closest_ranked_candidate():
    zc = torch.eye(4)[None]  # four orthogonal candidates
    dist = torch.tensor([[0.1, 0.5, 0.7, 0.9]])  # candidate 0 is the nearest
    far = relative_contrastive_loss(torch.tensor([[0.0, 0.0, 0.0, 1.0]]), zc, dist)
    mid = relative_contrastive_loss(torch.tensor([[0.5, 0.5, 0.5, 0.5]]), zc, dist)
    near = relative_contrastive_loss(torch.tensor([[1.0, 0.1, 0.0, 0.0]]), zc, dist)
    assert near < mid < far


def test_embedding_that_follows_the_ranking_beats_one_that_inverts_it():
    # candidate m at angle m * 0.4 from the x axis; the anchor on the x axis
    zc = torch.tensor([[[math.cos(0.4 * m), math.sin(0.4 * m)] for m in range(6)]])
    za = torch.tensor([[1.0, 0.0]])
    follows = relative_contrastive_loss(za, zc, torch.arange(6.0)[None])
    inverts = relative_contrastive_loss(za, zc, -torch.arange(6.0)[None])
    assert follows < inverts


def test_mean_over_anchors_sum_over_positives_and_finite_gradient():
    g = torch.Generator().manual_seed(2)
    za = torch.randn(4, 8, generator=g, requires_grad=True)
    zc = torch.randn(4, 7, 8, generator=g, requires_grad=True)
    d = torch.rand(4, 7, generator=g)
    per = relative_contrastive_loss(za, zc, d, reduction="none")
    assert per.shape == (4,)
    loss = relative_contrastive_loss(za, zc, d)
    torch.testing.assert_close(loss, per.mean())
    loss.backward()
    assert torch.isfinite(za.grad).all() and torch.isfinite(zc.grad).all()
    assert za.grad.abs().sum() > 0


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="shapes"):
        relative_contrastive_loss(torch.zeros(2, 3), torch.zeros(2, 4, 3), torch.zeros(2, 5))
