"""The eight augmentations RelCon trains its motif distance with (`reference/RELCON.md` 1.4).

They follow Tang et al. 2020 (arXiv 2011.11542) and are written here from their description. Each function
takes one window `(3, T)` (channels first, as zerohar stores windows) and a `numpy.random.Generator`, and
returns a new float32 array of the same shape. :func:`relcon_augment` applies two distinct transforms, drawn
uniformly without replacement and applied in the drawn order, to every window of a batch `(N, 3, T)`.

1. ``noise``: additive Gaussian noise, sigma 0.1.
2. ``scale``: each channel multiplied by a factor ~ N(1, 0.25^2).
3. ``rotate``: a random 3-D rotation (axis ~ U[-1, 1]^3 normalised, angle ~ U(-pi, pi)); RelCon writes it for
   time-first windows as ``X R``, which for channels-first windows is ``R^T x``.
4. ``negate``: ``x -> -x``.
5. ``reverse``: time reversal.
6. ``permute_channels``: a random permutation of the 3 channels other than the identity.
7. ``permute_segments``: 5 cut points drawn with replacement and sorted; the (at most 6) pieces are shuffled
   and concatenated.
8. ``time_warp``: for each channel independently, a cubic spline through 6 equally spaced knots with values
   ~ N(1, 0.2^2) gives a speed curve; its cumulative sum rescaled to [0, T-1] gives the warped time of each
   sample, and the signal is linearly re-interpolated onto the regular grid. (The speed is floored at 1e-3
   so the warped times always increase, which the re-interpolation needs; a spline below zero is rare.)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def noise(x: np.ndarray, rng: np.random.Generator, sigma: float = 0.1) -> np.ndarray:
    return x + rng.normal(0.0, sigma, size=x.shape)


def scale(x: np.ndarray, rng: np.random.Generator, sigma: float = 0.25) -> np.ndarray:
    return x * rng.normal(1.0, sigma, size=(x.shape[0], 1))


def rotation_matrix(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues' formula: the rotation by `angle` about the unit vector `axis`, `(3, 3)`."""
    kx, ky, kz = axis
    k = np.array([[0.0, -kz, ky], [kz, 0.0, -kx], [-ky, kx, 0.0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def rotate(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    axis = rng.uniform(-1.0, 1.0, size=3)
    axis = axis / max(np.linalg.norm(axis), 1e-12)
    r = rotation_matrix(axis, rng.uniform(-np.pi, np.pi))
    return r.T @ x  # (X^T R)^T = R^T X


def negate(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return -x


def reverse(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return x[:, ::-1]


def permute_channels(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    c = x.shape[0]
    order = np.arange(c)
    while np.array_equal(order, np.arange(c)):
        order = rng.permutation(c)
    return x[order]


def permute_segments(x: np.ndarray, rng: np.random.Generator, n_cuts: int = 5) -> np.ndarray:
    t = x.shape[1]
    cuts = np.unique(rng.integers(1, t, size=n_cuts))  # with replacement: duplicates merge pieces
    pieces = np.split(x, cuts, axis=1)
    order = rng.permutation(len(pieces))
    return np.concatenate([pieces[i] for i in order], axis=1)


def time_warp(x: np.ndarray, rng: np.random.Generator, knots: int = 6, sigma: float = 0.2) -> np.ndarray:
    from scipy.interpolate import CubicSpline

    c, t = x.shape
    grid = np.arange(t, dtype=np.float64)
    knot_t = np.linspace(0, t - 1, knots)
    out = np.empty_like(x, dtype=np.float64)
    for ch in range(c):
        speed = np.maximum(CubicSpline(knot_t, rng.normal(1.0, sigma, size=knots))(grid), 1e-3)
        warped = np.cumsum(speed)
        warped = (warped - warped[0]) / (warped[-1] - warped[0]) * (t - 1)  # in [0, T-1], increasing
        out[ch] = np.interp(grid, warped, x[ch])
    return out


#: The 8 transforms in RELCON.md's order.
TRANSFORMS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "noise": noise, "scale": scale, "rotate": rotate, "negate": negate, "reverse": reverse,
    "permute_channels": permute_channels, "permute_segments": permute_segments, "time_warp": time_warp,
}


def relcon_augment(x: np.ndarray, rng: np.random.Generator, n: int = 2) -> np.ndarray:
    """Each window of `x` `(N, 3, T)` with `n` distinct transforms (uniform, without replacement, drawn order).

    Returns:
        `(N, 3, T)` float32; `x` is not modified. The draws depend only on `rng` (seed it for determinism).
    """
    if x.ndim != 3 or x.shape[1] != 3:
        raise ValueError(f"relcon_augment takes (N, 3, T) windows, found shape {x.shape}")
    names = list(TRANSFORMS)
    out = np.empty(x.shape, dtype=np.float32)
    for i in range(len(x)):
        w = np.asarray(x[i], dtype=np.float64)
        for j in rng.choice(len(names), size=n, replace=False):
            w = TRANSFORMS[names[j]](w, rng)
        out[i] = w
    return out
