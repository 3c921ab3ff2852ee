"""Stage II's own parts: sensor dropout through the model's sensor mask."""

from __future__ import annotations

import numpy as np
import torch
from helpers import tiny_cfg

from zerohar.model.zerohar import ZeroHARModel
from zerohar.train.distributed import Dist
from zerohar.train.registry import make_task
from zerohar.train.stage2 import sensor_dropout_mask


def test_sensor_dropout_drops_whole_sensors_and_keeps_at_least_one():
    rng = np.random.default_rng(0)
    keep = sensor_dropout_mask(4000, 3, 0.3, rng)
    assert keep.shape == (4000, 3) and keep.any(axis=1).all()
    assert abs((~keep).mean() - 0.3) < 0.03  # ~the rate (a little less: a window keeps at least one)
    always = sensor_dropout_mask(100, 2, 0.99, np.random.default_rng(1))
    assert (always.sum(axis=1) == 1).all()  # all would be dropped: one is kept, drawn at random
    assert 0 < always[:, 0].sum() < 100
    assert sensor_dropout_mask(10, 1, 0.5, rng) is None  # one sensor: nothing to drop
    assert sensor_dropout_mask(10, 2, 0.0, rng) is None


def test_stage2_batches_carry_the_mask_into_the_model(monkeypatch):
    task = make_task(tiny_cfg("stage2", sensor_dropout=0.5), Dist())
    assert len(task.layout.sensors) == 2  # HAPT: accelerometer and gyroscope
    idx = np.arange(8)
    batch = task.make_batch(idx, (0, 8), np.random.default_rng(0), torch.device("cpu"))
    mask = batch["sensor_mask"]
    assert mask.shape == (8, 2) and mask.dtype == torch.bool and mask.any(dim=1).all() and not mask.all()
    again = task.make_batch(idx, (4, 8), np.random.default_rng(0), torch.device("cpu"))
    assert torch.equal(again["sensor_mask"], mask[4:])  # drawn for the global batch, then sliced
    seen = {}
    real = ZeroHARModel.encode_windows

    def spy(self, x, context, sensor_mask=None, *args, **kwargs):
        seen["mask"] = sensor_mask
        return real(self, x, context, sensor_mask, *args, **kwargs)

    monkeypatch.setattr(ZeroHARModel, "encode_windows", spy)
    task.forward(task.model, batch)
    assert torch.equal(seen["mask"], mask)
    off = make_task(tiny_cfg("stage2", sensor_dropout=0.0), Dist())
    assert "sensor_mask" not in off.make_batch(idx, (0, 8), np.random.default_rng(0), torch.device("cpu"))


def test_negatives_all_contrasts_every_trained_label_at_every_step():
    idx = np.arange(4)
    batch_only = make_task(tiny_cfg("stage2"), Dist())
    every = make_task(tiny_cfg("stage2", negatives="all"), Dist())
    b = batch_only.make_batch(idx, (0, 4), np.random.default_rng(0), torch.device("cpu"))
    a = every.make_batch(idx, (0, 4), np.random.default_rng(0), torch.device("cpu"))
    labels = set(batch_only.y[batch_only.train_idx[idx]].tolist())
    assert len(b["text_rows"]) == len(labels) < every.n_trained_rows  # 4 windows cannot hold every label
    assert a["text_rows"].tolist() == list(range(every.n_trained_rows))
    # the targets point at each window's own label in either case
    for batch, task in ((a, every), (b, batch_only)):
        rows = batch["text_rows"][batch["targets"]].numpy()
        assert (rows == task.row_of_id[task.y[task.train_idx[idx]]]).all()
