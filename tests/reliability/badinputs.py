"""Tiny inputs for the reliability cases: a good recording, and ways to spoil it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from helpers import SUBJECTS, TINY_MODEL

HEADER = ["time", "acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]
RATE = 30.0


def signal(n: int, rate: float = RATE, seed: int = 0) -> np.ndarray:
    """`(n, 6)`: an accelerometer in g with gravity on z and moderate motion, and a gyroscope in rad/s."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate
    f = rng.uniform(0.5, 2.0, size=6)
    x = np.sin(2 * np.pi * f * t[:, None]) * np.array([0.3, 0.3, 0.3, 1.5, 1.5, 1.5])
    x += 0.02 * rng.normal(size=(n, 6))
    x[:, 2] += 1.0
    return x


def csv_text(n: int = 600, rate: float = RATE, *, t0: float = 100.0, x: np.ndarray | None = None,
             times: np.ndarray | None = None, header: list[str] | None = None, label: str | None = "walking",
             delim: str = ",", datetimes: bool = False) -> str:
    """A CSV recording: time column (seconds, or ISO datetimes from 2024-03-01), six channels, optionally a label
    column."""
    x = signal(n, rate) if x is None else x
    t = t0 + np.arange(len(x)) / rate if times is None else times
    if datetimes:
        stamps = (np.datetime64("2024-03-01T10:00:00") + (np.asarray(t) * 1e6).astype("timedelta64[us]"))
        shown = [str(v) for v in stamps]
    else:
        shown = [f"{ti:.6f}" for ti in t]
    header = list(header or HEADER) + (["label"] if label is not None else [])
    rows = [delim.join([ti, *(f"{v:.5g}" for v in xi)] + ([label] if label is not None else []))
            for ti, xi in zip(shown, x)]
    return delim.join(header) + "\n" + "\n".join(rows) + "\n"


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def layout_yaml(channels: list[dict] | None = None, name: str = "mine", **top) -> str:
    """A layout file (YAML flow style is JSON)."""
    if channels is None:
        channels = [{"column": f"{s}_{a}", "sensor": s, "axis": a, "placement": "waist", "device": "phone",
                     "unit": u} for s, u in (("acc", "g"), ("gyro", "rad/s")) for a in "xyz"]
    return json.dumps({"name": name, "channels": channels, **top})


def tiny_config(stage: str = "stage1") -> str:
    """A settings file (YAML) for a training run of a second or two: three embedded HAPT subjects, a tiny model,
    one step per epoch."""
    model = {"backbone": "harnet5"} if stage == "pretrain" else TINY_MODEL
    return json.dumps({
        "data": {"dataset": "hapt", "subjects": SUBJECTS},
        "model": model,
        "train": {"epochs": 2, "batch_size": 8, "max_steps_per_epoch": 1, "val_fraction": 0.34,
                  "max_val_windows": 24},
    })


def nested_json(depth: int) -> str:
    return "[" * depth + "]" * depth


def nested_yaml(depth: int) -> str:
    return "a: " + "[" * depth + "]" * depth + "\n"
