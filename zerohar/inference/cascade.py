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

**Bounds that follow the recording** (:class:`CheckedStream`, what `classify` runs). A recording's start can
understate the student's error later on (a week's first 85 minutes are not its afternoons of other activities).
So one worn window in :data:`AUDIT_EVERY` goes through the teacher whatever its margins, the *audit*: its error
projections join the calibration windows' in the pool, and the bounds are recomputed from the whole pool every
:data:`REFRESH` audited windows (2,048 windows of the stream). The audit costs the teacher on 1/64 of the windows
(1.6%) and is an unbiased sample of the student's error over the whole recording, where the start is one stretch
of it. Measured on the USC-HAD fold1 run's 7-day week before it was built (the student on every window, the
teacher on every 64th, 3,780 windows): start-only bounds kept the teacher's label on 98.7% of them, bounds from
the 3,780 windows 99.87%.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from zerohar.errors import ZeroharError
from zerohar.inference.embed import CALIBRATION_SPAN, calibration_windows

#: The quantile of the calibration windows' error projections that a student margin must exceed.
QUANTILE = 0.99
#: :class:`CheckedStream`: one worn window in this many goes through the teacher whatever its margins (the audit).
AUDIT_EVERY = 64
#: :class:`CheckedStream`: the bounds are recomputed from the pool every this many audited windows (every 2,048
#: windows of the stream, 85 minutes at the 2.5 s step).
REFRESH = 32


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
    return bounds(error_projections(student, teacher, prototypes), quantile)


