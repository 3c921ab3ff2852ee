"""Training-time augmentation of windows: small random rotations and amplitude scaling of each triad."""

from __future__ import annotations

import numpy as np


def random_rotations(n: int, max_deg: float, rng: np.random.Generator) -> np.ndarray:
    """`n` rotation matrices `(n, 3, 3)` about uniformly random axes by angles uniform in [0, max_deg]."""
    axis = rng.normal(size=(n, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True) + 1e-12
    ang = np.deg2rad(rng.uniform(0.0, max_deg, size=n))
    k = np.zeros((n, 3, 3))
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    k = k - k.transpose(0, 2, 1)
    s, c = np.sin(ang)[:, None, None], np.cos(ang)[:, None, None]
    return np.eye(3)[None] + s * k + (1 - c) * (k @ k)


def augment(x: np.ndarray, rng: np.random.Generator, max_deg: float, scale: float) -> np.ndarray:
    """Windows `(B, C, T)`: each triad rotated by a small random rotation and scaled by a random factor.

    The device sits a little differently on every subject; a small rotation (the same one for the sensors of
    a window, which are on one device or not) and amplitude scaling mimic that without changing the axes'
    identity (Stage I must still tell x from y from z).
    """
    b, c, t = x.shape
    s = c // 3
    tri = x.reshape(b, s, 3, t)  # (B, S, 3, T)
    if max_deg > 0:
        r = random_rotations(b, max_deg, rng).astype(np.float32)  # (B, 3, 3)
        tri = np.einsum("bij,bsjt->bsit", r, tri)
    if scale > 0:
        f = rng.uniform(1 - scale, 1 + scale, size=(b, 1, 1, 1)).astype(np.float32)
        tri = tri * f
    return np.ascontiguousarray(tri.reshape(b, c, t), dtype=np.float32)

