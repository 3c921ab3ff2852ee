""""None of these": the threshold a run stores and what classify does with it."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from helpers import signal_of, tiny_cfg, untrained_run

from zerohar.errors import ZeroharError
from zerohar.inference.classify import classify_recording
from zerohar.train.loop import train_stage
from zerohar.train.runs import load_run
from zerohar.train.unknown import UNKNOWN_FRACTION, unknown_threshold

LABELS = ["walking", "sitting", "lying"]


def test_threshold_is_a_fraction_of_the_held_out_median_best_score():
    got = unknown_threshold(np.array([0.2, 0.5, 0.6, np.nan, 0.9]))
    assert got["median_best_score"] == pytest.approx(0.55)
    assert got["threshold"] == pytest.approx(UNKNOWN_FRACTION * 0.55)
    assert got["windows"] == 4 and "0.4 x the median" in got["rule"]
    assert unknown_threshold(np.array([])) is None
    assert unknown_threshold(np.array([-0.3, -0.1]))["threshold"] == 0.0  # never negative


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same tiny run three times: no threshold, a threshold above every cosine, one below every cosine."""
    base = untrained_run(tmp_path_factory.mktemp("run") / "none")
    out = {"none": base}
    for name, t in (("all", 2.0), ("never", -2.0)):
        d = base.parent / name
        shutil.copytree(base, d)
        meta = json.loads((d / "model.json").read_text())
        meta.setdefault("extra", meta)["unknown"] = {"threshold": t, "rule": f"test threshold {t}"}
        (d / "model.json").write_text(json.dumps(meta))
        out[name] = d
    return out


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    n = 30 * 30
    t = np.arange(n) / 30.0
    p = tmp_path_factory.mktemp("rec") / "rec.csv"
    rows = "\n".join(",".join(f"{v:.5f}" for v in (ti, *xi)) for ti, xi in zip(t, signal_of(t).astype(float)))
    p.write_text("time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z\n" + rows + "\n")
    return p


def _labels(run, rec, out, **kw):
    classify_recording(run, rec, out, labels=LABELS, placement="waist", device="smartphone", top_k=2,
                       progress=False, precision="fp32", **kw)
    with open(out, newline="") as f:
        return list(csv.DictReader(f))


def test_windows_below_the_threshold_are_unknown_with_their_best_candidate_second(runs, recording, tmp_path):
    plain = _labels(runs["none"], recording, tmp_path / "none.csv")
    assert {r["label"] for r in plain} <= set(LABELS)  # a run without a threshold names every window
    low = _labels(runs["all"], recording, tmp_path / "all.csv")
    assert {r["label"] for r in low} == {"unknown"}
    assert [r["label_2"] for r in low] == [r["label"] for r in plain]  # the best candidate moves to label_2
    assert [r["score"] for r in low] == [r["score"] for r in plain]
    assert _labels(runs["all"], recording, tmp_path / "off.csv", unknown=False) == plain  # --no-unknown
    assert _labels(runs["never"], recording, tmp_path / "never.csv") == plain


def test_a_candidate_named_unknown_is_refused(runs, recording, tmp_path):
    with pytest.raises(ZeroharError, match="'unknown' is the label zerohar gives"):
        classify_recording(runs["all"], recording, tmp_path / "x.csv", labels=["walking", "unknown"],
                           placement="waist", device="smartphone", progress=False)
    assert not (tmp_path / "x.csv").exists()


def test_a_stage2_run_stores_its_threshold(tmp_path):
    out = train_stage("stage2", tiny_cfg("stage2"), tmp_path / "s2", progress=False)
    cal = load_run(out, load_model=False).meta["unknown"]
    assert cal["windows"] > 0 and 0 <= cal["threshold"] == pytest.approx(UNKNOWN_FRACTION * cal["median_best_score"])
