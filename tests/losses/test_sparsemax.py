"""Sparsemax: a projection onto the simplex, sparse, the argmax one-hot in the limit, exact gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zerohar.losses.sparsemax import sparsemax


def _project_simplex(z: np.ndarray) -> np.ndarray:
    """Reference: Euclidean projection onto the simplex by bisection on the threshold (no sorting)."""
    lo, hi = z.min() - 1.0, z.max()
    for _ in range(200):
        tau = (lo + hi) / 2
        if np.maximum(z - tau, 0).sum() > 1:
            lo = tau
        else:
            hi = tau
    return np.maximum(z - (lo + hi) / 2, 0)


def test_hand_computed_values():
    # sorted 1.0, 0.8, 0.1: k = 2 (1 + 2*0.8 > 1.8, 1 + 3*0.1 < 1.9), tau = (1.8 - 1) / 2 = 0.4
    p = sparsemax(torch.tensor([0.1, 1.0, 0.8]))
    torch.testing.assert_close(p, torch.tensor([0.0, 0.6, 0.4]))
    # a uniform vector stays uniform (support everything)
    torch.testing.assert_close(sparsemax(torch.zeros(4)), torch.full((4,), 0.25))


def test_sums_to_one_nonnegative_along_dim_and_matches_projection():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(5, 7, 3, generator=g, dtype=torch.float64) * 2
    p = sparsemax(z, dim=1)
    assert p.shape == z.shape
    torch.testing.assert_close(p.sum(1), torch.ones(5, 3, dtype=torch.float64))
    assert (p >= 0).all()
    for i in range(5):
        for j in range(3):
            np.testing.assert_allclose(p[i, :, j].numpy(), _project_simplex(z[i, :, j].numpy()), atol=1e-9)


def test_is_sparse_where_softmax_is_not():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(64, 150, generator=g) * 3
    p = sparsemax(z)
    assert (p == 0).float().mean() > 0.5  # most of the mass is exactly zero
    assert (torch.softmax(z, -1) > 0).all()
    assert ((p > 0).sum(-1) >= 1).all()


@pytest.mark.parametrize("temperature", [1e-2, 1e-4])
def test_low_temperature_limit_is_argmax_one_hot(temperature):
    g = torch.Generator().manual_seed(2)
    z = torch.randn(20, 10, generator=g)
    p = sparsemax(z / temperature)
    torch.testing.assert_close(p, torch.nn.functional.one_hot(z.argmax(-1), 10).float())


def test_widely_separated_inputs_give_one_hot():
    p = sparsemax(torch.tensor([[-5.0, 10.0, 3.0], [0.0, -2.0, 1.5]]))
    torch.testing.assert_close(p, torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))


def test_shift_invariant():
    z = torch.tensor([0.3, -0.2, 0.9, 0.5])
    torch.testing.assert_close(sparsemax(z), sparsemax(z + 7.0))


@pytest.mark.parametrize("dim", [-1, 0])
def test_gradcheck_float64(dim):
    g = torch.Generator().manual_seed(3)
    z = (torch.randn(6, 5, generator=g, dtype=torch.float64) * 0.7).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: sparsemax(t, dim=dim), (z,), eps=1e-6, atol=1e-5)


def test_gradient_is_zero_off_support_and_sums_to_zero_on_it():
    z = torch.tensor([0.1, 1.0, 0.8, -3.0], requires_grad=True)
    w = torch.tensor([1.0, 2.0, -1.0, 5.0])
    (sparsemax(z) * w).sum().backward()
    # support {1, 2}: grad = w - mean(w on support) there, 0 elsewhere
    torch.testing.assert_close(z.grad, torch.tensor([0.0, 1.5, -1.5, 0.0]))


def test_bf16_input_keeps_its_dtype():
    z = torch.randn(4, 30).to(torch.bfloat16)
    p = sparsemax(z)
    assert p.dtype == torch.bfloat16
    torch.testing.assert_close(p.float().sum(-1), torch.ones(4), atol=2e-2, rtol=0)
