"""Helpers shared by test modules (importable: pytest puts tests/ on sys.path through tests/conftest.py)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from zerohar.config import Config, ModelConfig, resolve_config
from zerohar.data import actipy_stream
from zerohar.data.folds import load_folds
from zerohar.data.layout import UNITS, Channel, SensorLayout
from zerohar.data.sources import embedded
from zerohar.data.windows import WindowSet
from zerohar.model.zerohar import ZeroHARModel
from zerohar.paths import metadata_dir
from zerohar.train import stage1 as tasks

#: A tiny model (the original encoder at width 32): each training run on the embedded data takes a second or two.
TINY_MODEL = {"encoder": "original", "embed_dim": 32, "d_model": 32, "n_heads": 2, "orig_d_model": 32,
              "orig_layers": 1, "dropout": 0.0}
#: Three subjects of the embedded HAPT data.
SUBJECTS = ["01", "02", "03"]


def tiny_cfg(stage: str, data: dict | None = None, model: dict | None = None, **train):
    """A resolved config for `stage` on three embedded HAPT subjects, a tiny model and two steps."""
    over = {
        "data": {"dataset": "hapt", "fold": "fold1", "subjects": SUBJECTS, **(data or {})},
        "model": {**TINY_MODEL, **(model or {})},
        "train": {"epochs": 1, "batch_size": 8, "max_steps_per_epoch": 2, "val_fraction": 0.34,
                  "max_val_windows": 48, **train},
    }
    if stage == "pretrain":
        over["model"] = {"backbone": "harnet5"}
        if "fold" not in (data or {}):  # pretraining sees every class unless a fold is asked for
            over["data"]["fold"] = None
    return resolve_config(stage, overrides=over)


def layout_of(*specs) -> SensorLayout:
    """specs: (sensor, placement, device) triads, canonical units."""
    chans = [Channel(s, a, p, d, UNITS[s][0]) for s, p, d in specs for a in ("x", "y", "z")]
    return SensorLayout.from_channels(chans)


def signal_of(t: np.ndarray, seed: int = 0) -> np.ndarray:
    """`(len(t), 6)` smooth random signal with gravity on the third channel (an accelerometer in g + a gyro)."""
    rng = np.random.default_rng(seed)
    f = rng.uniform(0.2, 3.0, size=6)
    x = np.sin(2 * np.pi * f * t[:, None]) + 0.05 * rng.normal(size=(len(t), 6))
    x[:, 2] += 1.0  # gravity on z, so the unit check sees an accelerometer in g
    return x


def randomise_bn(net: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters, so BN folding is really exercised."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return net


def untrained_run(d, *, stage: str = "stage2", subjects: list[str] | None = None, split: dict | None = None,
                  label_text: str = "descriptions", seed: int = 0, metrics: dict | None = None,
                  model: dict | None = None):
    """A finished run directory of HAPT fold1 holding a tiny random-init model (no training): for evaluation,
    classify and the demo, which must use a run, not train one.

    Args:
        subjects: `data.subjects` of its config (None: every subject).
        split: its recorded subject split (default: none recorded).
        metrics: the content of its metrics.json (default: just finished).
        model: ModelConfig fields over the default (e.g. :data:`TINY_MODEL`: loads in milliseconds).
    """
    import json

    torch.manual_seed(seed)
    mcfg = ModelConfig(**{"embed_dim": 32, "d_model": 32, "n_layers": 1, "n_heads": 2, "orig_d_model": 32,
                          **(model or {})})
    cfg = Config(stage=stage, model=mcfg)
    cfg.data.dataset, cfg.data.fold = "hapt", "fold1"
    cfg.data.subjects = list(subjects) if subjects is not None else None
    cfg.train.label_text = label_text
    folds = load_folds("hapt")
    layout = SensorLayout.from_yaml(metadata_dir() / "sensors" / "hapt.yaml").canonical()
    meta = {"stage": stage, "dataset": "hapt", "fold": "fold1", "classes": list(folds.classes),
            "seen": folds.seen("fold1"), "unseen": folds.unseen("fold1"), "layout": layout.to_dict(),
            "window_s": 5.0, "subjects": split or {"train": [], "val": [], "test": []}, "label_text": label_text}
    ZeroHARModel(mcfg).save_pretrained(d, extra=meta)
    cfg.save(d / "config.yaml")
    (d / "metrics.json").write_text(json.dumps(metrics or {"finished": True}))
    return d


def scripted_validation(monkeypatch, scores):
    """Stage I validations that report `scores` (in turn) as their channel accuracy: for early-stopping tests."""
    scores = iter(scores)
    real = tasks.Stage1Task.validate

    def scripted(self, model, bf16):
        r = real(self, model, bf16)
        r["channel_acc"] = next(scores)
        return r

    monkeypatch.setattr(tasks.Stage1Task, "validate", scripted)


def hapt_subset(shared, tmp, experiments: list[int]):
    """A RawData/ folder with a few experiments of the real HAPT release (and its full labels.txt)."""
    import shutil

    raw = tmp / "hapt" / "RawData"
    raw.mkdir(parents=True)
    for p in (shared / "hapt" / "RawData").glob("*_exp*_user*.txt"):
        if int(p.name.split("_exp")[1][:2]) in experiments:
            shutil.copy(p, raw / p.name)
    shutil.copy(shared / "hapt" / "RawData" / "labels.txt", raw / "labels.txt")
    return tmp / "hapt"


def fake_device_parser(monkeypatch, time_ns: np.ndarray, columns: dict, rate: float, read_errors: int = 0) -> None:
    """Replace actipy's Java parser (:func:`zerohar.data.actipy_stream.parse`) by one that streams `columns`
    (`x`, `y`, `z`, optionally `gyro_*`, `temperature`) with times `time_ns` (int64 ns of the device clock),
    8,192 rows at a time as the parser does, and reports `rate`: a device file of any content, without Java."""
    def parse(path, workdir, errors):
        for a in range(0, len(time_ns), 8192):
            yield {"time": np.asarray(time_ns[a : a + 8192], dtype=np.int64),
                   **{k: np.asarray(v[a : a + 8192], dtype=np.float32) for k, v in columns.items()}}
        return {"ReadOK": 1, "ReadErrors": read_errors, "SampleRate": rate}

    monkeypatch.setattr(actipy_stream, "parse", parse)


def hapt_recording_csv(path, seconds: float, t0: float = 0.0):
    """The first `seconds` of the first embedded (real) HAPT recording as a user's CSV: `time` (seconds from
    `t0`), then acc_x ... gyro_z at the waist."""
    import numpy as np

    rec = embedded.read(progress=False)[0]
    n = int(seconds * rec.rate)
    t = t0 + np.arange(n) / rec.rate
    rows = "\n".join(",".join(f"{v:.5f}" for v in (ti, *xi)) for ti, xi in zip(t, rec.signals[:n].astype(float)))
    path.write_text("time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z\n" + rows + "\n")
    return path


def window_set_file(path, layout, classes, n_subjects: int, per: int, seed: int, cyclic_labels: bool = False):
    """A saved random WindowSet: `n_subjects` subjects with one recording of `per` windows each (2.5 s apart);
    labels random, or cycling through `classes` (`cyclic_labels`: every class present for every subject)."""
    rng = np.random.default_rng(seed)
    n = n_subjects * per
    y = np.arange(n) % len(classes) if cyclic_labels else rng.integers(0, len(classes), n)
    X = rng.normal(size=(n, layout.n_channels, 150)).astype(np.float32)
    ws = WindowSet(X, y, np.repeat([f"s{i}" for i in range(n_subjects)], per), list(classes), layout,
                   recording=np.repeat(np.arange(n_subjects), per), start=np.tile(np.arange(per) * 2.5, n_subjects),
                   meta={"dataset": None})
    return ws.save(path)
