"""Stage I's validation metric (channel retrieval)."""

from __future__ import annotations

import numpy as np
import pytest

from zerohar.data.layout import Sensor, SensorLayout
from zerohar.train.stage1 import channel_retrieval_report


def test_channel_retrieval_report_counts_kind_and_axis():
    layout = SensorLayout((Sensor("acc", "waist", "phone", "g"), Sensor("gyro", "waist", "phone", "rad/s")))
    truth = np.arange(6)
    pred = np.array([[0, 1, 2, 3, 4, 5], [1, 1, 2, 3, 4, 2]])  # window 2: acc_x -> acc_y, gyro_z -> acc_z
    r = channel_retrieval_report(pred, truth, layout.channels)
    assert r["channel_acc"] == pytest.approx(10 / 12)
    assert r["kind_acc"] == pytest.approx(11 / 12)  # only gyro_z -> acc_z has the wrong kind
    assert r["axis_acc"] == pytest.approx(11 / 12)  # only acc_x -> acc_y has the wrong axis
    assert r["acc_acc"] == pytest.approx(5 / 6) and r["gyro_acc"] == pytest.approx(5 / 6)
    assert r["channel/acc_x"] == 0.5 and r["channel/gyro_y"] == 1.0
