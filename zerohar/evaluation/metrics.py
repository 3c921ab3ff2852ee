"""Zero-shot metrics: accuracy, macro-F1, top-k, per class, confusion matrix, generalised zero-shot (GZSL).

Every id in this module indexes ONE class ordering, the dataset's (`metadata/folds/<dataset>.yaml`, the
`class_names` of a WindowSet). Predictions arrive as label *names* (what a label search returns) and are
turned into ids of that same ordering by :func:`ids_of`, so targets and predictions can never be scored in
two different orderings (the original ZeroHAR evaluation did, and mis-scored two of its datasets).

Report layout (what `zerohar eval` writes to `metrics.json`): `accuracy`, `macro_f1`, `top2_accuracy`,
`chance` first, then `n_windows`, `per_class`, `confusion_matrix` (rows = true, columns = predicted, both
in `class_order`), `class_order` (the candidate classes in the dataset's ordering).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.metrics import confusion_matrix as _sk_confusion
from sklearn.metrics import f1_score, precision_recall_fscore_support

from zerohar.errors import ZeroharError
from zerohar.io import atomic_write


def ids_of(names: np.ndarray | Sequence, class_order: Sequence[str]) -> np.ndarray:
    """Ids of label names (any shape) in `class_order`; a name outside it is an error, never a silent -1.

    Args:
        names: label names, e.g. the `(N, k)` labels returned by :meth:`zerohar.inference.index.LabelIndex.search`.
        class_order: the dataset's class ordering.

    Returns:
        int64 array of the same shape as `names`.
    """
    lookup = {c: i for i, c in enumerate(class_order)}
    arr = np.asarray(names, dtype=object)
    flat = arr.reshape(-1)
    unknown = sorted({str(n) for n in flat if n not in lookup})
    if unknown:
        raise ZeroharError(f"labels {unknown} are not in the class ordering {list(class_order)}")
    return np.fromiter((lookup[n] for n in flat), dtype=np.int64, count=len(flat)).reshape(arr.shape)


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of windows whose predicted id equals the target id (0.0 for no windows)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float(np.mean(y_true == y_pred)) if len(y_true) else 0.0


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[int]) -> float:
    """Unweighted mean F1 over `labels` (scikit-learn, `zero_division=0`)."""
    if not len(y_true):
        return 0.0
    return float(f1_score(y_true, y_pred, labels=list(labels), average="macro", zero_division=0))


def topk_accuracy(y_true: np.ndarray, topk_ids: np.ndarray, k: int = 2) -> float:
    """Fraction of windows whose target is among the first `k` columns of `topk_ids` `(N, >=1)`."""
    y_true, topk_ids = np.asarray(y_true), np.asarray(topk_ids)
    if not len(y_true):
        return 0.0
    return float(np.mean((topk_ids[:, :k] == y_true[:, None]).any(axis=1)))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[int]) -> np.ndarray:
    """Counts `(L, L)`: rows are true classes, columns predicted classes, both in the order of `labels`."""
    return _sk_confusion(y_true, y_pred, labels=list(labels)) if len(y_true) else np.zeros((len(labels),) * 2, int)


def per_class_report(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[int], names: Sequence[str]) -> dict:
    """`{name: {precision, recall, f1, support}}` for each class id in `labels` (named by `names`)."""
    p, r, f, s = precision_recall_fscore_support(
        y_true, y_pred, labels=list(labels), zero_division=0
    ) if len(y_true) else (np.zeros(len(labels)),) * 4
    return {
        n: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, n in enumerate(names)
    }


def zero_shot_report(
    y_true: np.ndarray, topk_labels: np.ndarray, candidates: Sequence[str], class_order: Sequence[str]
) -> dict:
    """The zero-shot metrics of windows whose candidate set is `candidates`.

    Args:
        y_true: `(N,)` target ids in `class_order`.
        topk_labels: `(N, k)` predicted label names, best first (k >= 1; top-2 accuracy needs k >= 2).
        candidates: the labels searched (any order; the report lists them in `class_order`).
        class_order: the dataset's class ordering, the one ordering of every id.

    Returns:
        The report dict described in the module docstring.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    topk = ids_of(topk_labels, class_order)  # (N, k)
    if topk.ndim != 2 or len(topk) != len(y_true):
        raise ValueError(f"topk_labels has shape {topk.shape}, expected ({len(y_true)}, k)")
    cand_ids = sorted(set(ids_of(list(candidates), class_order).tolist()))  # the dataset's ordering
    names = [class_order[i] for i in cand_ids]
    y_pred = topk[:, 0]
    return {
        "accuracy": accuracy(y_true, y_pred),
        "macro_f1": macro_f1(y_true, y_pred, cand_ids),
        "top2_accuracy": topk_accuracy(y_true, topk, 2) if topk.shape[1] >= 2 else accuracy(y_true, y_pred),
        "chance": 1.0 / len(cand_ids),
        "n_windows": int(len(y_true)),
        "per_class": per_class_report(y_true, y_pred, cand_ids, names),
        "confusion_matrix": confusion_matrix(y_true, y_pred, cand_ids).tolist(),
        "class_order": names,
    }


