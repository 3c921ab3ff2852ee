"""Stage II with a label map (`data.label_map`): near-synonyms of two sources train as one text row, with both
sources' texts, and the model records the map; without the map they are two rows."""

from __future__ import annotations

import numpy as np

from zerohar.config import resolve_config
from zerohar.data.layout import Sensor, SensorLayout
from zerohar.data.windows import WindowSet
from zerohar.train.distributed import Dist
from zerohar.train.stage2 import Stage2Task


def _set(path, placement, classes, seed):
    rng = np.random.default_rng(seed)
    layout = SensorLayout((Sensor("acc", placement, "IMU", "g"),))
    n = 5 * 12
    return WindowSet(rng.normal(size=(n, 3, 150)).astype(np.float32), np.arange(n) % len(classes),
                     np.repeat([f"s{i}" for i in range(5)], 12), list(classes), layout,
                     recording=np.repeat(np.arange(5), 12), start=np.tile(np.arange(12) * 2.5, 5),
                     meta={"dataset": None}).save(path)


def test_mapped_classes_share_one_text_row_and_the_model_records_the_map(tmp_path):
    a = _set(tmp_path / "a.npz", "waist", ["walking forward", "lying"], 0)
    b = _set(tmp_path / "b.npz", "wrist", ["walking", "rowing"], 1)
    m = tmp_path / "map.yaml"
    m.write_text("a/walking forward: walking\n")

    def task(label_map):
        data = {"sources": [{"data": str(a)}, {"data": str(b)}], "label_map": label_map}
        return Stage2Task(resolve_config("stage2", overrides={"data": data, "train": {"label_text": "names"}}), Dist())

    plain = task(None)
    ids = [plain.data.classes.index("a/walking forward"), plain.data.classes.index("b/walking")]
    assert len(plain.text_labels) == 4 and plain.row_of_id[ids[0]] != plain.row_of_id[ids[1]]
    t = task(str(m))
    assert t.text_labels == ["walking", "lying", "rowing"]
    assert t.row_of_id[ids[0]] == t.row_of_id[ids[1]]  # one target: positives of each other, never negatives
    assert t.n_desc[t.text_labels.index("walking")] == 2  # both sources' texts ("walking forward", "walking")
    meta = t.metadata()
    assert meta["label_map"] == {"a/walking forward": "walking"} and meta["label_map_file"] == str(m)
    assert plain.metadata()["label_map"] == {}
