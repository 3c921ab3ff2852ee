"""Metrics: one class ordering for predictions and targets; a perfect classifier scores 1.0 on every fold."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from zerohar.data.folds import load_folds
from zerohar.errors import ZeroharError
from zerohar.evaluation.metrics import (
    calibrated_gzsl,
    calibration_groups,
    confusion_figure,
    gzsl_report,
    ids_of,
    topk_accuracy,
    zero_shot_report,
)
from zerohar.inference.index import LabelIndex
from zerohar.paths import metadata_dir

DATASETS = sorted(p.stem for p in (metadata_dir() / "folds").glob("*.yaml"))


def _orthogonal_index(class_names: list[str], seed: int) -> LabelIndex:
    """An index whose prototypes are orthonormal, inserted in a shuffled order (not the dataset's)."""
    rng = np.random.default_rng(seed)
    dim = len(class_names) + 3
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    shuffled = list(rng.permutation(class_names))
    return LabelIndex.from_embeddings({c: q[i][None].astype(np.float32) for i, c in enumerate(shuffled)})


@pytest.mark.parametrize("dataset", DATASETS)
def test_perfect_classifier_scores_one_on_every_fold(dataset):
    folds = load_folds(dataset)
    classes = list(folds.classes)
    index = _orthogonal_index(classes, seed=len(dataset))
    rng = np.random.default_rng(0)
    for fold in folds.folds:
        unseen = folds.unseen(fold)  # the fold's order, often not the dataset's
        # Targets in the dataset's class ordering; 3-7 windows per class, shuffled.
        y = np.concatenate([np.full(rng.integers(3, 8), classes.index(c)) for c in unseen])
        y = rng.permutation(y)
        emb = index.prototypes[index.label_ids([classes[i] for i in y])]
        emb = emb + 0.01 * rng.normal(size=emb.shape).astype(np.float32)
        _, top = index.search(emb, k=2, candidates=unseen)
        report = zero_shot_report(y, top, unseen, classes)
        assert report["accuracy"] == 1.0, (dataset, fold)
        assert report["macro_f1"] == 1.0, (dataset, fold)
        assert report["top2_accuracy"] == 1.0, (dataset, fold)
        assert report["chance"] == pytest.approx(1 / len(unseen))
        assert report["class_order"] == [c for c in classes if c in unseen]
        assert np.array_equal(np.diag(report["confusion_matrix"]), np.bincount(y, minlength=len(classes))[
            [classes.index(c) for c in report["class_order"]]])
        # GZSL with every class as candidate: also perfect.
        seen = folds.seen(fold)
        y_all = np.concatenate([y, [classes.index(c) for c in seen]])
        emb_all = index.prototypes[index.label_ids([classes[i] for i in y_all])]
        _, top_all = index.search(emb_all, k=1, candidates=list(reversed(classes)))
        g = gzsl_report(y_all, ids_of(top_all[:, 0], classes), ids_of(seen, classes), ids_of(unseen, classes))
        assert g["seen_accuracy"] == g["unseen_accuracy"] == g["harmonic_mean"] == 1.0


def test_report_does_not_depend_on_candidate_or_class_ordering():
    rng = np.random.default_rng(1)
    classes = ["a", "b", "c", "d", "e"]
    cands = ["d", "b", "a"]
    y_names = rng.choice(cands, size=60)
    pred = np.stack([rng.choice(cands, size=60), rng.choice(cands, size=60)], axis=1)
    r1 = zero_shot_report(ids_of(y_names, classes), pred, cands, classes)
    other = ["e", "d", "c", "b", "a"]
    r2 = zero_shot_report(ids_of(y_names, other), pred, list(reversed(cands)), other)
    for key in ("accuracy", "macro_f1", "top2_accuracy", "chance"):
        assert r1[key] == pytest.approx(r2[key])
    assert r1["per_class"] == r2["per_class"]
    # The same confusion matrix, listed in each ordering.
    perm = [r1["class_order"].index(c) for c in r2["class_order"]]
    assert np.array_equal(np.asarray(r1["confusion_matrix"])[np.ix_(perm, perm)], r2["confusion_matrix"])
    assert r1["macro_f1"] == pytest.approx(
        f1_score(y_names, pred[:, 0], labels=cands, average="macro", zero_division=0))


def test_a_label_outside_the_class_ordering_is_an_error():
    with pytest.raises(ZeroharError, match=r"labels \['jogging'\] are not in the class ordering"):
        ids_of(["a", "jogging"], ["a", "b"])


def test_topk_and_gzsl_by_definition():
    y = np.array([0, 1, 2, 2])
    top = np.array([[1, 0], [1, 2], [0, 1], [2, 0]])
    assert topk_accuracy(y, top, 1) == pytest.approx(2 / 4)
    assert topk_accuracy(y, top, 2) == pytest.approx(3 / 4)
    # seen {0, 1}: class 0 wrong, class 1 right -> 0.5; unseen {2}: 1 of 2 right -> 0.5; H = 0.5
    g = gzsl_report(y, top[:, 0], [0, 1], [2])
    assert (g["seen_accuracy"], g["unseen_accuracy"], g["harmonic_mean"]) == (0.5, 0.5, 0.5)
    g0 = gzsl_report(y, np.array([1, 0, 0, 0]), [0, 1], [2])
    assert g0["harmonic_mean"] == 0.0


def test_calibrated_stacking_by_hand():
    # classes 0, 1 seen; 2 unseen. Columns = class ids.
    scores = np.array([
        [0.9, 0.1, 0.5],  # seen 0, group 0: margin 0.4
        [0.2, 0.8, 0.7],  # seen 1, group 0: margin 0.1
        [0.6, 0.0, 0.3],  # seen 0, group 1: margin 0.3
        [0.1, 0.5, 0.3],  # seen 1, group 1: margin 0.2
        [0.6, 0.1, 0.45],  # unseen: margin 0.15 -> answered 2 once gamma > 0.15
        [0.7, 0.2, 0.1],  # unseen: margin 0.6 -> stays on the seen side
    ])
    y = np.array([0, 1, 0, 1, 2, 2])
    group = np.array([0, 0, 1, 1, -1, -1])
    # Uncalibrated: every window is answered with a seen class.
    assert gzsl_report(y, scores.argmax(1), [0, 1], [2])["unseen_accuracy"] == 0.0
    g = calibrated_gzsl(scores, y, [0, 1], [2], group, keep=0.5)
    # gamma of all = median of (0.4, 0.1, 0.3, 0.2) = 0.25; group 0 gets median(0.3, 0.2) = 0.25 as well, and
    # group 1 gets median(0.4, 0.1) = 0.25. Seen windows with margin < 0.25 (rows 1 and 3) flip to unseen.
    assert g["gamma"] == pytest.approx(0.25) and g["cross_fitted"] is True
    assert g["seen_accuracy"] == pytest.approx(0.5)  # class 0: 2/2, class 1: 0/2
    assert g["unseen_accuracy"] == pytest.approx(0.5)  # row 4 right, row 5 wrong
    assert g["harmonic_mean"] == pytest.approx(0.5)
    # Cross-fitting: a group's gamma never comes from its own windows.
    g2 = calibrated_gzsl(scores, y, [0, 1], [2], np.array([0, 0, 1, 1, -1, -1]), keep=0.99)
    assert g2["cross_fitted"] is True
    one = calibrated_gzsl(scores, y, [0, 1], [2], np.array([0, 0, 0, 0, -1, -1]), keep=0.5)
    assert one["cross_fitted"] is False
    with pytest.raises(ZeroharError, match="held-out windows of the seen classes"):
        calibrated_gzsl(scores, y, [0, 1], [2], np.full(6, -1))


def test_calibration_groups_split_by_subject_then_recording_then_time():
    g, by = calibration_groups(np.array(["b", "a", "c", "a", "b"]), np.zeros(5), np.arange(5.0))
    assert by == "subject" and g.tolist() == [1, 0, 0, 0, 1]  # sorted a, b, c alternate 0, 1, 0
    g, by = calibration_groups(np.array(["a"] * 4), np.array([7, 7, 3, 3]), np.arange(4.0))
    assert by == "recording" and g.tolist() == [1, 1, 0, 0]
    g, by = calibration_groups(np.array(["a"] * 5), np.zeros(5), np.array([10.0, 0.0, 5.0, 2.5, 7.5]))
    assert by == "time" and g.tolist() == [1, 0, 1, 0, 1]  # the earlier two, the later three
    g, by = calibration_groups(np.array(["a"]), np.zeros(1), np.zeros(1))
    assert by == "none" and g.tolist() == [0]


def test_confusion_figure_writes_a_png(tmp_path):
    out = confusion_figure([[3, 1], [0, 4]], ["walking", "sitting"], tmp_path / "c.png", title="fold1")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["c.png"]
