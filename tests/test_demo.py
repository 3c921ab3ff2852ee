"""scripts/demo.py (`make demo`): the whole flow on tiny finished runs (reused, as on a second call), and pieces."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import untrained_run

from zerohar.data.layout import Channel, SensorLayout
from zerohar.data.sources import embedded
from zerohar.data.streaming import open_recording
from zerohar.data.windows import Recording
from zerohar.evaluation.benchmark import chance_metrics

DEMO = Path(__file__).resolve().parent.parent / "scripts" / "demo.py"


def _demo():
    spec = importlib.util.spec_from_file_location("zerohar_demo", DEMO)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _tiny_run(d: Path, stage: str, test_subjects: list[str]) -> Path:
    """A finished run holding a tiny random-init model: the demo must reuse it, not train. Evaluation on one
    (test) subject only: fast."""
    return untrained_run(d, stage=stage, subjects=test_subjects, label_text="descriptions",
                         split={"train": [], "val": ["08"], "test": list(test_subjects)},
                         metrics={"stage": stage, "finished": True, "timing": {"wall_time_s": 1.0}})


def test_demo_reuses_finished_runs_and_prints_the_results(tmp_path, capsys):
    out = tmp_path / "demo"
    s1 = _tiny_run(out / "stage1", "stage1", ["07"])
    s2 = _tiny_run(out / "stage2", "stage2", ["07"])
    stamps = [p.stat().st_mtime_ns for p in (s1 / "model.safetensors", s2 / "model.safetensors")]
    assert _demo().main(["--out", str(out), "--labels", "walking, lying ,standing", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert [p.stat().st_mtime_ns for p in (s1 / "model.safetensors", s2 / "model.safetensors")] == stamps
    assert f"reusing the finished run {s1} (trained with other settings: " in printed
    assert f"reusing the finished run {s2} (trained with other settings: " in printed
    m = json.loads((s2 / "eval" / "metrics.json").read_text())
    assert f"accuracy  {m['accuracy']:.3f}   (chance 0.250)" in printed
    support = [m["per_class"][c]["support"] for c in m["class_order"]]
    f1_chance = chance_metrics(np.repeat(np.arange(4), support), 4, 12)["macro_f1"]
    assert f1_chance < 0.25  # uneven classes: uniform guessing scores below 1/4 in macro-F1
    assert f"macro-F1  {m['macro_f1']:.3f}   (chance {f1_chance:.3f}, uniform guessing)" in printed
    assert "labels as candidates (GZSL, calibrated stacking): seen " in printed
    # The recording classified is one of a test subject, written as a CSV with the time column first.
    (rec_csv,) = out.glob("recording_*.csv")
    assert "user07" in rec_csv.name
    assert "(subject 07, a test subject: never trained or selected on)" in printed
    assert rec_csv.read_text().split("\n", 1)[0] == "time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z"
    with open(out / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["label"] for r in rows} <= {"walking", "lying", "standing"}
    assert "timeline (" in printed
    # Step 0: the shipped general model, on a HAPT test subject of its own, with the same label text
    assert "[0/5] The general model (shipped, no training)" in printed
    with open(out / "general_labels.csv", newline="") as f:
        assert {r["label"] for r in csv.DictReader(f)} <= {"walking", "lying", "standing", "unknown"}
    first = next(line for line in printed.splitlines() if line.startswith("  00:00:00-"))
    assert rows[0]["label"] in first and "(true: " in first
    assert printed.rstrip().splitlines()[-1].startswith("Next: ")


def test_the_example_recording_is_a_test_subjects_and_says_what_it_is():
    from types import SimpleNamespace

    demo = _demo()
    recs = [SimpleNamespace(subject=s, name=f"r{s}") for s in ("01", "02", "03")]
    rec, role = demo._example_recording({"train": ["01"], "val": ["02"], "test": ["03"]}, recs)
    assert rec.subject == "03" and role.startswith("a test subject")
    rec, role = demo._example_recording({"train": ["01"], "val": ["02"], "test": []}, recs)
    assert rec.subject == "02" and "a validation subject" in role and "chose the checkpoint" in role
    rec, role = demo._example_recording({"train": ["01"], "val": [], "test": []}, recs)
    assert rec.subject == "01" and "a training subject" in role


def test_recording_csv_round_trips_through_the_csv_reader(tmp_path):
    demo = _demo()
    rec = embedded.read(progress=False)[0]
    rec.signals, rec.labels = rec.signals[:300], rec.labels[:300]
    demo._write_recording_csv(rec, tmp_path / "r.csv")
    opened = open_recording(tmp_path / "r.csv", placement="waist", device="smartphone")
    t, x, _ = next(iter(opened.chunks))
    np.testing.assert_allclose(t, np.arange(300) / 30.0, atol=1e-4)
    np.testing.assert_allclose(x, rec.signals, atol=1e-5)
    assert [p.name for p in tmp_path.iterdir()] == ["r.csv"]


def test_true_label_is_the_majority_of_the_span():
    demo = _demo()
    lay = SensorLayout.from_channels([Channel("acc", a, "waist", "phone", "g") for a in "xyz"])
    labels = np.array([-1] * 30 + [2] * 40 + [0] * 20)
    rec = Recording(np.zeros((90, 3)), lay, labels, "1", rate=30.0)
    assert demo._true_label(rec, ["a", "b", "c"], 0.0, 3.0) == "c"
    assert demo._true_label(rec, ["a", "b", "c"], 0.0, 0.9) == "-"


@pytest.mark.slow
def test_demo_from_scratch_beats_chance(tmp_path, capsys):
    """The real demo (Stage I + Stage II training, minutes): its zero-shot macro-F1 is above chance."""
    out = tmp_path / "demo"
    assert _demo().main(["--out", str(out), "--no-progress"]) == 0
    m = json.loads((out / "stage2" / "eval" / "metrics.json").read_text())
    assert m["macro_f1"] > m["chance"]
    assert "Next: " in capsys.readouterr().out
