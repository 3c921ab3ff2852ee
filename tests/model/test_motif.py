"""The motif distance network (RELCON.md 1): shapes, batched == per pair, attention choice, a short training run,
files; and the eight augmentations it is trained with (1.4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zerohar.data.relcon_augment import TRANSFORMS, relcon_augment, rotation_matrix
from zerohar.errors import ZeroharError
from zerohar.losses.sparsemax import TOP_K, sparsemax
from zerohar.model.motif import MotifConfig, MotifDistance, PartialConv1d, load_motif_distance, save_motif_distance

T = 150


def synthetic(n: int, seed: int) -> np.ndarray:
    """`(n, 3, T)` windows: per channel a sinusoid of a random frequency, phase and amplitude, plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(T) / 30.0
    f = rng.uniform(0.3, 4.0, size=(n, 3, 1))
    ph = rng.uniform(0, 2 * np.pi, size=(n, 3, 1))
    amp = rng.uniform(0.3, 1.5, size=(n, 3, 1))
    x = amp * np.sin(2 * np.pi * f * t + ph) + rng.normal(0, 0.05, size=(n, 3, T)) + rng.normal(0, 0.3, (n, 3, 1))
    return x.astype(np.float32)


def test_shapes_and_distance_is_a_sum_of_squares():
    torch.manual_seed(0)
    net = MotifDistance().eval()
    x, c = torch.randn(4, 3, T), torch.randn(4, 3, T)
    rec = net(x, c)
    assert rec.shape == (4, 3, T)
    torch.testing.assert_close(net.pair_distance(x, c), ((rec - x) ** 2).sum(dim=(1, 2)))
    assert net.distance_matrix(x, torch.randn(6, 3, T)).shape == (4, 6)
    assert net.distance_matrix(x, c, torch.tensor([[0, 1, 1], [2, 3, 0], [0, 0, 0], [3, 2, 1]])).shape == (4, 3)
    assert 55_000 < sum(p.numel() for p in net.parameters()) < 62_000  # RELCON.md: about 58.6 k


