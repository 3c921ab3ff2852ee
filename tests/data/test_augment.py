"""The distillation augmentation (`broad_augment`, then `augment`'s rotation): each part does what it says, and
nothing when it is off."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import untrained_run

from zerohar.data.augment import augment, broad_augment
from zerohar.errors import ZeroharError
from zerohar.train.distill import distill_run


def _windows(b: int = 8, t: int = 150) -> np.ndarray:
    """Accelerometer with gravity on z and a 2 Hz movement, gyroscope with a 1 Hz turn: `(b, 6, t)` at 30 Hz."""
    s = np.arange(t) / 30.0
    one = np.stack([0.3 * np.sin(2 * np.pi * 2 * s), 0.2 * np.cos(2 * np.pi * 2 * s), 1 + 0.1 * np.sin(2 * np.pi * s),
                    np.sin(2 * np.pi * s), 0.5 * np.cos(2 * np.pi * s), 0.0 * s])
    return np.repeat(one[None], b, axis=0).astype(np.float32)


def _dominant_hz(v: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(v - v.mean()))
    return float(np.fft.rfftfreq(len(v), 1 / 30.0)[np.argmax(spec)])


def test_everything_off_returns_the_windows():
    x = _windows()
    assert np.array_equal(broad_augment(x, np.random.default_rng(0), 1.0, 1.0), x)


def test_rotation_keeps_every_samples_magnitude_and_turns_gravity_anywhere():
    x = _windows(b=400)
    y = augment(x, np.random.default_rng(1), 180.0, 0.0)
    for k in (0, 1):  # accelerometer and gyroscope triads: rotated, lengths kept
        np.testing.assert_allclose(np.linalg.norm(y[:, 3 * k:3 * k + 3], axis=1),
                                   np.linalg.norm(x[:, 3 * k:3 * k + 3], axis=1), rtol=1e-5, atol=1e-6)
    g = y[:, :3].mean(axis=2)  # each window's gravity direction
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    assert (g[:, 2] < -0.5).mean() > 0.1  # upside down in a good share of windows: any orientation
    assert not np.allclose(y, x)


def test_intensity_scales_the_movement_about_the_mean_and_keeps_gravity():
    x = _windows(b=200)
    y = broad_augment(x, np.random.default_rng(2), 2.0, 1.0)
    np.testing.assert_allclose(y.mean(axis=2), x.mean(axis=2), atol=1e-5)  # gravity (and every mean) kept
    ratio = y[:, 0].std(axis=1) / x[:, 0].std(axis=1)
    assert ratio.min() >= 0.5 - 1e-4 and ratio.max() <= 2.0 + 1e-4 and ratio.min() < 0.7 and ratio.max() > 1.5
    ratio_gyro = y[:, 3].std(axis=1) / x[:, 3].std(axis=1)
    np.testing.assert_allclose(ratio_gyro, ratio, rtol=1e-4)  # one factor for the window's sensors


def test_tempo_changes_the_movements_frequency_within_its_range():
    x = _windows(b=200, t=300)
    y = broad_augment(x, np.random.default_rng(3), 1.0, 1.5)
    hz = np.array([_dominant_hz(w[0]) for w in y])  # 2 Hz before
    assert hz.min() >= 2 / 1.5 - 0.15 and hz.max() <= 2 * 1.5 + 0.15 and hz.min() < 1.7 and hz.max() > 2.4
    assert np.isfinite(y).all() and np.abs(y).max() <= np.abs(x).max() + 1e-5  # interpolation, no overshoot


def test_mix_blends_a_share_of_windows_with_others_of_their_group():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(400, 6, 150)).astype(np.float32)
    x[200:] += 10.0  # a second group, far from the first
    groups = np.repeat([0, 1], 200)
    y = broad_augment(x, np.random.default_rng(5), 1.0, 1.0, 0.5, groups)
    changed = ~np.all(np.isclose(y, x), axis=(1, 2))
    assert 0.35 < changed.mean() < 0.6  # about half (a window drawn as its own partner stays)
    assert (y[:200] < 5).all() and (y[200:] > 5).mean() > 0.99  # mixed within its group only
    for i in np.flatnonzero(changed)[:20]:  # each a convex combination of itself and one other window
        pool = range(200) if i < 200 else range(200, 400)
        fits = []
        for j in pool:
            d = x[i] - x[j]
            lam = float((y[i] - x[j]).ravel() @ d.ravel() / max(float(d.ravel() @ d.ravel()), 1e-12))
            fits.append((np.abs(lam * x[i] + (1 - lam) * x[j] - y[i]).max(), lam))
        err, lam = min(fits)
        assert err < 1e-4 and -1e-6 <= lam <= 1 + 1e-6
    assert np.array_equal(broad_augment(x, np.random.default_rng(5), 1.0, 1.0, 0.0), x)


def test_the_same_seed_gives_the_same_copy():
    x = _windows()
    a = broad_augment(x, np.random.default_rng(7), 2.0, 1.5)
    b = broad_augment(x, np.random.default_rng(7), 2.0, 1.5)
    assert np.array_equal(a, b) and a.shape == x.shape and a.dtype == np.float32


@pytest.mark.parametrize("bad", [{"augment_deg": 200.0}, {"augment_scale": 1.0}, {"augment_intensity": 0.5},
                                 {"augment_tempo": 3.0}, {"augment_mix": 1.5}])
def test_distill_refuses_augmentation_out_of_range(tmp_path, bad):
    run = untrained_run(tmp_path / "run")
    with pytest.raises(ZeroharError, match="augmentation takes"):
        distill_run(run, max_steps=1, progress=False, **bad)
