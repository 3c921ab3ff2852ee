"""Several sources in one stage (zerohar.data.multi): merged layout, namespaced classes that share label text,
balanced sampling, masks, and the commands that train and evaluate across datasets.

Random windows (shapes and bookkeeping only; no claim about accuracy), saved as window sets of different
layouts, as `zerohar prepare` writes them.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from helpers import window_set_file

from zerohar.cli import build_parser, main
from zerohar.commands._training import overrides_from_args
from zerohar.config import resolve_config, split_sources
from zerohar.data.layout import Sensor, SensorLayout
from zerohar.data.multi import class_text, load_data
from zerohar.data.windows import WindowSet
from zerohar.errors import ZeroharError
from zerohar.evaluation.cross import benchmark_cross
from zerohar.train.stage2 import sensor_dropout_mask

WAIST = SensorLayout((Sensor("acc", "waist", "smartphone", "g"), Sensor("gyro", "waist", "smartphone", "rad/s")))
WRIST = SensorLayout((Sensor("acc", "wrist", "smartwatch", "g"),))


def _set(path, layout, classes, n_subjects, per, seed):
    return window_set_file(path, layout, classes, n_subjects, per, seed)


@pytest.fixture
def two_sets(tmp_path):
    a = _set(tmp_path / "a.npz", WAIST, ["walking", "sitting", "lying"], 6, 40, 0)
    b = _set(tmp_path / "b.npz", WRIST, ["walking", "rowing"], 5, 12, 1)
    return a, b


def _cfg(stage, sources, **train):
    return resolve_config(stage, overrides={"data": {"sources": sources}, "train": {"label_text": "names", **train}})


def test_sources_merge_into_one_layout_with_namespaced_classes(two_sets):
    a, b = two_sets
    d = load_data(_cfg("stage2", [{"data": str(a)}, {"data": str(b)}]))
    assert [s.key for s in d.ws.layout.sensors] == [s.key for s in WAIST.sensors + WRIST.sensors]
    assert d.classes == ["a/walking", "a/sitting", "a/lying", "b/walking", "b/rowing"]
    assert class_text("b/walking") == class_text("a/walking") == "walking"
    # every window fills only its own source's slots, the others are zeros and absent
    pa, pb = d.parts
    assert d.present[pa.rows].tolist() == [[True, True, False]] * len(pa.rows)
    assert d.present[pb.rows].tolist() == [[False, False, True]] * len(pb.rows)
    assert not d.ws.X[pa.rows][:, 6:].any() and not d.ws.X[pb.rows][:, :6].any()
    assert np.array_equal(d.ws.X[pb.rows][:, 6:9], WindowSet.load(b).X)
    # subjects are namespaced: train / val / test disjoint across and within sources
    s = d.subjects
    assert all(x.split("/")[0] in ("a", "b") for k in s for x in s[k])
    assert not (set(s["train"]) & set(s["val"])) and not (set(s["train"]) & set(s["test"]))
    for rows, k in ((d.train_idx, "train"), (d.val_idx, "val")):
        assert set(d.ws.subject[rows]) == set(s[k])


def test_balanced_sampling_follows_the_power_rule(two_sets):
    a, b = two_sets
    d = load_data(_cfg("stage2", [{"data": str(a)}, {"data": str(b)}]))
    sizes = [int((d.part_of[d.train_idx] == i).sum()) for i in range(2)]
    n = 1000
    q = d.quotas(n)
    expect = np.sqrt(sizes) / np.sqrt(sizes).sum() * n
    assert sum(q) == n and np.allclose(q, expect, atol=1)
    order = d.epoch_order(0, 0, n)
    got = np.bincount(d.part_of[d.train_idx[order]], minlength=2)
    assert got.tolist() == q
    assert np.array_equal(order, d.epoch_order(0, 0, n)) and not np.array_equal(order, d.epoch_order(0, 1, n))
    # balance 1: proportional to size; 0: equal shares
    d.balance = 1.0
    assert np.allclose(d.quotas(n), np.array(sizes) / sum(sizes) * n, atol=1)
    d.balance = 0.0
    assert d.quotas(n) == [500, 500]


def test_sensor_dropout_never_keeps_an_absent_sensor():
    rng = np.random.default_rng(0)
    present = rng.random((500, 4)) < 0.5
    present[np.arange(500), rng.integers(0, 4, 500)] = True
    keep = sensor_dropout_mask(500, 4, 0.6, rng, present=present)
    assert not (keep & ~present).any() and keep.any(1).all()
    assert (keep.sum() < present.sum())  # some present sensors were dropped
    assert np.array_equal(sensor_dropout_mask(500, 4, 0.0, rng, present=present), present)


def test_cli_dataset_list_becomes_sources(tmp_path, capsys):
    args = build_parser().parse_args(["stage1", "--dataset", "hapt, shoulder"])
    assert overrides_from_args(args)["data"] == {"sources": [{"dataset": "hapt"}, {"dataset": "shoulder"}]}
    cfg = resolve_config("stage1", overrides=overrides_from_args(args))
    assert cfg.data.dataset is None and cfg.data.fold is None and len(cfg.data.sources) == 2
    assert split_sources("a,,b") == ["a", "b"]
    # a fold names one dataset's classes: refused with several
    assert main(["stage1", "--dataset", "hapt,shoulder", "--fold", "fold1", "--out", str(tmp_path / "r")]) == 2
    assert "--fold names one dataset's file or fold" in capsys.readouterr().err
    # --root: the folder that holds each dataset's folder
    assert main(["stage1", "--dataset", "hapt,shoulder", "--root", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert "no folder" in capsys.readouterr().err
    with pytest.raises(ZeroharError, match="more than once"):
        resolve_config("stage1", overrides={"data": {"sources": ["hapt", "hapt"]}})
    with pytest.raises(ZeroharError, match="unknown keys"):
        resolve_config("stage1", overrides={"data": {"sources": [{"dataset": "hapt", "colour": 1}, "shoulder"]}})


def test_pretraining_on_several_sources_sees_triads(two_sets):
    a, b = two_sets
    d = load_data(resolve_config("pretrain", overrides={"data": {"sources": [{"data": str(a)}, {"data": str(b)}]}}))
    # one acc slot: each window's accelerometer becomes one row, whatever its placement
    assert d.ws.layout.n_sensors == 1 and d.present.all()
    assert len(d.ws) == len(WindowSet.load(a)) + len(WindowSet.load(b))


def test_train_on_two_sets_then_evaluate_on_a_third(tmp_path, two_sets, capsys):
    a, b = two_sets
    c = _set(tmp_path / "c.npz", SensorLayout((Sensor("acc", "ankle", "IMU", "g"),)), ["walking", "cycling"], 3, 10, 2)
    small = ["--set", "train.label_text=names", "--set", "train.max_steps=2", "--set", "train.eval_every=1",
             "--set", "train.min_steps=1", "--batch-size", "8", "--no-progress"]
    s1, s2 = tmp_path / "s1", tmp_path / "s2"
    assert main(["stage1", "--data", str(a), str(b), "--out", str(s1), *small]) == 0
    assert main(["stage2", "--data", str(a), str(b), "--stage1", str(s1), "--out", str(s2), *small]) == 0
    meta = json.loads((s2 / "model.json").read_text())["extra"]
    assert [s["name"] for s in meta["sources"]] == ["a", "b"]
    assert set(meta["saw"]) == {str(a), str(b)}
    metrics = json.loads((s2 / "metrics.json").read_text())
    assert {"val_acc/a", "val_acc/b"} <= set(metrics["history"][-1]["val"])
    capsys.readouterr()
    assert main(["eval", "--run", str(s2), "--candidates", "all", "--data", str(c), "--label-text", "names",
                 "--out", str(tmp_path / "ev"), "--no-progress"]) == 0
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["protocol"] == "cross-dataset" and m["class_order"] == ["walking", "cycling"] and m["n_windows"] == 30
    assert m["target"]["sensors"] == ["acc at ankle (IMU)"]
    # a source the model trained on is not cross-dataset
    assert main(["eval", "--run", str(s2), "--candidates", "all", "--data", str(a), "--out",
                 str(tmp_path / "ev2"), "--no-progress"]) == 2
    assert "needs a model that never saw" in capsys.readouterr().err


def test_cross_dataset_protocol_trains_on_the_others(tmp_path, two_sets):
    a, b = two_sets
    sets = {"train": {"label_text": "names", "max_steps": 1, "eval_every": 1, "min_steps": 1, "batch_size": 8}}
    (tmp_path / "res" / "b").mkdir(parents=True)
    (tmp_path / "res" / "b" / "results.csv").write_text(
        "method,accuracy_mean,macro_f1_mean,top2_accuracy_mean\nzerohar,0.5,0.4,0.9\nsupervised,0.9,0.8,1.0\n")
    agg = benchmark_cross([str(a), str(b)], tmp_path / "bench", seeds=1, sets=sets, results_dir=tmp_path / "res",
                          progress=False)
    # each target's models never saw it
    for target, other in (("a", b), ("b", a)):
        meta = json.loads((tmp_path / "bench" / "runs" / target / "seed0" / "stage2" / "model.json").read_text())
        assert list(meta["extra"]["saw"]) == [str(other)]
    got = {(r["target"], r["method"]): r for r in agg}
    assert got["b", "chance"]["accuracy_mean"] == 0.5 and got["a", "chance"]["accuracy_mean"] == pytest.approx(1 / 3)
    assert got["b", "within"]["macro_f1_mean"] == 0.4 and got["a", "within"]["macro_f1_mean"] is None
    assert {m for _, m in got} == {"chance", "zerohar", "no_stage1", "label_names", "within", "supervised"}
    assert "## b" in (tmp_path / "bench" / "results.md").read_text()
    rows = (tmp_path / "bench" / "runs.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 4  # per target: zerohar, label_names, chance, no_stage1


def test_cross_dataset_protocol_with_a_pretrained_backbone(tmp_path, two_sets):
    """--backbone-weights starts every run of the cross-dataset protocol from that backbone, and a backbone
    that saw a target is refused before anything trains."""
    a, b = two_sets
    bb = tmp_path / "bb"
    assert main(["pretrain", "--data", str(a), "--set", "train.max_steps=1", "--set", "train.eval_every=1",
                 "--set", "train.min_steps=1", "--batch-size", "8", "--out", str(bb), "--no-progress"]) == 0
    sets = {"train": {"label_text": "names", "max_steps": 1, "eval_every": 1, "min_steps": 1, "batch_size": 8}}
    with pytest.raises(ZeroharError, match="pretrained on .*a.npz, a target"):
        benchmark_cross([str(a), str(b)], tmp_path / "refused", seeds=1, sets=sets, targets=[str(a)],
                        backbone_init=bb, results_dir=tmp_path / "res", progress=False)
    assert not (tmp_path / "refused" / "runs").exists()
    with pytest.raises(ZeroharError, match="--methods must be among zerohar, no_stage1"):
        benchmark_cross([str(a), str(b)], tmp_path / "refused", seeds=1, sets=sets, methods=["supervised"])
    benchmark_cross([str(a), str(b)], tmp_path / "bench", seeds=1, sets=sets, targets=[str(b)], backbone_init=bb,
                    results_dir=tmp_path / "res", progress=False)
    runs = tmp_path / "bench" / "runs" / "b" / "seed0"
    s1 = yaml.safe_load((runs / "stage1" / "config.yaml").read_text())
    no_s1 = yaml.safe_load((runs / "stage2-no-stage1" / "config.yaml").read_text())
    assert s1["init"] == str(bb) and no_s1["backbone_init"] == str(bb) and no_s1["init"] is None
