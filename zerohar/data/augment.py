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



def broad_augment(x: np.ndarray, rng: np.random.Generator, max_deg: float, intensity: float, tempo: float
                  ) -> np.ndarray:
    """Windows `(B, C, T)` moved far from where they were recorded, for distillation (not for training on labels).

    A student learns its teacher's function only on the inputs it is shown, and a fold's unseen activities are
    by construction absent from its training windows (a lying posture when nobody lay, a jump when nobody
    jumped). So each window, with the same transform for all its sensors, is:

    - played at another tempo: resampled by a factor log-uniform in `[1 / tempo, tempo]` about its centre
      (linear interpolation; what runs past an end is mirrored back into the window);
    - made more or less intense: each triad's deviation from its own mean (gravity stays) scaled by a factor
      log-uniform in `[1 / intensity, intensity]`;
    - rotated about a uniformly random axis by an angle uniform in `[0, max_deg]` (180: any orientation).

    `tempo` or `intensity` of 1 and `max_deg` of 0 leave that part out.
    """
    b, c, t = x.shape
    tri = np.asarray(x, dtype=np.float32).reshape(b, c // 3, 3, t)  # (B, S, 3, T)
    if tempo > 1:
        f = np.exp(rng.uniform(-np.log(tempo), np.log(tempo), size=(b, 1)))
        mid = (t - 1) / 2
        pos = mid + f * (np.arange(t)[None, :] - mid)  # (B, T) source positions
        last = t - 1
        pos = last - np.abs(last - np.abs(pos))  # mirror what runs past either end (one reflection: tempo < 3)
        pos = np.clip(pos, 0, last)
        i0 = np.floor(pos).astype(np.int64)
        i1 = np.minimum(i0 + 1, last)
        w = (pos - i0).astype(np.float32)[:, None, None, :]
        g0 = np.take_along_axis(tri, i0[:, None, None, :].repeat(tri.shape[1], 1).repeat(3, 2), axis=3)
        g1 = np.take_along_axis(tri, i1[:, None, None, :].repeat(tri.shape[1], 1).repeat(3, 2), axis=3)
        tri = g0 * (1 - w) + g1 * w
    if intensity > 1:
        g = np.exp(rng.uniform(-np.log(intensity), np.log(intensity), size=(b, 1, 1, 1))).astype(np.float32)
        mean = tri.mean(axis=3, keepdims=True)
        tri = mean + g * (tri - mean)
    if max_deg > 0:
        r = random_rotations(b, max_deg, rng).astype(np.float32)  # (B, 3, 3)
        tri = np.einsum("bij,bsjt->bsit", r, tri)
    return np.ascontiguousarray(tri.reshape(b, c, t), dtype=np.float32)