def _mean_per_class_accuracy(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[int]) -> float:
    accs = [float(np.mean(y_pred[y_true == c] == c)) for c in classes if np.any(y_true == c)]
    return float(np.mean(accs)) if accs else 0.0


def gzsl_report(y_true: np.ndarray, y_pred: np.ndarray, seen: Sequence[int], unseen: Sequence[int]) -> dict:
    """Generalised zero-shot metrics (candidates = all classes).

    Accuracies are averaged per class over the classes present in `y_true` (Xian et al., "Zero-shot
    learning: a comprehensive evaluation", 2018), so the many seen-class windows do not swamp the few
    unseen ones; the harmonic mean is `2 s u / (s + u)`.

    Args:
        y_true: `(N,)` target ids (held-out seen-class windows and all unseen-class windows).
        y_pred: `(N,)` predicted ids, searched over every class.
        seen: ids of the fold's seen classes. unseen: ids of its unseen classes.

    Returns:
        `{"seen_accuracy", "unseen_accuracy", "harmonic_mean", "n_seen_windows", "n_unseen_windows"}`.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    s = _mean_per_class_accuracy(y_true, y_pred, seen)
    u = _mean_per_class_accuracy(y_true, y_pred, unseen)
    return {
        "seen_accuracy": s,
        "unseen_accuracy": u,
        "harmonic_mean": 2 * s * u / (s + u) if s + u > 0 else 0.0,
        "n_seen_windows": int(np.isin(y_true, list(seen)).sum()),
        "n_unseen_windows": int(np.isin(y_true, list(unseen)).sum()),
    }


#: Fraction of held-out seen-class windows that calibrated stacking leaves ranked as a seen class.
CALIBRATION_SEEN_KEEP = 0.9


def calibration_groups(subject: np.ndarray, recording: np.ndarray, start: np.ndarray) -> tuple[np.ndarray, str]:
    """Two cross-fitting groups (0 and 1) of calibration windows, for :func:`calibrated_gzsl`.

    By subject when there are two or more (sorted subjects alternate between the groups), so a window is scored
    with a margin of other people; with one subject, by recording (alternating); with one recording, its
    earlier and later half (split at the median start time). One window, or windows that all start at the same
    time, make one group (0).

    Args:
        subject, recording, start: `(N,)` of the calibration windows.

    Returns:
        (`(N,)` group of each window, what split them: "subject", "recording", "time" or "none").
    """
    subject, recording, start = np.asarray(subject), np.asarray(recording), np.asarray(start, dtype=float)
    for key, name in ((subject, "subject"), (recording, "recording")):
        values = sorted(set(key.tolist()))
        if len(values) >= 2:
            rank = {v: i % 2 for i, v in enumerate(values)}
            return np.fromiter((rank[v] for v in key.tolist()), dtype=np.int64, count=len(key)), name
    if len(start) >= 2:
        group = np.zeros(len(start), np.int64)
        group[np.argsort(start, kind="stable")[len(start) // 2 :]] = 1
        return group, "time"
    return np.zeros(len(start), np.int64), "none"


def calibrated_gzsl(
    scores: np.ndarray,
    y_true: np.ndarray,
    seen: Sequence[int],
    unseen: Sequence[int],
    group: np.ndarray,
    keep: float = CALIBRATION_SEEN_KEEP,
) -> dict:
    """GZSL with calibrated stacking (Chao et al., ECCV 2016): seen-class scores lowered by a margin gamma.

    A model trained on the seen classes scores them higher than any unseen class, so an uncalibrated GZSL
    search almost never answers an unseen class. Calibrated stacking subtracts `gamma` from every seen-class
    score. No unseen-class window may choose gamma (they are the test), so it is set from held-out windows of
    the seen classes alone: per window, the margin `best seen score - best unseen score`; gamma is the
    `1 - keep` quantile of those margins (or 0 if that is negative), so that a fraction `keep` of them would
    still be answered with a seen class. The choice is cross-fitted: the seen windows of calibration group g are
    scored with the gamma of the other groups, never with one computed from themselves (with a single group,
    from all of them, and the result says `cross_fitted: false`); unseen windows use the gamma of all
    calibration windows.

    Args:
        scores: `(N, C)` similarity of each window to every class, columns in the dataset's class ordering.
        y_true: `(N,)` target ids.
        seen, unseen: class ids (columns) of the fold's seen and unseen classes.
        group: `(N,)` calibration group of each held-out seen-class window (e.g. by subject), -1 for windows
            that calibrate nothing (the unseen-class windows).
        keep: fraction of calibration windows kept on the seen side, in (0, 1).

    Returns:
        :func:`gzsl_report` of the calibrated predictions, plus `gamma` (from all calibration windows),
        `seen_keep` and `cross_fitted`.
    """
    scores, y_true, group = np.asarray(scores, dtype=np.float64), np.asarray(y_true), np.asarray(group)
    if not 0.0 < keep < 1.0:
        raise ValueError(f"keep must be in (0, 1), got {keep}")
    seen, unseen = list(seen), list(unseen)
    if scores.ndim != 2 or len(scores) != len(y_true) or len(group) != len(y_true):
        raise ValueError(f"scores {scores.shape}, y_true {y_true.shape} and group {group.shape} do not match")
    margin = scores[:, seen].max(axis=1) - scores[:, unseen].max(axis=1)  # (N,)
    calib = group >= 0
    if not calib.any():
        raise ZeroharError("calibrated stacking needs held-out windows of the seen classes; there are none")

    def gamma_of(rows: np.ndarray) -> float:  # never negative: calibration removes a seen bias, never adds one
        return max(0.0, float(np.quantile(margin[rows], 1.0 - keep)))

    gamma_all = gamma_of(calib)
    gamma = np.full(len(y_true), gamma_all)
    groups = np.unique(group[calib])
    cross = len(groups) > 1
    if cross:
        for g in groups:
            gamma[group == g] = gamma_of(calib & (group != g))
    is_seen = np.zeros(scores.shape[1], bool)
    is_seen[seen] = True
    y_pred = np.argmax(scores - gamma[:, None] * is_seen[None, :], axis=1)
    out = gzsl_report(y_true, y_pred, seen, unseen)
    out.update(gamma=gamma_all, seen_keep=keep, cross_fitted=cross)
    return out


def confusion_figure(cm: np.ndarray | list, class_names: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Write a confusion-matrix heat map (rows normalised to recall, counts written in cells) as PNG.

    Uses matplotlib's Agg canvas directly, so no display and no global backend switch are needed. The file
    is written atomically.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cm = np.asarray(cm, dtype=float)
    n = len(class_names)
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    size = max(4.0, 0.7 * n + 2.5)
    fig = Figure(figsize=(size, size * 0.9))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    im = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=8,
                    color="white" if frac[i, j] > 0.5 else "black")
    fig.tight_layout()
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
