"""classify: streaming windows equal one-shot windows, label handling, layouts, output, bad input."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zerohar.data.layout import UNITS, Channel, SensorLayout
from zerohar.data.streaming import match_layout, open_recording, stream_windows
from zerohar.data.transforms import canonical_stream, make_windows, to_canonical
from zerohar.data.windows import Recording
from zerohar.errors import ZeroharError
from zerohar.inference.summaries import segments
from zerohar.io import check_output
from zerohar.text.labels import clean_labels, read_labels_file


def _layout(*specs) -> SensorLayout:
    """specs: (sensor, placement, device) triads, canonical units."""
    chans = [Channel(s, a, p, d, UNITS[s][0]) for s, p, d in specs for a in ("x", "y", "z")]
    return SensorLayout.from_channels(chans)


WAIST = _layout(("acc", "waist", "smartphone"), ("gyro", "waist", "smartphone"))


def _signal(t: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f = rng.uniform(0.2, 3.0, size=6)
    x = np.sin(2 * np.pi * f * t[:, None]) + 0.05 * rng.normal(size=(len(t), 6))
    x[:, 2] += 1.0  # gravity on z, so the unit check sees an accelerometer in g
    return x


def _chunks(t, x, sizes):
    a = 0
    for n in sizes:
        if a >= len(t):
            break
        yield t[a : a + n], x[a : a + n], None
        a += n
    if a < len(t):
        yield t[a:], x[a:], None


@settings(max_examples=15, deadline=None)
@given(
    rate=st.sampled_from([30.0, 50.0, 20.0]),
    seconds=st.floats(12.0, 60.0),
    gap=st.one_of(st.none(), st.floats(6.0, 20.0)),
    chunk=st.integers(37, 900),
)
def test_streamed_windows_equal_one_shot_windows(rate, seconds, gap, chunk):
    t = np.arange(int(seconds * rate)) / rate + 1000.0
    if gap is not None:  # a long gap splits the recording: windows restart after it
        t[len(t) // 2 :] += gap
    x = _signal(t)
    length, step = 150, 75
    # One shot: the data layer's own resampling and windowing (step = half a window).
    rec = Recording(x, WAIST, np.full(len(t), -1), "s1", "r", timestamps=t)
    pieces = to_canonical(rec, 30.0, max_gap_s=5.0)
    ref_starts: list[np.ndarray] = []
    ref_x: list[np.ndarray] = []
    for p in pieces:
        if p.n_samples >= length:
            ws = make_windows([p], ["a"], 5.0, 2.5)
            ref_x.append(ws.X)
            ref_starts.append(p.meta["t0"] + ws.start - p.meta["offset"])
    # Streamed, in chunks of `chunk` raw rows.
    sizes = [chunk] * (len(t) // chunk + 1)
    streamed = list(stream_windows(canonical_stream(_chunks(t, x, sizes), WAIST, 30.0, max_gap_s=5.0), length, step,
                                   max_windows=7))
    if not ref_x:
        assert streamed == []
        return
    X = np.concatenate([b[0] for b in streamed])
    S = np.concatenate([b[1] for b in streamed])
    assert all(len(b[0]) <= 7 for b in streamed)
    np.testing.assert_allclose(S, np.concatenate(ref_starts), atol=1e-6)
    np.testing.assert_allclose(X, np.concatenate(ref_x), atol=2e-3)


def test_stream_windows_keeps_only_the_selected_channels():
    t = np.arange(30 * 20) / 30.0
    x = _signal(t)
    pieces = canonical_stream([(t, x, None)], WAIST, 30.0)
    X, _ = next(stream_windows(pieces, 150, 75, keep=[0, 1, 2]))
    assert X.shape[1:] == (3, 150)
    np.testing.assert_allclose(X[0], x[:150, :3].T, atol=1e-5)


# ---------------------------------------------------------------------------------------------- labels
def test_clean_labels_deduplicates_and_says_so_once(caplog):
    with caplog.at_level(logging.WARNING, logger="zerohar.inference.classify"):
        out = clean_labels(["walking", " Walking ", "sitting", "walking", "sitting", "lying"])
    assert out == ["walking", "sitting", "lying"]
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 1
    assert "repeated labels used once: 'walking' (x3), 'sitting' (x2)" in msgs[0]


def test_an_empty_label_list_is_refused():
    with pytest.raises(ZeroharError, match="--labels: the label list is empty; expected at least two activity labels"):
        clean_labels([], at_least=2)


def test_one_label_is_refused():
    with pytest.raises(ZeroharError, match=r"only one label \('walking'\); zero-shot classification needs at least two"):
        clean_labels(["walking", "walking"], at_least=2)


def test_an_empty_label_is_refused():
    with pytest.raises(ZeroharError, match="label 2 in --labels is empty"):
        clean_labels(["walking", "  "])


def test_labels_file_text_and_json(tmp_path):
    txt = tmp_path / "labels.txt"
    txt.write_text("# my labels\nwalking\n\nrock climbing  # new one\n")
    assert read_labels_file(txt) == (["walking", "rock climbing"], {})
    js = tmp_path / "labels.json"
    js.write_text('{"labels": {"rock climbing": ["arms pull the body up", "legs push up"], "rowing": ["arms pull"]}}')
    names, descs = read_labels_file(js)
    assert names == ["rock climbing", "rowing"]
    assert descs["rock climbing"] == ["arms pull the body up", "legs push up"]
    with pytest.raises(ZeroharError, match="labels file .*missing.txt does not exist"):
        read_labels_file(tmp_path / "missing.txt")


# ---------------------------------------------------------------------------------------------- layouts
def test_a_layout_the_model_lacks_names_missing_sensors_and_runs_on_the_present_ones(caplog):
    rec_layout = _layout(("acc", "left wrist", "smartwatch"), ("mag", "left wrist", "smartwatch"))
    with caplog.at_level(logging.WARNING, logger="zerohar.inference.classify"):
        keep, used = match_layout(WAIST, rec_layout, "rec.csv")
    assert keep == [0, 1, 2]
    assert [s.key for s in used.sensors] == [("acc", "left wrist", "smartwatch")]
    (msg,) = [r.getMessage() for r in caplog.records]
    assert "rec.csv lacks the model's accelerometer at waist on smartphone; gyroscope at waist on smartphone" in msg
    assert "has sensors the model was not trained on: accelerometer at left wrist on smartwatch" in msg
    assert "ignoring magnetometer at left wrist on smartwatch (a sensor kind the model does not know)" in msg
    assert "classifying with the sensors present (accelerometer at left wrist on smartwatch)" in msg


def test_the_same_layout_gives_no_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="zerohar.inference.classify"):
        keep, used = match_layout(WAIST, WAIST, "rec.csv")
    assert keep == list(range(6)) and used.sensors == WAIST.sensors
    assert not caplog.records


def test_no_usable_sensor_is_an_error():
    with pytest.raises(ZeroharError, match=r"rec.csv: none of its sensors \(magnetometer at wrist on watch\) is of a"):
        match_layout(WAIST, _layout(("mag", "wrist", "watch")), "rec.csv")


# ---------------------------------------------------------------------------------------------- input / output
def test_npy_needs_a_rate_and_a_layout(tmp_path):
    p = tmp_path / "rec.npy"
    np.save(p, np.zeros((100, 6), np.float32))
    with pytest.raises(ZeroharError, match=r"rec.npy: give its sensor layout \(--layout FILE.yaml\)"):
        open_recording(p, rate=30.0)
    with pytest.raises(ZeroharError, match=r"rec.npy: has no 'time' array; give its sampling rate in Hz \(--rate\)"):
        open_recording(p, placement="waist", device="smartphone")
    rec = open_recording(p, placement="waist", device="smartphone", rate=50.0)
    assert [s.sensor for s in rec.layout.sensors] == ["acc", "gyro"]
    t, x, _ = next(iter(rec.chunks))
    assert x.shape == (100, 6) and t[1] == pytest.approx(0.02)
    assert rec.t_first == 0.0


def test_csv_with_a_time_column_streams_in_chunks(tmp_path):
    p = tmp_path / "rec.csv"
    t = 5.0 + np.arange(500) / 50.0
    x = _signal(t)
    rows = "\n".join(",".join(f"{v:.6f}" for v in (ti, *xi)) for ti, xi in zip(t, x))
    p.write_text("time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z\n" + rows + "\n")
    rec = open_recording(p, placement="waist", device="smartphone", chunk_rows=128)
    chunks = list(rec.chunks)
    assert [len(c[0]) for c in chunks] == [128, 128, 128, 116]
    assert rec.t_first == pytest.approx(5.0)
    np.testing.assert_allclose(np.concatenate([c[1] for c in chunks]), x, atol=1e-6)
    assert rec.layout.sensors == WAIST.sensors


def test_a_missing_input_is_an_error(tmp_path):
    with pytest.raises(ZeroharError, match="input file .*nothing.csv does not exist"):
        open_recording(tmp_path / "nothing.csv", placement="waist", device="phone")


def test_an_existing_output_is_refused_without_force(tmp_path):
    out = tmp_path / "labels.csv"
    out.write_text("x")
    with pytest.raises(ZeroharError, match="labels.csv already exists; pass --force to overwrite it"):
        check_output(out, force=False, suffixes=(".csv", ".parquet"))
    assert check_output(out, force=True, suffixes=(".csv", ".parquet")) == out
    with pytest.raises(ZeroharError, match=r"expected a .csv or .parquet file name, found suffix '.txt'"):
        check_output(tmp_path / "labels.txt", force=False, suffixes=(".csv", ".parquet"))


def test_segments_merge_consecutive_windows():
    starts = [0.0, 2.5, 5.0, 7.5, 10.0, 30.0, 32.5]
    labels = ["walk", "walk", "sit", "sit", "sit", "sit", "walk"]
    assert segments(starts, labels, 2.5, 5.0) == [
        (0.0, 5.0, "walk"), (5.0, 15.0, "sit"), (30.0, 32.5, "sit"), (32.5, 37.5, "walk")
    ]


# ---------------------------------------------------------------------------------------------- end to end
def _tiny_run(d, *, stage: str = "stage2", label_text: str = "descriptions", seed: int = 0):
    """A finished run directory holding a tiny random-init model (no training): enough to test the plumbing."""
    import json

    import torch

    from zerohar.config import Config
    from zerohar.data.folds import load_folds
    from zerohar.model.zerohar import ModelConfig, ZeroHARModel
    from zerohar.paths import metadata_dir

    torch.manual_seed(seed)
    mcfg = ModelConfig(embed_dim=32, d_model=32, n_layers=1, n_heads=2, orig_d_model=32)
    cfg = Config(stage=stage, model=mcfg)
    cfg.train.label_text = label_text
    folds = load_folds("hapt")
    layout = SensorLayout.from_yaml(metadata_dir() / "sensors" / "hapt.yaml").canonical()
    meta = {"stage": stage, "dataset": "hapt", "fold": "fold1", "classes": list(folds.classes),
            "seen": folds.seen("fold1"), "unseen": folds.unseen("fold1"), "layout": layout.to_dict(),
            "window_s": 5.0, "subjects": {"train": [], "val": [], "test": []}, "label_text": label_text}
    ZeroHARModel(mcfg).save_pretrained(d, extra=meta)
    cfg.save(d / "config.yaml")
    (d / "metrics.json").write_text(json.dumps({"finished": True}))
    return d


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return _tiny_run(tmp_path_factory.mktemp("run") / "stage2")


@pytest.fixture(scope="module")
def hapt_csv(tmp_path_factory):
    """40 s of an embedded HAPT recording as a user would have it: a CSV with a time column first."""
    from zerohar.data.sources import embedded

    rec = embedded.read(progress=False)[0]
    n = int(40 * rec.rate)
    t = 100.0 + np.arange(n) / rec.rate
    p = tmp_path_factory.mktemp("rec") / "rec.csv"
    rows = "\n".join(",".join(f"{v:.5f}" for v in (ti, *xi)) for ti, xi in zip(t, rec.signals[:n].astype(float)))
    p.write_text("time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z\n" + rows + "\n")
    return p


def _read_csv(p):
    import csv

    with open(p, newline="") as f:
        return list(csv.DictReader(f))


def test_classify_writes_one_row_per_window_with_top_k(tiny_run, hapt_csv, tmp_path):
    from zerohar.inference.classify import classify_recording

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
    from zerohar.inference.classify import classify_recording

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
    from zerohar.inference.classify import classify_recording

    kw = {"labels": ["walking", "sitting", "lying"], "placement": "waist", "device": "smartphone",
          "progress": False, "precision": "fp32"}
    classify_recording(tiny_run, hapt_csv, tmp_path / "a.csv", chunk_rows=97, **kw)
    classify_recording(tiny_run, hapt_csv, tmp_path / "b.csv", chunk_rows=100_000, **kw)
    a, b = _read_csv(tmp_path / "a.csv"), _read_csv(tmp_path / "b.csv")
    assert [r["start_s"] for r in a] == [r["start_s"] for r in b]
    assert [r["label"] for r in a] == [r["label"] for r in b]
    np.testing.assert_allclose([float(r["score"]) for r in a], [float(r["score"]) for r in b], atol=2e-3)


def test_classify_with_a_saved_index_matches_labels(tiny_run, hapt_csv, tmp_path):
    from zerohar.inference.classify import build_label_index, classify_recording

    labels = ["walking", "sitting", "lying"]
    build_label_index(tiny_run, tmp_path / "idx", labels=labels)
    kw = {"placement": "waist", "device": "smartphone", "progress": False, "precision": "fp32"}
    classify_recording(tiny_run, hapt_csv, tmp_path / "a.csv", index_dir=tmp_path / "idx", **kw)
    classify_recording(tiny_run, hapt_csv, tmp_path / "b.csv", labels=labels, **kw)
    assert [r["label"] for r in _read_csv(tmp_path / "a.csv")] == [r["label"] for r in _read_csv(tmp_path / "b.csv")]


def test_an_index_of_another_model_is_refused(tiny_run, hapt_csv, tmp_path):
    from zerohar.inference.classify import build_label_index, classify_recording

    other = _tiny_run(tmp_path / "other", seed=1)
    build_label_index(other, tmp_path / "idx", labels=["walking", "sitting"])
    with pytest.raises(ZeroharError, match=r"idx was built by model sha256:\w+, not by the model given"):
        classify_recording(tiny_run, hapt_csv, tmp_path / "out.csv", index_dir=tmp_path / "idx",
                           placement="waist", device="smartphone", progress=False)
    assert not (tmp_path / "out.csv").exists()


def test_a_recording_shorter_than_a_window_is_refused_and_nothing_is_written(tiny_run, tmp_path):
    from zerohar.inference.classify import classify_recording

    p = tmp_path / "short.csv"
    t = np.arange(90) / 30.0  # 3 s
    x = _signal(t)
    p.write_text("time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z\n"
                 + "\n".join(",".join(f"{v:.5f}" for v in (ti, *xi)) for ti, xi in zip(t, x)) + "\n")
    with pytest.raises(ZeroharError, match=r"short.csv: the recording .* is shorter than one 5 s window"):
        classify_recording(tiny_run, p, tmp_path / "out.csv", labels=["walking", "sitting"], placement="waist",
                           device="smartphone", progress=False)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["short.csv"]


def test_classify_command_end_to_end(tiny_run, hapt_csv, tmp_path, capsys):
    from zerohar.cli import main

    out = tmp_path / "labels.csv"
    base = ["classify", "--model", str(tiny_run), "--input", str(hapt_csv), "--placement", "waist", "--device",
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


def test_parquet_without_pyarrow_is_a_clear_error(tmp_path):
    if _has_pyarrow():
        pytest.skip("pyarrow is installed")
    with pytest.raises(ZeroharError, match=r"x.parquet: writing Parquet needs pyarrow \(pip install pyarrow\)"):
        check_output(tmp_path / "x.parquet", force=False, suffixes=(".csv", ".parquet"))


def test_describe_asks_the_llm_only_for_labels_without_written_descriptions(monkeypatch, tmp_path):
    from llm_server import LLMServer

    from zerohar.text.label_rule import label_texts
    from zerohar.text.labels import load_label_descriptions

    monkeypatch.setenv("ZEROHAR_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with LLMServer() as server:
        texts = label_texts(["rock climbing", "walking"], dataset="hapt", describe=True,
                                   llm_model="test-model", base_url=server.url)
        assert server.labels_requested() == ["rock climbing"]
    assert texts["rock climbing"][0] == "rock climbing: body movement number 1."
    assert texts["walking"] == load_label_descriptions("hapt")["walking"]
    with pytest.raises(ZeroharError, match="--describe needs --llm-model"):
        label_texts(["rock climbing", "walking"], describe=True)


def test_labels_without_descriptions_fall_back_to_templates_and_names_runs_use_names():
    from zerohar.text.label_rule import label_texts
    from zerohar.text.labels import template_descriptions

    texts = label_texts(["rock climbing", "sitting"], dataset="hapt")
    assert texts["rock climbing"] == template_descriptions("rock climbing")
    assert len(texts["sitting"]) == 10 and texts["sitting"] != template_descriptions("sitting")
    assert label_texts(["a b", "c"], label_text="names") == {"a b": ["a b"], "c": ["c"]}
    written = label_texts(["rowing", "sitting"], written={"rowing": ["arms pull"]}, dataset="hapt")
    assert written["rowing"] == ["arms pull"]


def test_index_command(tiny_run, tmp_path, capsys):
    from zerohar.cli import main
    from zerohar.inference.index import LabelIndex

    out = tmp_path / "idx"
    assert main(["index", "--model", str(tiny_run), "--dataset", "hapt", "--out", str(out)]) == 0
    assert "label index with 12 labels (120 descriptions)" in capsys.readouterr().out
    assert len(LabelIndex.load(out)) == 12
    assert main(["index", "--model", str(tiny_run), "--labels", "a", "b", "--out", str(out)]) == 2
    assert "idx already exists; pass --force to overwrite it" in capsys.readouterr().err


def test_datetime_input_gets_a_start_time_column(tiny_run, tmp_path):
    from datetime import datetime, timedelta, timezone

    from zerohar.inference.classify import classify_recording

    t0 = datetime(2024, 3, 1, 9, 30, 0, tzinfo=timezone.utc)
    t = np.arange(30 * 12) / 30.0
    x = _signal(t)
    stamps = [(t0 + timedelta(seconds=float(s))).strftime("%Y-%m-%dT%H:%M:%S.%f") for s in t]
    p = tmp_path / "dt.csv"
    p.write_text("timestamp,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z\n"
                 + "\n".join(",".join([s, *(f"{v:.5f}" for v in xi)]) for s, xi in zip(stamps, x)) + "\n")
    classify_recording(tiny_run, p, tmp_path / "out.csv", labels=["walking", "sitting"], placement="waist",
                       device="smartphone", progress=False)
    rows = _read_csv(tmp_path / "out.csv")
    assert list(rows[0])[:3] == ["start_s", "start_time", "label"]
    assert [r["start_time"] for r in rows] == [
        (t0 + timedelta(seconds=2.5 * i)).isoformat(timespec="milliseconds") for i in range(len(rows))
    ]


def test_a_recording_with_other_sensors_is_classified_with_a_warning(tiny_run, tmp_path, caplog):
    from zerohar.inference.classify import classify_recording

    t = np.arange(30 * 12) / 30.0
    x = _signal(t)[:, :3]  # a wrist accelerometer only; the model knows waist acc + gyro
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
