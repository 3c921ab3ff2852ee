"""A stage's windows and their subject split; training-time augmentation."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import SUBJECTS, layout_of, tiny_cfg

from zerohar.data.augment import augment
from zerohar.data.prepare import load_windowset
from zerohar.data.splits import holds_classes, load_stage_data, split_subjects, touches_classes
from zerohar.data.windows import WindowSet
from zerohar.errors import ZeroharError


def test_split_subjects_is_disjoint_and_seeded():
    subs = [f"s{i}" for i in range(10)]
    tr, va, te = split_subjects(subs * 3, 0.2, 0.3, seed=0)
    assert (len(tr), len(va), len(te)) == (5, 2, 3)
    assert not (set(tr) & set(va)) and not (set(tr) & set(te)) and not (set(va) & set(te))
    assert set(tr) | set(va) | set(te) == set(subs)
    assert split_subjects(subs, 0.2, 0.3, seed=0) == (tr, va, te)
    assert split_subjects(subs, 0.2, 0.3, seed=1) != (tr, va, te)
    assert split_subjects(subs, 0.0, 0.0, seed=0) == (sorted(subs), [], [])
    with pytest.raises(ZeroharError, match=r"2 subject\(s\) cannot be split into training, validation"):
        split_subjects(["a", "b"], 0.5, 0.5, seed=0)
    # test subjects come first in the permutation: another validation fraction leaves them as they are
    assert split_subjects(subs, 0.4, 0.3, seed=0)[2] == te and split_subjects(subs, 0.0, 0.3, seed=0)[2] == te


def test_augment_keeps_shape_and_norm_up_to_scale():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 6, 150)).astype(np.float32)
    y = augment(x, np.random.default_rng(1), max_deg=10.0, scale=0.0)
    assert y.shape == x.shape and y.dtype == np.float32
    # a rotation keeps the norm of every triad's 3-vector at every sample
    nx = np.linalg.norm(x.reshape(4, 2, 3, 150), axis=2)
    ny = np.linalg.norm(y.reshape(4, 2, 3, 150), axis=2)
    np.testing.assert_allclose(nx, ny, rtol=1e-4)
    assert not np.allclose(x, y)


# ---------------------------------------------------------------------------------------------- stage data
def test_stage2_data_holds_only_seen_classes_and_disjoint_subjects():
    d = load_stage_data(tiny_cfg("stage2"))
    ws = d.ws
    assert d.unseen == ["walking", "sitting", "stand-to-sit", "sit-to-lie"]
    assert set(d.seen) == set(d.classes) - set(d.unseen)
    assert set(ws.class_names[y] for y in np.unique(ws.y)) <= set(d.seen)
    assert (ws.y >= 0).all()  # no unlabelled windows in a supervised-by-text stage
    train, val, test = (set(ws.subject[i]) for i in (d.train_idx, d.val_idx, d.test_idx))
    assert train and val and test and not (train & val or train & test or val & test)  # zero-shot runs test too
    assert sorted(train | val | test) == SUBJECTS


def test_pretraining_keeps_unlabelled_windows_but_no_unseen_class_window():
    d = load_stage_data(tiny_cfg("pretrain", data={"fold": "fold1"}))
    ws = d.ws
    unseen_ids = [d.classes.index(c) for c in d.unseen]
    assert unseen_ids and not np.isin(ws.y, unseen_ids).any()
    assert (ws.y == -1).any()  # unlabelled windows are welcome in self-supervised pretraining


def _windows(recording, start, y):
    n = len(y)
    return WindowSet(np.zeros((n, 3, 150), np.float32), np.array(y), np.array(["1"] * n), ["a", "b", "c"],
                     layout_of(("acc", "waist", "phone")), 30.0, np.array(recording), np.array(start, float))


def test_touches_classes_marks_every_window_sharing_a_sample():
    # one recording of 5 s windows every 2.5 s; the window at 10 s is class 2 ("c"); a second recording too
    starts = [0, 2.5, 5, 7.5, 10, 12.5, 15, 17.5]
    ws = _windows([0] * 8 + [1] * 3, starts + [0, 2.5, 5], [0, 0, -1, 0, 2, 1, 1, 1] + [1, 1, 2])
    hit = touches_classes(ws, [2])
    # 7.5 and 12.5 overlap [10, 15); 5 and 15 only touch it (no shared sample); recording 1 has its own
    assert hit.tolist() == [False, False, False, True, True, True, False, False] + [False, True, True]
    assert not touches_classes(ws, []).any()
    assert touches_classes(ws, [0]).tolist()[:4] == [True, True, True, True]


def test_pretraining_leaves_out_every_window_with_a_sample_of_an_unseen_class():
    """Index level: no training or validation window shares a sample with a window labelled unseen."""
    d = load_stage_data(tiny_cfg("pretrain", data={"fold": "fold1"}))
    full = load_windowset("hapt")
    full = full.subset(np.isin(full.subject, SUBJECTS))
    unseen_ids = [full.class_names.index(c) for c in d.unseen]
    bad = {(r, s) for r, s, y in zip(full.recording, full.start, full.y) if y in unseen_ids}
    length = full.window_length / full.rate
    for i in np.concatenate([d.train_idx, d.val_idx]):
        r, s = d.ws.recording[i], d.ws.start[i]
        assert not any(br == r and abs(bs - s) < length - 1e-6 for br, bs in bad), (r, s)
    # more than the majority-unseen windows are gone: their neighbours too
    n_majority = int((~np.isin(full.y, unseen_ids)).sum())
    assert len(d.ws) < n_majority and len(d.ws) == int((~holds_classes(full, unseen_ids)).sum())


@pytest.mark.parametrize("stage", ["pretrain", "stage1", "stage2", "supervised"])
def test_no_unseen_window_in_training_or_validation_and_disjoint_subjects(stage):
    d = load_stage_data(tiny_cfg(stage, data={"fold": "fold1"}))
    assert len(d.train_idx) and len(d.val_idx) and len(d.test_idx)  # three groups in every stage
    ws, unseen_ids = d.ws, [d.classes.index(c) for c in d.unseen]
    if stage != "supervised":  # the upper bound trains on every class, by definition
        for idx in (d.train_idx, d.val_idx):
            assert len(idx) and not np.isin(ws.y[idx], unseen_ids).any()
    groups = [set(ws.subject[i].tolist()) for i in (d.train_idx, d.val_idx, d.test_idx)]
    assert groups == [set(d.subjects[k]) for k in ("train", "val", "test")]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert len(np.intersect1d(d.train_idx, d.val_idx)) == 0 and len(np.intersect1d(d.train_idx, d.test_idx)) == 0


def test_supervised_data_has_three_disjoint_subject_groups():
    d = load_stage_data(tiny_cfg("supervised", test_fraction=0.34))
    groups = [set(d.ws.subject[i]) for i in (d.train_idx, d.val_idx, d.test_idx)]
    assert all(groups) and not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert set(d.seen) == set(d.classes)  # the upper bound trains on every class


def test_unknown_subjects_are_refused():
    with pytest.raises(ZeroharError, match=r"data.subjects names subjects \['99'\] that are not in the data"):
        load_stage_data(tiny_cfg("stage1", data={"subjects": ["01", "99"]}))
