"""The checked student: the distilled backbone first, the run's own backbone again where the student could be wrong.

`zerohar classify --cascade` (and `scripts/less_work.py --options cascade`). The distilled backbone (`zerohar
distill`) is about a third of the work per window but changes some labels (README, Speed: 95-99% of the run's own
labels kept). Most windows are far from a decision boundary, where a small error in the student's embedding
cannot change the label; a few are close. This module finds the close ones and runs the teacher (the run's own
backbone) on them only, so that the labels are the teacher's wherever the student's error could have mattered.

**The rule.** With `s` the student's window embedding and `t` the teacher's (both L2-normalised), and `p_i` the
candidate labels' prototypes (L2-normalised), a window's score of label `i` is `s . p_i`; the student's top label
`a` stays the teacher's top label over `j` iff `(s . p_a - s . p_j) + d . (p_a - p_j) > 0`, with `d = t - s`.
The error's projection `d . (p_a - p_j)` is unknown for a window the teacher does not see, so it is bounded by
what it was on **calibration windows**: both backbones run on
:data:`~zerohar.inference.embed.CALIBRATION_WINDOWS` windows spread over
the first windows of the input (the recording's own, no labels; :func:`calibrate`), and `tau[a, j]` is the
:data:`QUANTILE` quantile of `|d . (p_a - p_j)|` over them. A window is *unsure* (:meth:`CascadeCheck.unsure`)
when some candidate `j` has `s . p_a - s . p_j < tau[a, j]`, or, where `classify` names windows `unknown` below a
score threshold, when its top score lies within the quantile of `|d . p_a|` of the threshold. Unsure windows are
embedded again with the teacher; the others keep the student's embedding.

Why this way: the bound is per pair of the user's own candidates and measured on the user's own recording, so
nothing in it was fitted to a benchmark dataset; the single setting is the quantile (0.99, chosen before any
measurement: one window in a hundred may err more than the bound assumes). The cost is the student on every
window plus the teacher on the unsure share, which depends on the labels and the data: `classify` reports it
(`info.json` and the log). Directions rather than a norm: the error `d` lives in a 256-dimensional space and a
norm bound (`|d| |p_a - p_j|`) flags far more windows than the error's projections on the few directions that
separate the candidates need.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from zerohar.errors import ZeroharError

#: The quantile of the calibration windows' error projections that a student margin must exceed.
QUANTILE = 0.99


@dataclass
class CascadeCheck:
    """The student's error bounds for one set of candidate labels (:func:`calibrate`).

    Attributes:
        tau_pair: `(L, L)`: `tau_pair[a, j]` bounds `|d . (p_a - p_j)|` (the change of the margin of `a` over
            `j` from the student's embedding to the teacher's); zero on the diagonal.
        tau_label: `(L,)`: bounds `|d . p_a|` (the change of label `a`'s score), for a score threshold.
        quantile: the quantile that made them.
        windows: calibration windows used.
    """

    tau_pair: np.ndarray
    tau_label: np.ndarray
    quantile: float
    windows: int

    def unsure(self, scores: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """`(N,)` bool: the windows whose top label (or `unknown` decision) the teacher could change.

        Args:
            scores: `(N, L)` the student's scores of every candidate, in the order of the calibration's prototypes.
            threshold: the score below which the top label is named `unknown`, or None.
        """
        scores = np.asarray(scores, dtype=np.float32)
        if scores.ndim != 2 or scores.shape[1] != len(self.tau_label):
            raise ZeroharError(f"scores of shape {scores.shape}; expected (N, {len(self.tau_label)})")
        if not len(scores):
            return np.zeros(0, dtype=bool)
        rows = np.arange(len(scores))
        top = scores.argmax(1)  # (N,)
        margin = scores[rows, top][:, None] - scores  # (N, L), zero at the top label itself
        close = margin < self.tau_pair[top]  # (N, L)
        close[rows, top] = False
        out = close.any(1)
        if threshold is not None:
            out |= np.abs(scores[rows, top] - threshold) < self.tau_label[top]
        return out


def calibrate(student: np.ndarray, teacher: np.ndarray, prototypes: np.ndarray,
              quantile: float = QUANTILE) -> CascadeCheck:
    """The error bounds of a student on calibration windows (see the module docstring).

    Args:
        student / teacher: `(M, E)` the two backbones' window embeddings of the same M windows (L2-normalised).
        prototypes: `(L, E)` the candidates' prototypes (L2-normalised), in the order scores will come in.
        quantile: in (0, 1].
    """
    student, teacher = np.asarray(student, np.float32), np.asarray(teacher, np.float32)
    P = np.asarray(prototypes, np.float32)
    if student.shape != teacher.shape or student.ndim != 2 or not len(student):
        raise ZeroharError(f"calibration embeddings of shapes {student.shape} and {teacher.shape}; expected two "
                           "equal (M, E) arrays with M >= 1")
    if not 0 < quantile <= 1:
        raise ZeroharError(f"the cascade quantile must be in (0, 1], found {quantile:g}")
    proj = (teacher - student) @ P.T  # (M, L): d . p_i
    L = P.shape[0]
    tau_pair = np.zeros((L, L), np.float32)
    for a in range(L):  # one row at a time: (M, L) in memory, not (M, L, L)
        tau_pair[a] = np.quantile(np.abs(proj[:, [a]] - proj), quantile, axis=0)
    np.fill_diagonal(tau_pair, 0.0)
    tau_label = np.quantile(np.abs(proj), quantile, axis=0).astype(np.float32)
    return CascadeCheck(tau_pair, tau_label, float(quantile), len(student))
