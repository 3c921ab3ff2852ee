"""classify: a recording end to end through a tiny run: rows, steps, chunking, indexes, the command."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from helpers import hapt_recording_csv, layout_of, signal_of, untrained_run

from zerohar.cli import main
from zerohar.errors import ZeroharError
from zerohar.inference.classify import build_label_index, classify_recording
from zerohar.inference.index import LabelIndex

WAIST = layout_of(("acc", "waist", "smartphone"), ("gyro", "waist", "smartphone"))


# ---------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def hapt_csv(tmp_path_factory):
    """40 s of an embedded HAPT recording as a user would have it: a CSV with a time column first."""
    return hapt_recording_csv(tmp_path_factory.mktemp("rec") / "rec.csv", 40, t0=100.0)


def _read_csv(p):
    import csv

    with open(p, newline="") as f:
        return list(csv.DictReader(f))


def test_classify_writes_one_row_per_window_with_top_k(tiny_run, hapt_csv, tmp_path):
    labels = ["walking", "sitting", "rock climbing"]
    res = classify_recording(tiny_run, hapt_csv, tmp_path / "out.csv", labels=labels, placement="waist",
                             device="smartphone", top_k=2, progress=False)
    rows = _read_csv(tmp_path / "out.csv")
    assert res.n_windows == len(rows) == (40 * 30 - 150) // 75 + 1
    assert list(rows[0]) == ["start_s", "label", "score", "label_2", "score_2"]
    starts = np.array([float(r["start_s"]) for r in rows])
    np.testing.assert_allclose(starts, np.arange(len(rows)) * 2.5, atol=1e-3)  # from the first sample, not t=100
    assert {r["label"] for r in rows} | {r["label_2"] for r in rows} <= set(labels)
    assert all(float(r["score"]) >= float(r["score_2"]) for r in rows)
    assert all(r["label"] != r["label_2"] for r in rows)
    assert sum(res.seconds_per_label.values()) == pytest.approx((len(rows) - 1) * 2.5 + 5.0)
    assert not [p for p in tmp_path.iterdir() if p.name != "out.csv"], "temporary files left behind"


def test_step_sets_the_window_starts_and_bad_steps_are_refused(tiny_run, hapt_csv, tmp_path):
    kw = {"labels": ["walking", "sitting"], "placement": "waist", "device": "smartphone", "progress": False,
          "precision": "fp32"}
    half = classify_recording(tiny_run, hapt_csv, tmp_path / "half.csv", **kw)
    whole = classify_recording(tiny_run, hapt_csv, tmp_path / "whole.csv", step_s=5.0, **kw)
    assert whole.n_windows == (40 * 30 - 150) // 150 + 1 and whole.step_s == 5.0
    a, b = _read_csv(tmp_path / "half.csv"), _read_csv(tmp_path / "whole.csv")
    np.testing.assert_allclose([float(r["start_s"]) for r in b], np.arange(len(b)) * 5.0, atol=1e-3)
    assert [r["label"] for r in b] == [r["label"] for r in a[::2]]  # the same windows, every other one
    assert sum(whole.seconds_per_label.values()) == pytest.approx(len(b) * 5.0)
    assert half.n_windows > whole.n_windows
    for bad in (0.0, -1.0, 7.5):
        with pytest.raises(ZeroharError, match=r"--step must be more than 0 and at most the model's window \(5 s\)"):
            classify_recording(tiny_run, hapt_csv, tmp_path / "bad.csv", step_s=bad, **kw)
    assert not (tmp_path / "bad.csv").exists()


def test_classify_result_does_not_depend_on_the_chunk_size(tiny_run, hapt_csv, tmp_path):
    kw = {"labels": ["walking", "sitting", "lying"], "placement": "waist", "device": "smartphone",
          "progress": False, "precision": "fp32"}
    classify_recording(tiny_run, hapt_csv, tmp_path / "a.csv", chunk_rows=97, **kw)
    classify_recording(tiny_run, hapt_csv, tmp_path / "b.csv", chunk_rows=100_000, **kw)
    a, b = _read_csv(tmp_path / "a.csv"), _read_csv(tmp_path / "b.csv")
    assert [r["start_s"] for r in a] == [r["start_s"] for r in b]
    assert [r["label"] for r in a] == [r["label"] for r in b]
    np.testing.assert_allclose([float(r["score"]) for r in a], [float(r["score"]) for r in b], atol=2e-3)


def test_classify_with_a_saved_index_matches_labels(tiny_run, hapt_csv, tmp_path):
    labels = ["walking", "sitting", "lying"]
    build_label_index(tiny_run, tmp_path / "idx", labels=labels)
    kw = {"placement": "waist", "device": "smartphone", "progress": False, "precision": "fp32"}
    classify_recording(tiny_run, hapt_csv, tmp_path / "a.csv", index_dir=tmp_path / "idx", **kw)
    classify_recording(tiny_run, hapt_csv, tmp_path / "b.csv", labels=labels, **kw)
    assert [r["label"] for r in _read_csv(tmp_path / "a.csv")] == [r["label"] for r in _read_csv(tmp_path / "b.csv")]


def test_an_index_of_another_model_is_refused(tiny_run, hapt_csv, tmp_path):
    other = untrained_run(tmp_path / "other", seed=1)
    build_label_index(other, tmp_path / "idx", labels=["walking", "sitting"])
    with pytest.raises(ZeroharError, match=r"idx was built by model sha256:\w+, not by the model given"):
        classify_recording(tiny_run, hapt_csv, tmp_path / "out.csv", index_dir=tmp_path / "idx",
                           placement="waist", device="smartphone", progress=False)
    assert not (tmp_path / "out.csv").exists()


def test_a_recording_shorter_than_a_window_is_refused_and_nothing_is_written(tiny_run, tmp_path):
    p = tmp_path / "short.csv"
    t = np.arange(90) / 30.0  # 3 s
    x = signal_of(t)
    p.write_text("time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z\n"
                 + "\n".join(",".join(f"{v:.5f}" for v in (ti, *xi)) for ti, xi in zip(t, x)) + "\n")
    with pytest.raises(ZeroharError, match=r"short.csv: the recording .* is shorter than one 5 s window"):
        classify_recording(tiny_run, p, tmp_path / "out.csv", labels=["walking", "sitting"], placement="waist",
                           device="smartphone", progress=False)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["short.csv"]


def test_classify_command_end_to_end(tiny_run, hapt_csv, tmp_path, capsys):
    out = tmp_path / "labels.csv"
    base = ["classify", "--run", str(tiny_run), "--input", str(hapt_csv), "--placement", "waist", "--device",
            "smartphone", "--no-progress"]
    argv = base + ["--labels", "walking", "sitting", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"15 windows of 5 s (step 2.5 s) -> {out}" in printed
    assert "label" in printed and "share" in printed
    assert main(argv) == 2  # the output exists now
    assert "labels.csv already exists; pass --force to overwrite it" in capsys.readouterr().err
    assert main(argv + ["--force"]) == 0
    assert main(base + ["--labels", "walking", "--out", str(tmp_path / "x.csv")]) == 2
    assert "zero-shot classification needs at least two candidate labels" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


def _has_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True








def test_index_command(tiny_run, tmp_path, capsys):
    out = tmp_path / "idx"
    assert main(["index", "--run", str(tiny_run), "--dataset", "hapt", "--out", str(out)]) == 0
    assert "label index with 12 labels (120 descriptions)" in capsys.readouterr().out
    assert len(LabelIndex.load(out)) == 12
    assert main(["index", "--run", str(tiny_run), "--labels", "a", "b", "--out", str(out)]) == 2
    assert "idx already exists; pass --force to overwrite it" in capsys.readouterr().err


def test_datetime_input_gets_a_start_time_column(tiny_run, tmp_path):
    from datetime import datetime, timedelta, timezone

    t0 = datetime(2024, 3, 1, 9, 30, 0, tzinfo=timezone.utc)
    t = np.arange(30 * 12) / 30.0
    x = signal_of(t)
    stamps = [(t0 + timedelta(seconds=float(s))).strftime("%Y-%m-%dT%H:%M:%S.%f") for s in t]
    p = tmp_path / "dt.csv"
    p.write_text("timestamp,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z\n"
                 + "\n".join(",".join([s, *(f"{v:.5f}" for v in xi)]) for s, xi in zip(stamps, x)) + "\n")
    classify_recording(tiny_run, p, tmp_path / "out.csv", labels=["walking", "sitting"], placement="waist",
                       device="smartphone", progress=False)
    rows = _read_csv(tmp_path / "out.csv")
    assert list(rows[0])[:3] == ["start_s", "start_time", "label"]
    assert [r["start_time"] for r in rows] == [  # naive datetimes: a wall clock, kept as written
        (t0 + timedelta(seconds=2.5 * i)).replace(tzinfo=None).isoformat(timespec="milliseconds")
        for i in range(len(rows))
    ]


def test_a_recording_with_other_sensors_is_classified_with_a_warning(tiny_run, tmp_path, caplog):
    t = np.arange(30 * 12) / 30.0
    x = signal_of(t)[:, :3]  # a wrist accelerometer only; the model knows waist acc + gyro
    p = tmp_path / "wrist.csv"
    p.write_text("time,acc_x,acc_y,acc_z\n"
                 + "\n".join(",".join(f"{v:.5f}" for v in (ti, *xi)) for ti, xi in zip(t, x)) + "\n")
    with caplog.at_level(logging.WARNING, logger="zerohar.inference.classify"):
        res = classify_recording(tiny_run, p, tmp_path / "out.csv", labels=["walking", "sitting"],
                                 placement="left wrist", device="smartwatch", progress=False)
    (msg,) = [r.getMessage() for r in caplog.records]
    assert "wrist.csv lacks the model's accelerometer at waist on smartphone; gyroscope at waist on smartphone" in msg
    assert "classifying with the sensors present (accelerometer at left wrist on smartwatch)" in msg
    assert res.n_windows == len(_read_csv(tmp_path / "out.csv")) == 3
