"""A stage's windows and their subject split; training-time augmentation."""

from __future__ import annotations

import numpy as np
import pytest

from zerohar.data.augment import augment
from zerohar.data.splits import split_subjects
from zerohar.errors import ZeroharError


def test_split_subjects_is_disjoint_and_seeded():
    subs = [f"s{i}" for i in range(10)]
    tr, va, te = split_subjects(subs * 3, 0.2, 0.3, seed=0)
    assert (len(tr), len(va), len(te)) == (5, 2, 3)
    assert not (set(tr) & set(va)) and not (set(tr) & set(te)) and not (set(va) & set(te))
    assert set(tr) | set(va) | set(te) == set(subs)
    assert split_subjects(subs, 0.2, 0.3, seed=0) == (tr, va, te)
    assert split_subjects(subs, 0.2, 0.3, seed=1) != (tr, va, te)
    assert split_subjects(subs, 0.0, 0.0, seed=0) == (sorted(subs), [], [])
    with pytest.raises(ZeroharError, match=r"2 subject\(s\) cannot be split into training, validation"):
        split_subjects(["a", "b"], 0.5, 0.5, seed=0)


def test_augment_keeps_shape_and_norm_up_to_scale():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 6, 150)).astype(np.float32)
    y = augment(x, np.random.default_rng(1), max_deg=10.0, scale=0.0)
    assert y.shape == x.shape and y.dtype == np.float32
    # a rotation keeps the norm of every triad's 3-vector at every sample
    nx = np.linalg.norm(x.reshape(4, 2, 3, 150), axis=2)
    ny = np.linalg.norm(y.reshape(4, 2, 3, 150), axis=2)
    np.testing.assert_allclose(nx, ny, rtol=1e-4)
    assert not np.allclose(x, y)