def test_batched_distances_equal_per_pair_computation():
    torch.manual_seed(1)
    net = MotifDistance().eval()
    anchors, cands = torch.randn(5, 3, T), torch.randn(7, 3, T) * 2 + 1
    index = torch.randint(0, 7, (5, 4), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        batched = net.distance_matrix(anchors, cands, index, chunk=3)  # chunks that split anchors' rows
        loop = torch.tensor([[float(net.pair_distance(anchors[i : i + 1], cands[j : j + 1]))
                              for j in index[i].tolist()] for i in range(5)])
    torch.testing.assert_close(batched, loop, rtol=1e-4, atol=1e-3)


def test_normalised_by_the_candidate_and_measured_in_the_anchor_units():
    torch.manual_seed(2)
    net = MotifDistance().eval()
    x, c = torch.randn(3, 3, T), torch.randn(3, 3, T)
    with torch.no_grad():
        d = net.pair_distance(x, c)
        # shifting and scaling both windows together by the same per-channel affine: the normalised inputs
        # are unchanged, so the error scales with the square of the scale
        d2 = net.pair_distance(4 * x + 3, 4 * c + 3)
    torch.testing.assert_close(d2, 16 * d, rtol=1e-3, atol=1e-2)


def test_attention_choice_sparsemax_everywhere_or_softmax_for_distances():
    torch.manual_seed(3)
    sp = MotifDistance(MotifConfig(attention="sparsemax", dropout=0.0))
    rel = MotifDistance(MotifConfig(attention="released", dropout=0.0))
    rel.load_state_dict(sp.state_dict())
    x, c = torch.randn(2, 3, T), torch.randn(2, 3, T)
    with torch.no_grad():
        torch.testing.assert_close(sp(x, c), rel(x, c))  # training mode: both sparsemax
        sp.eval(), rel.eval()
        assert not torch.allclose(sp(x, c), rel(x, c), atol=1e-4)  # distances: sparsemax vs softmax
    with pytest.raises(ZeroharError, match="attention"):
        MotifConfig(attention="softmax")


def test_partial_conv_compensates_zero_padding_at_the_edges():
    conv = PartialConv1d(1, 1, 15)
    with torch.no_grad():
        conv.weight.fill_(0.1), conv.bias.fill_(0.5)
        y = conv(torch.ones(1, 1, 40))
    torch.testing.assert_close(y, torch.full_like(y, 15 * 0.1 + 0.5))  # a plain same-padded conv dips at the edges


def _pairwise_win_rate(net: MotifDistance, test: torch.Tensor, cands: torch.Tensor) -> float:
    """How often window i is nearer its own candidate i than another window's candidate j (all pairs j != i)."""
    net.eval()
    with torch.no_grad():
        d = net.distance_matrix(test, cands)  # (n, n): window i against candidate j
    net.train()
    off = ~torch.eye(len(test), dtype=torch.bool)
    return float((d.diagonal()[:, None] < d)[off].float().mean())


def test_training_ranks_a_near_copy_nearer_than_an_unrelated_window():
    torch.manual_seed(4)
    net = MotifDistance(MotifConfig(dropout=0.0))
    test = torch.from_numpy(synthetic(24, seed=1))
    near = test + 0.05 * torch.randn_like(test)
    before = _pairwise_win_rate(net, test, near)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    train = synthetic(64, seed=0)
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(25):
        x = train[rng.choice(64, 16, replace=False)]
        xa = torch.from_numpy(relcon_augment(x, rng))
        x = torch.from_numpy(x)
        loss = ((net(x, xa) - x) ** 2).sum(dim=(1, 2)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    after_near, after_self = _pairwise_win_rate(net, test, near), _pairwise_win_rate(net, test, test)
    assert after_near >= 0.95 and after_self >= 0.95
    assert after_near > before + 0.05  # the training did it, not the architecture alone


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(5)
    net = MotifDistance(MotifConfig(embed_dim=32, kernel_size=7, attention="released")).eval()
    save_motif_distance(net, tmp_path, {"stage": "pretrain", "subjects": {"train": ["a"]}})
    back, extra = load_motif_distance(tmp_path)
    assert back.cfg == net.cfg and extra["subjects"] == {"train": ["a"]} and not back.training
    assert not any(p.requires_grad for p in back.parameters())
    x, c = torch.randn(2, 3, T), torch.randn(2, 3, T)
    with torch.no_grad():
        torch.testing.assert_close(back.pair_distance(x, c), net.pair_distance(x, c))
    (tmp_path / "model.json").write_text('{"format": "zerohar-harnet-backbone"}')
    with pytest.raises(ZeroharError, match="not a motif distance network"):
        load_motif_distance(tmp_path)
    with pytest.raises(ZeroharError, match="lacks model.json"):
        load_motif_distance(tmp_path / "nowhere")


# ---------------------------------------------------------------------------------------------- augmentations
def test_augment_shapes_dtype_determinism():
    x = synthetic(6, seed=2)
    a = relcon_augment(x, np.random.default_rng(7))
    assert a.shape == x.shape and a.dtype == np.float32
    np.testing.assert_array_equal(a, relcon_augment(x, np.random.default_rng(7)))
    assert not np.allclose(a, relcon_augment(x, np.random.default_rng(8)))
    np.testing.assert_array_equal(x, synthetic(6, seed=2))  # input untouched
    with pytest.raises(ValueError, match=r"\(N, 3, T\)"):
        relcon_augment(x[:, :2], np.random.default_rng(0))


def test_each_transform_does_what_it_says():
    rng = np.random.default_rng(3)
    x = synthetic(1, seed=3)[0].astype(np.float64)
    assert len(TRANSFORMS) == 8
    np.testing.assert_allclose(TRANSFORMS["negate"](x, rng), -x)
    np.testing.assert_allclose(TRANSFORMS["reverse"](x, rng), x[:, ::-1])
    r = TRANSFORMS["rotate"](x, rng)
    np.testing.assert_allclose(np.linalg.norm(r, axis=0), np.linalg.norm(x, axis=0), rtol=1e-9)  # norms kept
    assert not np.allclose(r, x)
    rm = rotation_matrix(np.array([0.0, 0.0, 1.0]), np.pi / 2)
    np.testing.assert_allclose(rm @ np.array([1.0, 0.0, 0.0]), [0.0, 1.0, 0.0], atol=1e-12)
    for _ in range(10):
        p = TRANSFORMS["permute_channels"](x, rng)
        assert sorted(map(tuple, p.round(9))) == sorted(map(tuple, x.round(9))) and not np.array_equal(p, x)
        s = TRANSFORMS["permute_segments"](x, rng)  # the same time samples (columns), reordered
        assert sorted(map(tuple, s.T.round(9))) == sorted(map(tuple, x.T.round(9)))
        w = TRANSFORMS["time_warp"](x, rng)
        np.testing.assert_allclose(w[:, [0, -1]], x[:, [0, -1]], atol=1e-9)  # endpoints stay
        assert np.all(w.max(1) <= x.max(1) + 1e-9) and np.all(w.min(1) >= x.min(1) - 1e-9)  # interpolation
    sc = TRANSFORMS["scale"](x, rng)
    ratio = sc / x
    np.testing.assert_allclose(ratio, ratio[:, :1] * np.ones_like(ratio), rtol=1e-6)  # one factor per channel
    noisy = np.stack([TRANSFORMS["noise"](x, rng) - x for _ in range(200)])
    assert abs(noisy.std() - 0.1) < 0.005
    assert np.array_equal(x, synthetic(1, seed=3)[0].astype(np.float64)) is not False  # x unchanged


# ---------------------------------------------------------------------------------------------- batched shortcuts
@pytest.mark.parametrize("attention", ["sparsemax", "released"])
def test_shared_distances_equal_the_plain_per_pair_batching(attention):
    """`distance_matrix` shares candidate encodings, folds the output layer into the values and computes the
    anchors' first convolution once; the plain path reconstructs every pair. Offsets far from zero (gravity)
    and chunks smaller than a row (an anchor's row split) or than two rows included."""
    torch.manual_seed(6)
    net = MotifDistance(MotifConfig(attention=attention)).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))  # non-trivial gamma, beta and biases
    anchors = torch.randn(5, 3, T) * 0.05 + torch.tensor([0.0, 0.0, 1.0])[:, None]  # a quiet window near 1 g
    cands = torch.cat([anchors, torch.randn(9, 3, T) * 2 - 1])
    index = torch.randint(0, 14, (5, 6), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = net._distances_per_pair(anchors, cands, index, chunk=1024)
        for chunk in (4, 7, 1024):
            torch.testing.assert_close(net.distance_matrix(anchors, cands, index, chunk=chunk), want,
                                       rtol=1e-5, atol=1e-4)


def test_dropout_in_training_keeps_the_per_pair_path():
    torch.manual_seed(7)
    net = MotifDistance(MotifConfig(dropout=0.5)).train()
    x, c = torch.randn(3, 3, T), torch.randn(4, 3, T)
    d = net.distance_matrix(x, c)
    assert d.shape == (3, 4) and d.requires_grad  # gradients flow outside no_grad
    net.eval()
    with torch.inference_mode():
        plain = net._distances_per_pair(x, c, torch.arange(4).expand(3, -1), 2)
        torch.testing.assert_close(net.distance_matrix(x, c), plain, rtol=1e-5, atol=1e-4)


def test_sparsemax_top_k_equals_a_full_sort():
    def full_sort(z):
        zs, _ = torch.sort(z, dim=-1, descending=True)
        k = torch.arange(1, z.shape[-1] + 1, dtype=z.dtype)
        cums = zs.cumsum(-1)
        k_z = ((1 + k * zs) > cums).sum(-1, keepdim=True)
        return (z - (cums.gather(-1, k_z - 1) - 1) / k_z.to(z.dtype)).clamp(min=0)

    g = torch.Generator().manual_seed(8)
    z = torch.randn(6, 40, 150, generator=g) * torch.tensor([0.001, 0.01, 0.3, 1.0, 3.0, 30.0])[:, None, None]
    p = sparsemax(z)
    support = (p > 0).sum(-1)
    assert support.max() > TOP_K and support.min() < TOP_K  # both the partial sort and the fallback are used
    torch.testing.assert_close(p, full_sort(z), rtol=0, atol=1e-6)
    torch.testing.assert_close(sparsemax(z[..., :10]), full_sort(z[..., :10]), rtol=0, atol=1e-6)  # short rows