def error_projections(student: np.ndarray, teacher: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
    """`(M, L)` float32 `(t - s) . p_i`: how much each candidate's score moves from the student's embedding of a
    window to the teacher's (`student`, `teacher` `(M, E)`, `prototypes` `(L, E)`)."""
    student, teacher = np.asarray(student, np.float32), np.asarray(teacher, np.float32)
    if student.shape != teacher.shape or student.ndim != 2 or not len(student):
        raise ZeroharError(f"calibration embeddings of shapes {student.shape} and {teacher.shape}; expected two "
                           "equal (M, E) arrays with M >= 1")
    return (teacher - student) @ np.asarray(prototypes, np.float32).T


def bounds(proj: np.ndarray, quantile: float = QUANTILE) -> CascadeCheck:
    """The bounds of :class:`CascadeCheck` from error projections `proj` `(M, L)` (:func:`error_projections`)."""
    if not 0 < quantile <= 1:
        raise ZeroharError(f"the cascade quantile must be in (0, 1], found {quantile:g}")
    L = proj.shape[1]
    tau_pair = np.zeros((L, L), np.float32)
    for a in range(L):  # one row at a time: (M, L) in memory, not (M, L, L)
        tau_pair[a] = np.quantile(np.abs(proj[:, [a]] - proj), quantile, axis=0)
    np.fill_diagonal(tau_pair, 0.0)
    tau_label = np.quantile(np.abs(proj), quantile, axis=0).astype(np.float32)
    return CascadeCheck(tau_pair, tau_label, float(quantile), len(proj))


class CheckedStream:
    """The checked student over a stream of windows, its bounds following the recording (module docstring).

    Args:
        student, teacher: `(M, E)` both backbones' embeddings of the calibration windows (the first bounds).
        prototypes: `(L, E)` the candidates' prototypes, in the order of the scores.
        threshold: the `unknown` score threshold, or None.
        quantile, every, refresh: :data:`QUANTILE`, :data:`AUDIT_EVERY` (0: no audit, the calibration windows'
            bounds throughout), :data:`REFRESH`.

    Attributes:
        windows, checked, audited, refreshes: windows seen, windows the teacher embedded (unsure or audited),
            audited windows, bound recomputations so far.
    """

    def __init__(self, student: np.ndarray, teacher: np.ndarray, prototypes: np.ndarray,
                 threshold: float | None = None, *, quantile: float = QUANTILE, every: int = AUDIT_EVERY,
                 refresh: int = REFRESH):
        if every < 0 or refresh < 1:
            raise ZeroharError(f"the cascade audits every n-th window (n >= 0) and refreshes its bounds every k >= 1 "
                               f"audited windows; found n = {every}, k = {refresh}")
        self.prototypes = np.asarray(prototypes, np.float32)
        self.threshold, self.quantile, self.every, self.refresh = threshold, quantile, every, refresh
        self._pool = [error_projections(student, teacher, self.prototypes)]  # (M, L) blocks
        self.check = bounds(self._pool[0], quantile)
        self.windows = self.checked = self.audited = self.refreshes = 0
        self._pending = 0  # audited windows not yet in the bounds

    def embed(self, student: np.ndarray, teacher: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """The embeddings of a batch: the student's `(n, E)`, the teacher's where the window is unsure or audited.

        The bounds are recomputed at the end of every `every * refresh` windows of the stream (if audited windows
        came in), at the same places whatever the caller's batch sizes.

        Args:
            student: `(n, E)` the student's embeddings of the batch's windows, in stream order.
            teacher: embeds the batch's windows of an index array `(m,)` with the teacher, `(m, E)`.
        """
        student = np.asarray(student, np.float32)
        block = self.every * self.refresh
        out = student.copy()
        a = 0
        while a < len(student):
            b = len(student) if not block else min(len(student), a + block - self.windows % block)
            s = student[a:b]
            again = self.check.unsure(s @ self.prototypes.T, self.threshold)
            audit = np.zeros(len(s), bool)
            if self.every:
                audit[(-self.windows) % self.every :: self.every] = True  # the stream's windows 0, every, ...
            self.windows += len(s)
            redo = np.flatnonzero(again | audit)
            if len(redo):
                out[a + redo] = np.asarray(teacher(a + redo), np.float32)
                self.checked += len(redo)
            if audit.any():
                self.audited += int(audit.sum())
                self._pool.append(error_projections(s[audit], out[a:b][audit], self.prototypes))
                self._pending += int(audit.sum())
            if block and self.windows % block == 0 and self._pending:
                self._pool = [np.concatenate(self._pool)]
                self.check = bounds(self._pool[0], self.quantile)
                self._pending, self.refreshes = 0, self.refreshes + 1
            a = b
        return out

    @classmethod
    def run_in_order(cls, student: np.ndarray, teacher: Callable[[np.ndarray], np.ndarray], prototypes: np.ndarray,
                     threshold: float | None = None, **kw) -> tuple[np.ndarray, CheckedStream]:
        """`classify --cascade` on windows held in memory, taken as one stream in their order: the first bounds
        from windows spread over the first :data:`~zerohar.inference.embed.CALIBRATION_SPAN` (classify's rule),
        then :meth:`embed` over all of them. (embeddings `(N, E)`, the stream for its record).

        Args:
            student: `(N, E)` the student's embeddings; teacher: embeds the windows of an index array `(m,)`.
            prototypes, threshold, kw: as for the constructor.
        """
        student = np.asarray(student, np.float32)
        first = calibration_windows(np.arange(min(len(student), CALIBRATION_SPAN)))
        stream = cls(student[first], teacher(first), prototypes, threshold, **kw)
        return stream.embed(student, teacher), stream

    def record(self) -> dict:
        """What `info.json` records of the cascade."""
        return {"checked_windows": self.checked, "worn_windows": self.windows,
                "checked_share": self.checked / self.windows if self.windows else 0.0, "quantile": self.quantile,
                "audited_windows": self.audited, "audit_every": self.every, "bound_refreshes": self.refreshes,
                "bound_windows": self.check.windows,
                "rule": "the run's own backbone embeds again every window whose top label (or unknown decision) the "
                        "distilled backbone's error could change, by the error's quantile on calibration windows of "
                        "the recording and on one window in every audit_every throughout "
                        "(zerohar.inference.cascade)"}
