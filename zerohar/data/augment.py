"""Training-time augmentation of windows: random rotations and amplitude scaling of each triad (:func:`augment`),
and tempo and intensity changes for distillation (:func:`broad_augment`)."""

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
    identity (Stage I must still tell x from y from z). Distillation turns windows every way (`max_deg` 180,
    :mod:`zerohar.train.distill`): there the axes' identity is the teacher's to keep, not the data's.
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



def broad_augment(x: np.ndarray, rng: np.random.Generator, intensity: float, tempo: float, mix: float = 0.0,
                  groups: np.ndarray | None = None) -> np.ndarray:
    """Windows `(B, C, T)` played at another tempo and intensity, for distillation (not for training on labels).

    A student learns its teacher's function only on the inputs it is shown, and a fold's unseen activities are
    by construction absent from its training windows (a jump when nobody jumped). So each window, with the same
    transform for all its sensors, is:

    - played at another tempo: resampled by a factor log-uniform in `[1 / tempo, tempo]` about its centre
      (linear interpolation; what runs past an end is mirrored back into the window);
    - made more or less intense: each triad's deviation from its own mean (gravity stays) scaled by a factor
      log-uniform in `[1 / intensity, intensity]`.

    - mixed (`mix`, the share of windows): `lam * x_i + (1 - lam) * x_j` with another window `j` of `x` (of the
      same group, when `groups` `(B,)` is given: windows of one sensor layout) and `lam` uniform in [0, 1], the
      mixup of function-matching distillation (Beyer et al., CVPR 2022): inputs between the movements the
      windows hold.

    A `tempo` or `intensity` of 1, or a `mix` of 0, leaves that part out (and draws nothing). Rotation and
    amplitude scale are :func:`augment`'s.
    """
    b, c, t = x.shape
    tri = np.asarray(x, dtype=np.float32).reshape(b, c // 3, 3, t)  # (B, S, 3, T)
    if mix > 0 and b > 1:
        who = np.flatnonzero(rng.random(b) < mix)
        g = np.zeros(b, np.int64) if groups is None else np.asarray(groups)
        partner = who.copy()
        for v in np.unique(g[who]):
            pool = np.flatnonzero(g == v)
            sel = who[g[who] == v]
            partner[g[who] == v] = pool[rng.integers(0, len(pool), size=len(sel))]
        lam = rng.uniform(0.0, 1.0, size=(len(who), 1, 1, 1)).astype(np.float32)
        tri = tri.copy()
        tri[who] = lam * tri[who] + (1 - lam) * tri[partner]
    if tempo > 1:
        f = np.exp(rng.uniform(-np.log(tempo), np.log(tempo), size=(b, 1)))
        last = t - 1
        pos = last / 2 + f * (np.arange(t)[None, :] - last / 2)  # (B, T) source positions
        pos = np.clip(last - np.abs(last - np.abs(pos)), 0, last)  # mirrored past either end (tempo < 3)
        i0 = np.floor(pos).astype(np.int64)
        w = (pos - i0).astype(np.float32)[:, None, None, :]
        g0 = np.take_along_axis(tri, i0[:, None, None, :], axis=3)
        g1 = np.take_along_axis(tri, np.minimum(i0 + 1, last)[:, None, None, :], axis=3)
        tri = g0 * (1 - w) + g1 * w
    if intensity > 1:
        g = np.exp(rng.uniform(-np.log(intensity), np.log(intensity), size=(b, 1, 1, 1))).astype(np.float32)
        mean = tri.mean(axis=3, keepdims=True)
        tri = mean + g * (tri - mean)
    return np.ascontiguousarray(tri.reshape(b, c, t), dtype=np.float32)
