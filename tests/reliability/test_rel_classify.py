"""`zerohar classify` and `zerohar index` on malformed runs, recordings, labels, indexes, flags and outputs."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from badinputs import csv_text, layout_yaml, nested_json, signal, write
from helpers import TINY_MODEL, untrained_run

PD = ("--placement", "waist", "--device", "smartphone")
LABELS = ("--labels", "walking", "sitting")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return untrained_run(tmp_path_factory.mktemp("run") / "stage2", model=TINY_MODEL)


@pytest.fixture(scope="module")
def stage1_dir(tmp_path_factory):
    return untrained_run(tmp_path_factory.mktemp("run") / "stage1", stage="stage1", model=TINY_MODEL)


@pytest.fixture
def rec(tmp_path):
    return write(tmp_path / "rec.csv", csv_text(600, label=None))


def classify(run, inp, *args, out="out.csv", labels=LABELS, pd=True):
    outs = ("--out", out) if out else ()
    return ["classify", "--run", run, "--input", inp, *labels, *(PD if pd else ()), *outs, "--no-progress", *args]


# ---------------------------------------------------------------------------------------------- the good case
def test_a_good_recording_is_classified(zh, run_dir, rec, tmp_path):
    r = zh(*classify(run_dir, rec)).ok()
    assert r.new == {"out.csv"} and "WARNING" not in r.err


# ---------------------------------------------------------------------------------------------- the recording
BAD_INPUTS = [
    ("empty.csv", "", ["empty"]),
    ("header.csv", "time,acc_x,acc_y,acc_z\n", ["no data rows"]),
    ("binary.csv", b"\x00\x01\x02\xff" * 50, ["not a text"]),
    ("nan.csv", csv_text(x=np.full((600, 6), np.nan), label=None), ["shorter than one"]),
    ("huge.csv", csv_text(x=np.full((600, 6), 1e30), label=None), ["accelerometer"]),
    ("zero.csv", csv_text(x=np.zeros((600, 6)), label=None), ["gravity"]),
    ("degs.csv", csv_text(x=signal(600) * np.array([1, 1, 1, 57.3, 57.3, 57.3]), label=None), ["deg/s"]),
    ("short.csv", csv_text(60, label=None), ["shorter than one"]),
    ("fields.csv", csv_text(60, label=None) + ",".join(["1"] * 300_000) + "\n", ["300000 fields"]),
    ("dups.csv", csv_text(times=100 + np.repeat(np.arange(300) / 30, 2), label=None), ["distinct"]),
    ("back.csv", csv_text(label=None) + "1,0,0,1,0,0,0\n", ["earlier"]),
    ("ms.csv", csv_text(times=1000 * np.arange(600) / 30, label=None), ["milliseconds"]),
    ("rec.txt", csv_text(label=None), ["unknown recording type"]),
    ("rec.npy", b"\x93NUMPY garbage", ["not a readable numpy file"]),
    ("rec.npz", b"PK\x03\x04 not really", ["not a readable numpy file"]),
]


@pytest.mark.parametrize("name, content, words", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_recording(zh, run_dir, tmp_path, name, content, words):
    p = write(tmp_path / name, content)
    zh(*classify(run_dir, p)).refused(*words)


def _npy(tmp_path, name, arr, **kw):
    p = tmp_path / name
    if name.endswith(".npz"):
        np.savez(p, **arr)
    else:
        np.save(p, arr, **kw)
    return p


@pytest.mark.parametrize("name, arr, args, words", [
    ("a.npy", signal(600), [], ["--rate"]),
    ("a.npy", signal(600), ["--rate", "-50"], ["--rate", "positive"]),
    ("a.npy", signal(600), ["--rate", "0"], ["--rate", "positive"]),
    ("a.npy", signal(600), ["--rate", "nan"], ["--rate"]),
    ("a.npy", signal(600)[:, :5], ["--rate", "30"], ["5 columns"]),
    ("a.npy", signal(600)[:, 0], ["--rate", "30"], ["(T, C)"]),
    ("a.npy", signal(600).astype(complex), ["--rate", "30"], ["real numbers"]),
    ("a.npy", np.zeros((0, 6)), ["--rate", "30"], ["no rows"]),
    ("a.npz", {"x": signal(600)}, [], ["'signals'"]),
    ("a.npz", {"signals": signal(600), "time": np.arange(5.0)}, [], ["'time' has shape"]),
    ("a.npz", {"signals": signal(600), "time": np.arange(600) / 30}, ["--rate", "30"], ["'time' array"]),
    ("a.npz", {"signals": signal(600), "rate": np.array([30.0, 50.0])}, [], ["'rate' must be one number"]),
    ("a.npz", {"signals": signal(600), "rate": np.array(-3.0)}, [], ["positive"]),
    ("a.npz", {"signals": signal(600), "rate": np.array(30.0)}, ["--rate", "50"], ["leave --rate out"]),
    ("a.npz", {"signals": signal(600), "time": np.full(600, 3.0)}, [], ["distinct"]),
    ("a.npz", {"signals": signal(600), "time": np.arange(600)[::-1] / 30.0}, [], ["backwards"]),
], ids=lambda v: v if isinstance(v, str) else None)
def test_bad_array_recording(zh, run_dir, tmp_path, name, arr, args, words):
    p = _npy(tmp_path, name, arr)
    zh(*classify(run_dir, p, *args)).refused(*words)


def test_pickled_npy_is_refused(zh, run_dir, tmp_path):
    p = tmp_path / "a.npy"
    np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    zh(*classify(run_dir, p, "--rate", "30")).refused("not a readable numpy file")


def test_recording_with_nan_runs_is_repaired_with_a_warning(zh, run_dir, tmp_path):
    x = signal(900)
    x[100:112, 0] = np.nan
    x[400:500, 3] = np.nan
    p = write(tmp_path / "rec.csv", csv_text(x=x, label=None))
    zh(*classify(run_dir, p)).repaired("12 nan samples in 1 run interpolated", "1 nan run of 3.3 s dropped")


def test_one_hertz_recording_is_upsampled_with_a_warning(zh, run_dir, tmp_path):
    p = write(tmp_path / "rec.csv", csv_text(60, rate=1.0, label=None))
    zh(*classify(run_dir, p)).repaired("upsampled from 1 hz")


def test_some_repeated_times_are_merged_with_a_warning(zh, run_dir, tmp_path):
    t = 100 + np.arange(600) / 30
    t[50:53] = t[50]
    p = write(tmp_path / "rec.csv", csv_text(times=t, label=None))
    zh(*classify(run_dir, p)).repaired("2 samples with the same time")


@pytest.mark.parametrize("make, words", [
    (lambda p: None, ["does not exist"]),
    (lambda p: p.mkdir(), ["names no recording"]),
    (lambda p: os.mkfifo(p), ["named pipe"]),
    (lambda p: os.symlink(p, p), ["symbolic link loop"]),
    (lambda p: os.symlink(p.with_name("gone.csv"), p), ["broken symbolic link"]),
], ids=["missing", "folder", "fifo", "loop", "dangling"])
def test_input_that_is_no_file(zh, run_dir, tmp_path, make, words):
    p = tmp_path / "rec.csv"
    make(p)
    zh(*classify(run_dir, p)).refused("rec.csv", *words)


def test_unreadable_input(zh, run_dir, rec, deny):
    deny(rec, read=True)
    zh(*classify(run_dir, rec)).refused("rec.csv", "permission denied")


def test_out_equal_to_input_even_with_force(zh, run_dir, rec):
    before = rec.read_bytes()
    zh(*classify(run_dir, rec, "--force", out=rec)).refused("is the input")
    assert rec.read_bytes() == before


# ---------------------------------------------------------------------------------------------- layout flags
def test_layout_with_placement(zh, run_dir, rec, tmp_path):
    lay = write(tmp_path / "lay.yaml", layout_yaml())
    zh(*classify(run_dir, rec, "--layout", lay)).refused("--layout", "--placement", "not both")


def test_device_alone_with_layout(zh, run_dir, rec, tmp_path):
    lay = write(tmp_path / "lay.yaml", layout_yaml())
    zh(*classify(run_dir, rec, "--layout", lay, "--device", "watch", pd=False)).refused("--device", "not both")


def test_layout_file_bad(zh, run_dir, rec, tmp_path):
    lay = write(tmp_path / "lay.yaml", layout_yaml(extra_key=1))
    zh(*classify(run_dir, rec, "--layout", lay, pd=False)).refused("lay.yaml", "extra_key")


def test_layout_unknown_unit_names_the_file(zh, run_dir, rec, tmp_path):
    chans = json.loads(layout_yaml())["channels"]
    chans[3]["unit"] = "rpm"
    lay = write(tmp_path / "lay.yaml", layout_yaml(chans))
    zh(*classify(run_dir, rec, "--layout", lay, pd=False)).refused("lay.yaml", "channel 3", "rpm")


def test_placement_empty(zh, run_dir, rec):
    zh(*classify(run_dir, rec, "--placement", " ", "--device", "phone", pd=False)).refused("--placement")


def test_no_layout_no_placement(zh, run_dir, rec):
    zh(*classify(run_dir, rec, pd=False)).refused("--layout", "--placement")


# ---------------------------------------------------------------------------------------------- the run
def test_run_missing(zh, rec, tmp_path):
    zh(*classify(tmp_path / "norun", rec)).refused("does not exist")


def test_run_is_a_file(zh, rec, tmp_path):
    f = write(tmp_path / "run", "x")
    zh(*classify(f, rec)).refused("is a file")


def test_run_is_not_a_run(zh, rec, tmp_path):
    (tmp_path / "d").mkdir()
    zh(*classify(tmp_path / "d", rec)).refused("not a zerohar run")


def test_run_of_stage1(zh, stage1_dir, rec):
    zh(*classify(stage1_dir, rec)).refused("stage1 run", "stage ii")


def test_run_unfinished(zh, run_dir, rec, tmp_path):
    d = tmp_path / "r"
    shutil.copytree(run_dir, d)
    (d / "metrics.json").write_text('{"finished": false}')
    zh(*classify(d, rec)).refused("unfinished")


def test_run_with_torn_weights(zh, run_dir, rec, tmp_path):
    d = tmp_path / "r"
    shutil.copytree(run_dir, d)
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])
    zh(*classify(d, rec)).refused("model.safetensors", "partially written")


def test_run_with_damaged_model_json(zh, run_dir, rec, tmp_path):
    d = tmp_path / "r"
    shutil.copytree(run_dir, d)
    (d / "model.json").write_text("{not json")
    zh(*classify(d, rec)).refused("model.json")


def test_run_with_damaged_config(zh, run_dir, rec, tmp_path):
    d = tmp_path / "r"
    shutil.copytree(run_dir, d)
    (d / "config.yaml").write_text("train: {lr: [\n")
    zh(*classify(d, rec)).refused("config.yaml", "not valid yaml")


# ---------------------------------------------------------------------------------------------- labels
@pytest.mark.parametrize("labels, words", [
    (["walking"], ["at least two"]),
    (["walking", "walking"], ["at least two"]),
    (["walking", "  "], ["label 2", "empty"]),
    (["walking", "sit\nting"], ["label 2", "line break"]),
    (["walking", "x" * 300], ["label 2", "300 characters"]),
], ids=["one", "repeat", "blank", "newline", "long"])
def test_bad_labels(zh, run_dir, rec, labels, words):
    zh(*classify(run_dir, rec, labels=("--labels", *labels))).refused(*words)


LABEL_FILES = [
    ("l.json", nested_json(5000), ["nested too deeply"]),
    ("l.json", '{"labels": {"walking": ["a"], "walking": ["b"]}}', ["'walking'", "twice"]),
    ("l.json", '{"labels": {"walk\\ning": ["a b"], "sitting": ["c d"]}}', ["line break"]),
    ("l.json", '["walking", "sit\\nting"]', ["label 2", "line break"]),
    ("l.json", '{"labels": ["walking", "sitting"], "extra": 1}', ["extra"]),
    ("l.json", '{"labels": {"walking": "legs move"}}', ["'walking'", "list"]),
    ("l.json", '{"labels": {"walking": []}}', ["'walking'", "empty array"]),
    ("l.json", '{"labels": {}}', ["empty object"]),
    ("l.json", '{"labels": {"walking": ["a"]}, "provenance": []}', ["provenance"]),
    ("l.json", "[1, 2]", ["label 1", "int"]),
    ("l.json", '["walking", ', ["not valid json"]),
    ("l.txt", "walking\n", ["at least two"]),
    ("l.txt", "# nothing\n\n", ["names no labels"]),
    ("l.txt", b"\xff\xfe\x00\x01", ["not a utf-8 text file"]),
    ("l.txt", "walking\n" + "x" * 500 + "\n", ["500 characters"]),
]


@pytest.mark.parametrize("name, content, words", LABEL_FILES, ids=[f"{c[0]}:{c[1][:18]!r}" for c in LABEL_FILES])
def test_bad_labels_file(zh, run_dir, rec, tmp_path, name, content, words):
    f = write(tmp_path / name, content)
    zh(*classify(run_dir, rec, labels=("--labels-file", f))).refused(*words)


def test_labels_file_missing(zh, run_dir, rec, tmp_path):
    zh(*classify(run_dir, rec, labels=("--labels-file", tmp_path / "l.txt"))).refused("l.txt", "does not exist")


def test_labels_file_unreadable(zh, run_dir, rec, tmp_path, deny):
    f = write(tmp_path / "l.txt", "walking\nsitting\n")
    deny(f, read=True)
    zh(*classify(run_dir, rec, labels=("--labels-file", f))).refused("l.txt", "permission denied")


def test_index_missing(zh, run_dir, rec, tmp_path):
    zh(*classify(run_dir, rec, labels=("--index", tmp_path / "idx"))).refused("idx")


def test_index_damaged(zh, run_dir, rec, tmp_path):
    (tmp_path / "idx").mkdir()
    write(tmp_path / "idx" / "labels.json", "{")
    zh(*classify(run_dir, rec, labels=("--index", tmp_path / "idx"))).refused("idx")


def test_describe_without_llm_model(zh, run_dir, rec):
    zh(*classify(run_dir, rec, "--describe", labels=("--labels", "zorbing", "walking"))).refused("--llm-model")


# ---------------------------------------------------------------------------------------------- numbers
@pytest.mark.parametrize("args, words", [
    (["--top-k", "0"], ["--top-k"]),
    (["--top-k", "-3"], ["--top-k"]),
    (["--step", "0"], ["--step"]),
    (["--step", "-1"], ["--step"]),
    (["--step", "60"], ["--step"]),
    (["--step", "nan"], ["--step"]),
    (["--batch-size", "0"], ["batch size", "at least 1"]),
    (["--batch-size", "-5"], ["batch size", "at least 1"]),
    (["--precision", "fp8"], ["--precision", "invalid choice"]),
    (["--top-k", "two"], ["--top-k", "invalid"]),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_numbers(zh, run_dir, rec, args, words):
    zh(*classify(run_dir, rec, *args)).refused(*words)


# ---------------------------------------------------------------------------------------------- outputs
def test_out_exists(zh, run_dir, rec, tmp_path):
    write(tmp_path / "out.csv", "old")
    zh(*classify(run_dir, rec)).refused("already exists", "--force")
    assert (tmp_path / "out.csv").read_text() == "old"


def test_out_is_a_folder(zh, run_dir, rec, tmp_path):
    (tmp_path / "out.csv").mkdir()
    zh(*classify(run_dir, rec)).refused("is a folder")


def test_out_wrong_suffix(zh, run_dir, rec):
    zh(*classify(run_dir, rec, out="out.txt")).refused(".csv or .parquet")


def test_out_under_an_unwritable_folder(zh, run_dir, rec, tmp_path, deny):
    (tmp_path / "ro").mkdir()
    deny(tmp_path / "ro")
    zh(*classify(run_dir, rec, out=tmp_path / "ro" / "sub" / "out.csv")).refused("not writable")


def test_out_under_a_file(zh, run_dir, rec, tmp_path):
    write(tmp_path / "f", "x")
    zh(*classify(run_dir, rec, out=tmp_path / "f" / "out.csv")).refused("not a folder")


def test_out_dir_without_datetimes(zh, run_dir, rec, tmp_path):
    zh(*classify(run_dir, rec, "--out-dir", tmp_path / "study", out=None)).refused("datetime")


def test_out_dir_is_a_file(zh, run_dir, rec, tmp_path):
    write(tmp_path / "study", "x")
    zh(*classify(run_dir, rec, "--out-dir", tmp_path / "study", out=None)).refused("is a file")


@pytest.fixture
def dated(tmp_path):
    return write(tmp_path / "dated.csv", csv_text(900, label=None, datetimes=True))


def test_out_dir_is_written(zh, run_dir, dated, tmp_path):
    r = zh(*classify(run_dir, dated, "--out-dir", tmp_path / "s", out=None)).ok()
    assert {p.split("/")[0] for p in r.new} == {"s"}


def test_out_dir_unwritable(zh, run_dir, dated, tmp_path, deny):
    (tmp_path / "ro").mkdir()
    deny(tmp_path / "ro")
    zh(*classify(run_dir, dated, "--out-dir", tmp_path / "ro", out=None)).refused("not writable")


def test_out_dir_exists(zh, run_dir, dated, tmp_path):
    (tmp_path / "s" / "dated").mkdir(parents=True)
    zh(*classify(run_dir, dated, "--out-dir", tmp_path / "s", out=None)).refused("already exists")


def test_timezone_without_out_dir(zh, run_dir, rec):
    zh(*classify(run_dir, rec, "--timezone", "Europe/London")).refused("--timezone", "--out-dir")


def test_unknown_timezone(zh, run_dir, dated, tmp_path):
    zh(*classify(run_dir, dated, "--out-dir", tmp_path / "s", "--timezone", "Mars/Olympus", out=None)).refused(
        "Mars/Olympus")


@pytest.mark.parametrize("hours", ["30", "-1"])
def test_min_wear_hours_out_of_range(zh, run_dir, dated, tmp_path, hours):
    zh(*classify(run_dir, dated, "--out-dir", tmp_path / "s", "--min-wear-hours", hours, out=None)).refused(
        "wear")


def test_out_and_out_dir_together(zh, run_dir, rec, tmp_path):
    zh(*classify(run_dir, rec, "--out-dir", tmp_path / "s")).refused("not allowed with")


# ---------------------------------------------------------------------------------------------- index
def index(run, *args, out="idx"):
    return ["index", "--run", run, "--out", out, "--no-progress", *args]


def test_index_is_built(zh, run_dir, tmp_path):
    zh(*index(run_dir, *LABELS)).ok()
    assert (tmp_path / "idx").is_dir()


@pytest.mark.parametrize("args, words", [
    (["--labels", "walking"], ["at least two"]),
    (["--labels", "walking", "sit\nting"], ["line break"]),
    (["--dataset", "nosuch"], ["nosuch"]),
    (["--describe", "--labels", "zorbing", "walking"], ["--llm-model"]),
], ids=["one", "newline", "dataset", "describe"])
def test_index_bad_labels(zh, run_dir, args, words):
    zh(*index(run_dir, *args)).refused(*words)


def test_index_labels_file_nested(zh, run_dir, tmp_path):
    f = write(tmp_path / "l.json", nested_json(3000))
    zh(*index(run_dir, "--labels-file", f)).refused("nested too deeply")


def test_index_out_exists(zh, run_dir, tmp_path):
    (tmp_path / "idx").mkdir()
    zh(*index(run_dir, *LABELS)).refused("already exists")


def test_index_out_unwritable(zh, run_dir, tmp_path, deny):
    (tmp_path / "ro").mkdir()
    deny(tmp_path / "ro")
    zh(*index(run_dir, *LABELS, out=tmp_path / "ro" / "idx")).refused("not writable")


def test_index_of_a_stage1_run(zh, stage1_dir):
    zh(*index(stage1_dir, *LABELS)).refused("stage1 run")


def test_index_run_missing(zh, tmp_path):
    zh(*index(tmp_path / "none", *LABELS)).refused("does not exist")
