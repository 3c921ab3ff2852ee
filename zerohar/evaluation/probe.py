"""Backbone evaluation the way the self-supervised HAR literature does it: a linear probe on frozen features.

`zerohar probe --backbone CKPT --dataset NAME` embeds every labelled window with a frozen HARNet backbone (each
selected sensor triad separately, with the model's input handling: per-kind scale, accelerometers clipped to
+-3 g; the triads' features concatenated), then fits a logistic regression (scikit-learn, standardised
features) in subject-disjoint folds and reports the macro-F1 and accuracy on the held-out subjects of each fold.
This is the protocol of SSL-Wearables' and RelCon's papers (linear probe, subject-wise splits, macro-F1), so a
random, an SSL multi-task and a RelCon backbone can be compared directly. It uses every class: it measures the
features, not zero-shot transfer.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from zerohar import __version__
from zerohar.config import VARIANTS
from zerohar.data.layout import SENSOR_KINDS
from zerohar.data.prepare import load_windowset
from zerohar.errors import ZeroharError
from zerohar.inference.embed import embed_backbone
from zerohar.io import atomic_write_json, check_output
from zerohar.model.pretrained import load_backbone
from zerohar.model.zerohar import scale_and_clip

logger = logging.getLogger(__name__)


def backbone_features(net, ws, sensors: tuple[str, ...], *, kind_scale: dict[str, float] | None = None,
                      batch_size: int = 256, precision: str = "fp32", progress: bool = False) -> np.ndarray:
    """`(N, S' * D)` frozen features of the windows of `ws`: each triad of a kind in `sensors`, concatenated."""
    triads = [i for i, s in enumerate(ws.layout.sensors) if s.sensor in sensors]
    if not triads:
        raise ZeroharError(
            f"the data has no sensor of kind {', '.join(sensors)} (its sensors: "
            f"{', '.join(sorted({s.sensor for s in ws.layout.sensors}))})"
        )
    scale = {"acc": 1.0, "gyro": 1.0, "mag": 0.02, **(kind_scale or {})}
    kind_scale_t = torch.tensor([scale.get(k, 1.0) for k in SENSOR_KINDS])
    feats = []
    for i in triads:
        x = torch.from_numpy(np.ascontiguousarray(ws.X[:, 3 * i : 3 * i + 3], dtype=np.float32))  # (N, 3, T)
        kind = torch.full((len(x), 1), SENSOR_KINDS.index(ws.layout.sensors[i].sensor))
        x = scale_and_clip(x[:, None], kind, kind_scale_t, clip_acc=True)[:, 0]
        feats.append(embed_backbone(net, x, batch_size=batch_size, precision=precision, progress=progress))
    return np.concatenate(feats, axis=1)


def probe_backbone(
    backbone: str | Path | None,
    *,
    dataset: str | None = None,
    data: str | Path | None = None,
    root: str | Path | None = None,
    sensors: tuple[str, ...] = ("acc",),
    n_folds: int = 5,
    seed: int = 0,
    batch_size: int = 256,
    precision: str = "fp32",
    out: str | Path | None = None,
    force: bool = False,
    progress: bool = True,
) -> dict:
    """Linear-probe macro-F1 of a frozen backbone on a window set, in subject-disjoint folds.

    Args:
        backbone: a released HARNet file, a zerohar pretrain run / backbone file, or None for a random backbone
            (seeded by `seed`).
        dataset, data, root: the windows (see :func:`zerohar.data.prepare.load_windowset`).
        sensors: the sensor kinds whose triads are embedded (default: accelerometers, as HARNet was trained).
        n_folds: subject-disjoint folds (at most the number of subjects).
        seed: seed of the random backbone and of the classifier.
        batch_size, precision: the feature pass (fp32 by default: an evaluation is exact).
        out: also write the result as JSON there.
        force: overwrite `out`.
        progress: progress bars.

    Returns:
        `macro_f1` / `accuracy` (mean and std over folds, and per fold), the windows, classes and subjects used,
        the backbone and the settings.
    """
    if out is not None:
        check_output(out, force=force, suffixes=(".json",))
    if n_folds < 2:
        raise ZeroharError(f"--folds must be at least 2 for a subject-disjoint probe, found {n_folds}")
    ws = load_windowset(dataset if data is None else None, root=root, data=data, progress=progress)
    ws = ws.subset(ws.y >= 0)
    variant = next((v for v, t in VARIANTS.items() if t == ws.window_length), None)
    if variant is None:
        raise ZeroharError(f"windows of {ws.window_length} samples fit no HARNet variant ({VARIANTS})")
    subjects = np.unique(ws.subject)
    if len(subjects) < 2:
        raise ZeroharError(f"a subject-disjoint probe needs at least 2 subjects; the data has {len(subjects)}")
    k = min(n_folds, len(subjects))
    torch.manual_seed(seed)
    net = load_backbone(backbone, variant).eval()
    t0 = time.perf_counter()
    X = backbone_features(net, ws, tuple(sensors), batch_size=batch_size, precision=precision, progress=progress)
    y = ws.y
    f1s, accs = [], []
    for train, test in GroupKFold(n_splits=k).split(X, y, groups=ws.subject):
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
        clf.fit(X[train], y[train])
        pred = clf.predict(X[test])
        present = np.unique(y[test])
        f1s.append(float(f1_score(y[test], pred, labels=present, average="macro", zero_division=0)))
        accs.append(float(accuracy_score(y[test], pred)))
    result = {
        "macro_f1": float(np.mean(f1s)), "macro_f1_std": float(np.std(f1s)), "macro_f1_per_fold": f1s,
        "accuracy": float(np.mean(accs)), "accuracy_std": float(np.std(accs)), "accuracy_per_fold": accs,
        "n_windows": int(len(ws)), "classes": list(ws.class_names), "n_subjects": int(len(subjects)),
        "folds": k, "sensors": list(sensors), "backbone": str(backbone) if backbone else "random",
        "variant": variant, "dataset": dataset, "data": str(data) if data else None, "seed": seed,
        "precision": precision, "seconds": round(time.perf_counter() - t0, 1), "zerohar_version": __version__,
    }
    if out is not None:
        atomic_write_json(out, result, force=True)
    return result
