"""RelCon pretraining end to end on the embedded HAPT data: the motif-distance run, then the RelCon run whose
backbone loads like any pretrained one; candidate sampling, the alignment of distances and candidates, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import window_set_file

from zerohar.config import resolve_config
from zerohar.data.layout import Sensor, SensorLayout
from zerohar.errors import ZeroharError
from zerohar.losses.relcon import relative_contrastive_loss
from zerohar.model.motif import MOTIF_FORMAT
from zerohar.model.pretrained import BACKBONE_FORMAT, load_backbone
from zerohar.train.base import step_rng
from zerohar.train.distributed import Dist
from zerohar.train.loop import train_stage
from zerohar.train.registry import make_task
from zerohar.train.relcon import RelConTask, WithinCandidates, candidate_index

SUBJECTS = ["01", "02", "03"]
K = 4


def tiny_cfg(method: str, **train):
    over = {
        "data": {"dataset": "hapt", "fold": None, "subjects": SUBJECTS},
        "model": {"backbone": "harnet5"},
        "train": {"epochs": 1, "batch_size": 8, "max_steps_per_epoch": 2, "val_fraction": 0.34,
                  "max_val_windows": 32, "pretrain_method": method, "relcon_within_cands": K, **train},
    }
    return resolve_config("pretrain", overrides=over)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("relcon")
    motif = train_stage("pretrain", tiny_cfg("motif-distance"), base / "motif", progress=False)
    relcon = train_stage("pretrain", tiny_cfg("relcon", relcon_distance=str(motif)), base / "relcon", progress=False)
    return motif, relcon


def test_motif_distance_run_is_its_own_artefact(runs):
    motif, _ = runs
    j = json.loads((motif / "model.json").read_text())
    assert j["format"] == MOTIF_FORMAT and j["config"]["attention"] == "released"  # the default
    e = j["extra"]
    assert e["pretrain_method"] == "motif-distance" and e["dataset"] == "hapt" and e["fold"] is None
    assert set(e["subjects"]["train"]) | set(e["subjects"]["val"]) | set(e["subjects"]["test"]) == set(SUBJECTS)
    assert e["subjects"]["test"] and e["zerohar_version"]  # pretraining holds out the test subjects too
    assert e["classes"] and e["selection_metric"] == "aug_top1"
    m = json.loads((motif / "metrics.json").read_text())
    val = m["best"]["val"]
    assert m["finished"] and 0.0 <= val["aug_top1"] <= 1.0 and 0.0 < val["chance_top1"] < 0.2
    with pytest.raises(ZeroharError):
        load_backbone(motif)  # not a backbone


def test_relcon_run_gives_a_loadable_backbone(runs):
    motif, relcon = runs
    j = json.loads((relcon / "model.json").read_text())
    assert j["format"] == BACKBONE_FORMAT and j["variant"] == "harnet5"
    e = j["extra"]
    assert e["pretrain_method"] == "relcon" and e["motif_distance"]["run"] == str(motif)
    assert e["motif_distance"]["subjects"] == json.loads((motif / "model.json").read_text())["extra"]["subjects"]
    net = load_backbone(relcon).eval()
    with torch.no_grad():
        assert net(torch.randn(2, 3, 150)).shape == (2, net.out_dim)
    m = json.loads((relcon / "metrics.json").read_text())
    val = m["best"]["val"]
    assert m["finished"] and m["selection_metric"] == "neg_relcon_loss"
    assert val["val_relcon_loss"] > 0 and -1.0 <= val["rank_corr"] <= 1.0
    assert np.isfinite(m["history"][0]["train_loss"])


def test_batch_distances_line_up_with_candidates(runs):
    motif, _ = runs
    task = make_task(tiny_cfg("relcon", relcon_distance=str(motif), relcon_batching="separate"), Dist())
    assert isinstance(task, RelConTask)
    b = task.make_batch(np.arange(5), (0, 5), step_rng(0, 0, 0), torch.device("cpu"))
    x, xw, d = b["x"], b["x_within"].reshape(5, K, 3, 150), b["dist"]
    assert d.shape == (5, 4 + K)
    with torch.no_grad():
        for i in (0, 3):
            for j in range(4):  # the other anchors in cyclic order i+1, i+2, ...
                want = task.motif.pair_distance(x[i : i + 1], x[(i + 1 + j) % 5][None])
                torch.testing.assert_close(d[i, j], want[0], rtol=1e-4, atol=1e-3)
            for k in range(K):
                want = task.motif.pair_distance(x[i : i + 1], xw[i, k][None])
                torch.testing.assert_close(d[i, 4 + k], want[0], rtol=1e-4, atol=1e-3)
    out = task.forward(task.model, b)
    loss = task.loss(out, b)
    loss.backward()
    assert torch.isfinite(loss) and task.model.backbone.layer1[0].weight.grad is not None
    assert not any(p.grad is not None for p in task.motif.parameters())  # the distance is frozen


def test_grouped_batches_are_groups_of_one_recording_and_distances_line_up(runs):
    motif, _ = runs
    task = make_task(tiny_cfg("relcon", relcon_distance=str(motif), relcon_group=4), Dist())
    assert task.grouped and task.k == 3
    n = 10  # 3 groups of 4, the last cut to 2
    seeds = task._seeds(np.arange(n))
    assert len(seeds) == 3
    it = task._items_grouped(seeds, n, step_rng(0, 0, 0))
    rows, x, d = it["rows"], it["x"], it["dist"]
    ws = task.data.ws
    assert len(rows) == n and x.shape == (n, 3, 150) and d.shape == (n, n - 1)
    assert rows[0] == seeds[0] and rows[4] == seeds[1] and rows[8] == seeds[2]
    for g in range(3):
        grp = rows[4 * g : 4 * g + 4]
        assert (ws.recording[grp] == ws.recording[grp[0]]).all()
        st = np.sort(ws.start[grp])
        assert (np.diff(st) >= 5.0 - 1e-9).all()  # no two windows of a group share a sample
        assert (np.abs(ws.start[grp] - ws.start[grp[0]]) <= task.cfg.train.relcon_within_s).all()
    others = candidate_index(n, 0)
    with torch.no_grad():
        for i in (0, 5, 9):
            for j in (0, 3, 8):
                want = task.motif.pair_distance(x[i : i + 1], x[others[i, j]][None])
                torch.testing.assert_close(d[i, j], want[0], rtol=1e-4, atol=1e-3)
    b = task.make_batch(np.arange(n), (0, n), step_rng(0, 0, 0), torch.device("cpu"))
    assert "x_within" not in b
    loss = task.loss(task.forward(task.model, b), b)
    loss.backward()
    assert torch.isfinite(loss) and task.model.backbone.layer1[0].weight.grad is not None
    # the same windows as a separate computation of the relative loss over the batch
    z = task.model(b["x"])
    torch.testing.assert_close(loss, relative_contrastive_loss(z, z[others], b["dist"], 0.1))


def test_group_draw_never_overlaps_and_counts_the_groups_it_could_not_separate():
    start = np.arange(12) * 2.5  # one recording, windows of 5 s every 2.5 s
    w = WithinCandidates(np.zeros(12, int), np.array(["s"] * 12), start, radius=100.0, window_s=5.0)
    rng = np.random.default_rng(0)
    for _ in range(20):
        got, short = w.sample_group(np.array([0]), 3, rng, start, 5.0)
        st = np.sort(np.concatenate([[0.0], start[got[0]]]))
        assert short == 0 and (np.diff(st) >= 5.0).all()
    # 3 windows, none overlapping the seed but two overlapping each other: one group must overlap
    start2 = np.array([0.0, 5.0, 7.5, 10.0])
    w2 = WithinCandidates(np.zeros(4, int), np.array(["s"] * 4), start2, radius=100.0, window_s=5.0)
    got, short = w2.sample_group(np.array([0]), 3, rng, start2, 5.0)
    assert short == 1 and sorted(got[0].tolist()) == [1, 2, 3]


def test_within_candidates_same_recording_nearby_not_overlapping():
    rec = np.array([0] * 10 + [1] * 5)
    start = np.concatenate([np.arange(10) * 2.5, np.arange(5) * 2.5])
    perm = np.random.default_rng(0).permutation(15)  # rows in any order
    w = WithinCandidates(rec[perm], np.array(["s"] * 15)[perm], start[perm], radius=10.0, window_s=5.0)
    row = int(np.where((rec[perm] == 0) & (start[perm] == 10.0))[0][0])
    assert w.count(np.array([row]))[0] == 6  # starts 0, 2.5, 5 and 15, 17.5, 20
    rng = np.random.default_rng(1)
    for _ in range(20):
        got = w.sample(np.array([row]), 6, rng)[0]
        assert sorted(start[perm][got]) == [0.0, 2.5, 5.0, 15.0, 17.5, 20.0]
        assert (rec[perm][got] == 0).all()
    one = {float(s): int(c) for s, c in zip(start[perm][rec[perm] == 1], w.count(np.where(rec[perm] == 1)[0]))}
    assert one == {0.0: 3, 2.5: 2, 5.0: 2, 7.5: 2, 10.0: 3}
    tight = WithinCandidates(rec, np.array(["s"] * 15), start, radius=2.0, window_s=5.0)
    assert (tight.count(np.arange(15)) == 0).all()


def test_candidate_index_is_cyclic_then_within():
    assert candidate_index(3, 2).tolist() == [[1, 2, 3, 4], [2, 0, 5, 6], [0, 1, 7, 8]]


def test_bad_settings_are_one_clear_error(runs, tmp_path):
    motif, relcon = runs
    with pytest.raises(ZeroharError, match="relcon_distance"):
        tiny_cfg("relcon")
    with pytest.raises(ZeroharError, match="pretrain_method"):
        tiny_cfg("simclr")
    with pytest.raises(ZeroharError, match="not a motif-distance run"):
        make_task(tiny_cfg("relcon", relcon_distance=str(relcon)), Dist())
    with pytest.raises(ZeroharError, match="does not exist"):
        make_task(tiny_cfg("relcon", relcon_distance=str(tmp_path / "nowhere")), Dist())
    with pytest.raises(ZeroharError, match="no training window has 1000"):
        make_task(tiny_cfg("relcon", relcon_distance=str(motif), relcon_within_cands=1000,
                           relcon_batching="separate"), Dist())
    with pytest.raises(ZeroharError, match="no training window has 1998 .*relcon_group"):
        make_task(tiny_cfg("relcon", relcon_distance=str(motif), relcon_group=1000), Dist())
    with pytest.raises(ZeroharError, match="relcon_batching"):
        tiny_cfg("relcon", relcon_distance=str(motif), relcon_batching="mixed")
    cfg = tiny_cfg("motif-distance")
    cfg.init = str(relcon)
    with pytest.raises(ZeroharError, match="motif-distance trains a new"):
        make_task(cfg, Dist())


def test_relcon_on_several_sources_draws_balanced_epochs_of_its_own_anchors(tmp_path):
    """The anchors are a subset of the training windows (too-short recordings drop out): the balanced epoch
    order of several sources must index the anchors, not the training windows."""
    waist = SensorLayout((Sensor("acc", "waist", "smartphone", "g"),))
    wrist = SensorLayout((Sensor("acc", "wrist", "smartwatch", "g"),))
    a = window_set_file(tmp_path / "a.npz", waist, ["walking", "sitting"], 5, 40, 0)
    b = window_set_file(tmp_path / "b.npz", wrist, ["rowing", "lying"], 5, 6, 1)  # 6 per recording: no anchors

    def cfg(method, **train):
        over = {"data": {"sources": [{"data": str(a)}, {"data": str(b)}]}, "model": {"backbone": "harnet5"},
                "train": {"epochs": 1, "batch_size": 16, "max_steps_per_epoch": 2, "val_fraction": 0.2,
                          "max_val_windows": 16,
                          "pretrain_method": method, "relcon_group": 4, **train}}
        return resolve_config("pretrain", overrides=over)

    motif = train_stage("pretrain", cfg("motif-distance"), tmp_path / "motif", progress=False)
    task = make_task(cfg("relcon", relcon_distance=str(motif)), Dist())
    assert 0 < task.n_train < len(task.data.train_idx)
    order = task.epoch_order(0, 0, task.n_train)
    assert len(order) == task.n_train and order.max() < task.n_train
    run = train_stage("pretrain", cfg("relcon", relcon_distance=str(motif)), tmp_path / "relcon", progress=False)
    assert json.loads((run / "metrics.json").read_text())["finished"]


def test_a_projection_head_is_trained_with_the_loss_and_left_out_of_the_backbone(runs, tmp_path):
    motif, _ = runs
    cfg = tiny_cfg("relcon", relcon_distance=str(motif), relcon_head="mlp")
    task = make_task(cfg, Dist())
    b = task.make_batch(np.arange(16), (0, 16), step_rng(0, 0, 0), torch.device("cpu"))
    out = task.forward(task.model, b)
    assert out["z"].shape == (len(b["x"]), 128)
    task.loss(out, b).backward()
    assert task.model.head[0].weight.grad is not None and task.model.backbone.layer1[0].weight.grad is not None
    run = train_stage("pretrain", cfg, tmp_path / "head", progress=False)
    assert json.loads((run / "model.json").read_text())["extra"]["relcon"]["head"] == "mlp"
    net = load_backbone(run).eval()  # the backbone alone, HARNet keys: the head stays behind
    with torch.no_grad():
        assert net(torch.randn(2, 3, 150)).shape == (2, 512)
    with pytest.raises(ZeroharError, match="relcon_head"):
        tiny_cfg("relcon", relcon_distance=str(motif), relcon_head="linear")
