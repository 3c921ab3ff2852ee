"""classify --precision int8: a real recording end to end, the missing-onnxruntime error, calibration from the
recording itself (no labels, no training data)."""

from __future__ import annotations

import csv
import sys

import numpy as np
import pytest
from helpers import hapt_recording_csv

from zerohar.cli import main
from zerohar.errors import ZeroharError
from zerohar.inference import classify
from zerohar.inference.classify import classify_recording, stream_calibration


@pytest.fixture(scope="module")
def hapt_csv(tmp_path_factory):
    """60 s of an embedded (real) HAPT recording, acc + gyro at the waist, as a CSV with a time column."""
    return hapt_recording_csv(tmp_path_factory.mktemp("rec") / "rec.csv", 60, t0=0.0)


KW = dict(labels=["walking", "sitting", "lying down"], placement="waist", device="smartphone", progress=False,
          unknown=False)


def _labels(p):
    with open(p, newline="") as f:
        return [(r["start_s"], r["label"]) for r in csv.DictReader(f)]


def test_int8_classify_of_a_real_recording_matches_fp32(tiny_run, hapt_csv, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    res = classify_recording(tiny_run, hapt_csv, tmp_path / "int8.csv", precision="int8", **KW)
    assert capsys.readouterr().out == ""  # the quantizer's progress prints would corrupt the command's output
    classify_recording(tiny_run, hapt_csv, tmp_path / "fp32.csv", precision="fp32", **KW)
    got, ref = _labels(tmp_path / "int8.csv"), _labels(tmp_path / "fp32.csv")
    assert res.n_windows == len(got) == len(ref) == (60 * 30 - 150) // 75 + 1
    assert [s for s, _ in got] == [s for s, _ in ref]
    assert np.mean([a == b for (_, a), (_, b) in zip(got, ref)]) >= 0.8


def test_int8_without_onnxruntime_is_one_sentence_before_any_work(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` fails, find_spec says None
    missing = tmp_path / "no-such-run"  # never read: the error comes first
    with pytest.raises(ZeroharError, match=r"^--precision int8 needs the onnxruntime package, which is not "
                                           r"installed: pip install 'zerohar\[onnx\]'$"):
        classify_recording(missing, tmp_path / "no-such.csv", tmp_path / "out.csv", precision="int8", **KW)
    argv = ["--run", str(missing), "--input", str(tmp_path / "no-such.csv"), "--labels", "a", "b", "--precision",
            "int8"]
    assert main(["classify", *argv, "--out", str(tmp_path / "o.csv")]) == 2
    assert main(["eval", "--run", str(missing), "--precision", "int8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"zerohar {c}: error: --precision int8 needs the onnxruntime package, which is not installed: "
                   "pip install 'zerohar[onnx]'" for c in ("classify", "eval")]
    assert not list(tmp_path.iterdir())


def test_stream_calibration_is_spread_over_the_recordings_first_worn_windows():
    starts = np.arange(10_000) * 2.5
    X = np.arange(10_000, dtype=np.float32)[:, None, None] * np.ones((1, 3, 150), np.float32)  # window i holds i
    batches = [(X[a : a + 1000], starts[a : a + 1000]) for a in range(0, 10_000, 1000)]
    pulled = []

    def stream():
        for b in batches:
            pulled.append(len(b[0]))
            yield b

    nonwear = np.array([[0.0, 500 * 2.5]])  # the first 500 windows: device on a table
    cal, replay = stream_calibration(stream(), window_s=5.0, nonwear=nonwear, span=2048)
    assert len(pulled) == 3  # read ahead 3 batches, not the whole recording
    ids = cal[:, 0, 0].astype(int)
    assert len(ids) == 256 and ids.min() >= 499 and ids.max() <= 2047  # worn (half-covered counts) of the first 2,048
    assert np.diff(ids).min() > 1  # spread, not the first 256
    again = list(replay)
    assert len(again) == 10 and all(a[0] is b[0] for a, b in zip(again, batches))  # the whole stream, once
    cal2, replay2 = stream_calibration(iter(batches[:1]), window_s=5.0, nonwear=np.array([[0.0, 1e9]]))
    assert len(cal2) == 256 and len(list(replay2)) == 1  # never worn: all windows rather than none
    assert stream_calibration(iter(()), window_s=5.0)[0] is None


def test_classify_passes_the_recordings_own_windows_as_calibration(monkeypatch, tiny_run, hapt_csv, tmp_path):
    seen = []

    def fake_embed(model, X, context, **kw):  # records what classify gives the embedding, no ONNX needed
        seen.append((np.array(X), kw["precision"], kw["calibration"]))
        return np.random.default_rng(0).normal(size=(len(X), model.cfg.embed_dim)).astype(np.float32)

    monkeypatch.setattr(classify, "embed_windows", fake_embed)
    monkeypatch.setattr(classify, "require_onnxruntime", lambda what: None)
    classify.classify_recording(tiny_run, hapt_csv, tmp_path / "o.csv", precision="int8", **KW)
    X = np.concatenate([x for x, _, _ in seen])
    cal = seen[0][2]
    assert all(p == "int8" and c is cal for _, p, c in seen)  # one calibration for the whole recording
    assert len(cal) == len(X) == 23  # a short recording: every window calibrates
    np.testing.assert_array_equal(cal, X)
    seen.clear()
    classify.classify_recording(tiny_run, hapt_csv, tmp_path / "f.csv", precision="fp32", **KW)
    assert all(c is None for _, _, c in seen)
