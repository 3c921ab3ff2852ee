"""Per-window sample classes (`WindowSet.sample_classes`) and the exact pretraining filter built on them.

Two small recordings at 30 Hz, cut into 5 s windows every 2.5 s (150 samples, step 75), classes a, b, c with c
unseen:

- recording 0 (900 samples, windows 0-10 start at 0, 75, ..., 750): a on [0, 300), unlabelled on [300, 600)
  except a 1 s burst of c on [420, 450), b on [600, 900). The burst is the majority of no window, so no window is
  labelled c; windows 4 (start 300) and 5 (start 375) hold its samples.
- recording 1 (600 samples, windows 11-17 start at 0, 75, ..., 450): b on [0, 150), c on [150, 450), a on
  [450, 600). Windows 13-15 are labelled c; 12 and 16 hold c samples at their edges; 11 and 17 hold none.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from helpers import layout_of

from zerohar.config import resolve_config
from zerohar.data.multi import load_data
from zerohar.data.splits import holds_classes, load_stage_data, touches_classes
from zerohar.data.transforms import make_windows
from zerohar.data.windows import Recording, WindowSet, pack_classes, unpack_classes, window_class_sets

CLASSES = ["a", "b", "c"]
LAYOUT = layout_of(("acc", "waist", "phone"))
SHORT_BURST = [4, 5]  # windows of recording 0 holding the 1 s burst of c
LONG_SEGMENT = [12, 13, 14, 15, 16]  # windows of recording 1 holding samples of its 10 s segment of c


def _labels(n, runs):
    lab = np.full(n, -1, np.int64)
    for a, b, c in runs:
        lab[a:b] = c
    return lab


def _recordings():
    lab0 = _labels(900, [(0, 300, 0), (420, 450, 2), (600, 900, 1)])
    lab1 = _labels(600, [(0, 150, 1), (150, 450, 2), (450, 600, 0)])
    return [
        Recording(np.random.default_rng(i).normal(size=(len(lab), 3)).astype(np.float32), LAYOUT, lab, "1",
                  f"rec{i}", rate=30.0)
        for i, lab in enumerate([lab0, lab1])
    ]


def _windows() -> WindowSet:
    return make_windows(_recordings(), CLASSES, length_s=5.0, step_s=2.5, rate=30.0)


def _old_format(ws: WindowSet, path):
    """`ws` as an npz written before `sample_classes` existed (exactly the old keys)."""
    header = {"format": "zerohar.WindowSet/1", "class_names": ws.class_names, "layout": ws.layout.to_dict(),
              "rate": ws.rate, "recording_names": ws.recording_names, "meta": ws.meta}
    np.savez(path, X=ws.X, y=ws.y, subject=ws.subject.astype(str), recording=ws.recording, start=ws.start,
             header=np.array(json.dumps(header)))
    return path


def _folds(tmp_path):
    p = tmp_path / "folds.yaml"
    p.write_text("classes: [a, b, c]\nfolds:\n  f1: {unseen: [c]}\n")
    return p


def _pretrain(data, folds):
    # one subject: no validation or test subjects (a warning says so); every kept window is a training window
    return load_stage_data(resolve_config("pretrain", overrides={
        "data": {"data": str(data), "folds": str(folds), "fold": "f1"},
        "train": {"val_fraction": 0.0, "test_fraction": 0.1},
    }))


def _kept(d, full: WindowSet) -> list[int]:
    """Indices into `full` of the windows `d` kept (a window is its recording and start)."""
    where = {(int(r), float(s)): i for i, (r, s) in enumerate(zip(full.recording, full.start))}
    return sorted(where[(int(r), float(s))] for r, s in zip(d.ws.recording, d.ws.start))


def test_the_grid_is_what_the_module_docstring_says():
    ws = _windows()
    assert len(ws) == 18 and ws.recording.tolist() == [0] * 11 + [1] * 7
    assert ws.start.tolist() == [2.5 * i for i in range(11)] + [2.5 * i for i in range(7)]
    assert ws.y.tolist() == [0, 0, 0, -1, -1, -1, -1, -1, 1, 1, 1] + [1, -1, 2, 2, 2, -1, 0]
    assert ws.sample_classes.dtype == np.uint8 and ws.sample_classes.shape == (18, 1)


def test_sample_classes_record_every_class_of_any_sample():
    ws = _windows()
    held = unpack_classes(ws.sample_classes, 3)
    assert np.flatnonzero(held[:, 2]).tolist() == SHORT_BURST + LONG_SEGMENT
    assert np.flatnonzero(held[:, 0]).tolist() == [0, 1, 2, 3, 16, 17]  # a until sample 300 / from 450
    assert np.flatnonzero(held[:, 1]).tolist() == [7, 8, 9, 10, 11, 12]
    assert held[6].tolist() == [False, False, False]  # [450, 600): unlabelled only
    assert np.flatnonzero(ws.holds_samples_of([2])).tolist() == SHORT_BURST + LONG_SEGMENT
    assert not ws.holds_samples_of([]).any()


def test_packing_spans_bytes_little_bit_order():
    lab = np.array([9, 9, -1, 0, 8, 8], np.int64)
    packed = window_class_sets(lab, np.array([0, 2, 4]), 2, 10)
    assert packed.dtype == np.uint8 and packed.shape == (3, 2)
    assert packed.tolist() == [[0, 2], [1, 0], [0, 1]]  # class 9 = byte 1 bit 1, class 0 = byte 0 bit 0
    assert np.array_equal(pack_classes(unpack_classes(packed, 10)), packed)
    assert window_class_sets(np.full(4, -1), np.array([0]), 2, 0).shape == (1, 0)


def test_short_unseen_segment_leaves_pretraining_exactly(tmp_path, caplog):
    ws = _windows()
    path = ws.save(tmp_path / "w.npz")
    # the window-label approximation misses the short burst entirely
    assert np.flatnonzero(touches_classes(ws, [2])).tolist() == LONG_SEGMENT
    with caplog.at_level(logging.INFO, logger="zerohar.data.splits"):
        d = _pretrain(path, _folds(tmp_path))
    assert _kept(d, ws) == [0, 1, 2, 3, 6, 7, 8, 9, 10, 11, 17]
    assert d.ws.sample_classes is not None and not d.ws.holds_samples_of([2]).any()
    assert "pretraining leaves out 7 windows that hold samples of the unseen classes (3 of them labelled unseen)" \
        in caplog.text
    assert "records no per-sample classes" not in caplog.text


def test_long_unseen_segment_gives_the_result_of_before():
    ws = _windows()
    one = ws.subset(ws.recording == 1)
    assert np.array_equal(holds_classes(one, [2]), touches_classes(one, [2]))
    assert np.flatnonzero(holds_classes(one, [2])).tolist() == [i - 11 for i in LONG_SEGMENT]


def test_old_npz_without_the_field_loads_and_falls_back(tmp_path, caplog):
    ws = _windows()
    path = _old_format(ws, tmp_path / "old.npz")
    with np.load(path) as z:
        assert "sample_classes" not in z.files
    back = WindowSet.load(path)
    assert back.sample_classes is None and back.holds_samples_of([2]) is None
    assert np.array_equal(back.y, ws.y) and np.array_equal(back.start, ws.start)
    with caplog.at_level(logging.INFO, logger="zerohar.data.splits"):
        d = _pretrain(path, _folds(tmp_path))
    assert _kept(d, ws) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 17]  # the burst's windows stay (as before)
    assert caplog.text.count("records no per-sample classes") == 1
    assert "pretraining leaves out 5 windows" in caplog.text


def test_save_load_and_subset_keep_the_field_aligned(tmp_path):
    ws = _windows()
    back = WindowSet.load(ws.save(tmp_path / "w.npz"))
    assert np.array_equal(back.sample_classes, ws.sample_classes)
    idx = np.array([16, 4, 0, 13])
    sub = ws.subset(idx)
    assert np.array_equal(sub.sample_classes, ws.sample_classes[idx])
    assert sub.holds_samples_of([2]).tolist() == [True, True, False, True]
    mask = ws.y == -1
    assert np.array_equal(ws.subset(mask).sample_classes, ws.sample_classes[mask])
    sel = ws.select_classes(["b"])
    assert np.array_equal(unpack_classes(sel.sample_classes, 3), unpack_classes(ws.sample_classes, 3)[ws.y == 1])
    # a set without the field (streaming, hand-built) subsets and saves without it
    bare = WindowSet(ws.X, ws.y, ws.subject, CLASSES, LAYOUT, 30.0, ws.recording, ws.start)
    assert bare.subset(idx).sample_classes is None
    assert WindowSet.load(bare.save(tmp_path / "bare.npz")).sample_classes is None
    with pytest.raises(ValueError, match="sample_classes"):
        WindowSet(ws.X, ws.y, ws.subject, CLASSES, LAYOUT, 30.0, sample_classes=ws.sample_classes[:3])


def test_trial_and_segment_windows_record_their_samples():
    lab = _labels(90, [(0, 30, 0), (30, 60, 2)])  # 3 s, shorter than a window: edge-padded to one
    rec = Recording(np.zeros((90, 3), np.float32), LAYOUT, lab, "1", "short", rate=30.0)
    trial = make_windows([rec], CLASSES, length_s=5.0, rate=30.0, per_trial=True)
    assert unpack_classes(trial.sample_classes, 3).tolist() == [[True, False, True]]
    seg = make_windows(_recordings()[1:], CLASSES, length_s=5.0, rate=30.0, per_trial="segment")
    assert seg.y.tolist() == [1, 2, 0]
    assert unpack_classes(seg.sample_classes, 3).tolist() == [[False, True, False], [False, False, True],
                                                             [True, False, False]]


def test_merged_sources_carry_namespaced_sample_classes(tmp_path):
    ws = _windows()
    a, b = ws.save(tmp_path / "a.npz"), ws.subset(ws.recording == 1).save(tmp_path / "b.npz")
    d = load_data(resolve_config("stage1", overrides={
        "data": {"sources": [{"data": str(a)}, {"data": str(b)}]},
        "train": {"label_text": "names", "val_fraction": 0.0, "test_fraction": 0.1},
    }))
    held = unpack_classes(d.ws.sample_classes, 6)
    for i, p in enumerate(d.parts):
        src = WindowSet.load([a, b][i])
        mine = unpack_classes(src.sample_classes, 3)[src.y >= 0]  # stage I keeps the labelled windows
        assert np.array_equal(held[p.rows][:, 3 * i : 3 * i + 3], mine)
        assert not held[p.rows][:, 3 * (1 - i) : 3 * (1 - i) + 3].any()
