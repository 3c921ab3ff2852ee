"""A stage's windows and their subject split; training-time augmentation."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import SUBJECTS, tiny_cfg

from zerohar.data.augment import augment
from zerohar.data.splits import load_stage_data, split_subjects
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
    train, val = set(ws.subject[d.train_idx]), set(ws.subject[d.val_idx])
    assert train and val and not train & val and len(d.test_idx) == 0
    assert sorted(train | val) == SUBJECTS


def test_pretraining_keeps_unlabelled_windows_but_no_unseen_class_window():
    d = load_stage_data(tiny_cfg("pretrain", data={"fold": "fold1"}))
    ws = d.ws
    unseen_ids = [d.classes.index(c) for c in d.unseen]
    assert not np.isin(ws.y, unseen_ids).any()
    assert (ws.y == -1).any()  # unlabelled windows are welcome in self-supervised pretraining


def test_supervised_data_has_three_disjoint_subject_groups():
    d = load_stage_data(tiny_cfg("supervised", test_fraction=0.34))
    groups = [set(d.ws.subject[i]) for i in (d.train_idx, d.val_idx, d.test_idx)]
    assert all(groups) and not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert set(d.seen) == set(d.classes)  # the upper bound trains on every class


def test_unknown_subjects_are_refused():
    with pytest.raises(ZeroharError, match=r"data.subjects names subjects \['99'\] that are not in the data"):
        load_stage_data(tiny_cfg("stage1", data={"subjects": ["01", "99"]}))
