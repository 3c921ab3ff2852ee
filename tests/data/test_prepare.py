"""prepare / load_windowset / `zerohar prepare`: caching, outputs, the embedded default, bad input."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import hapt_subset

from zerohar.cli import main
from zerohar.data.folds import load_folds
from zerohar.data.prepare import class_table, load_windowset, prepare
from zerohar.data.windows import WindowSet
from zerohar.errors import ZeroharError
from zerohar.paths import cache_dir


def _csv_dataset(root: Path, n_files: int = 2, n: int = 1000) -> Path:
    rng = np.random.default_rng(0)
    for k in range(n_files):
        t = np.arange(n) / 50.0
        x = np.c_[rng.normal(0, 0.2, (n, 2)), 1 + rng.normal(0, 0.05, n)]
        lab = np.where(t < 10, "walking", "sitting")
        lines = ["time,acc_x,acc_y,acc_z,label"] + [f"{t[i]:.3f},{x[i, 0]:.4f},{x[i, 1]:.4f},{x[i, 2]:.4f},{lab[i]}"
                                                   for i in range(n)]
        root.mkdir(parents=True, exist_ok=True)
        (root / f"p{k}.csv").write_text("\n".join(lines) + "\n")
    return root


def _cached() -> list[Path]:
    d = cache_dir() / "windows"
    return sorted(d.glob("*.npz")) if d.is_dir() else []


# ---------------------------------------------------------------------------------------------- embedded
def test_load_windowset_hapt_without_root_is_the_embedded_derivative():
    ws = load_windowset("hapt")
    assert ws.X.shape[1:] == (6, 150) and ws.X.dtype == np.float32 and ws.rate == 30.0
    assert ws.class_names == list(load_folds("hapt").classes)
    assert set(np.unique(ws.y[ws.y >= 0])) == set(range(12))
    assert len(np.unique(ws.subject)) == 30
    assert ws.meta["dataset"] == "hapt" and ws.meta["root"].endswith("hapt30.npz")
    assert load_windowset("hapt", window_s=10.0).X.shape[1:] == (6, 300)


# ---------------------------------------------------------------------------------------------- caching
def test_prepare_caches_by_settings_and_file_fingerprint(tmp_path, caplog):
    root = _csv_dataset(tmp_path / "data")
    opts = {"placement": "wrist", "device": "watch", "progress": False}
    before = set(_cached())
    ws = prepare("csv", root, **opts)
    assert ws.class_names == ["sitting", "walking"] and ws.X.shape[1:] == (3, 150)
    new = set(_cached()) - before
    assert len(new) == 1
    caplog.set_level("INFO")
    again = prepare("csv", root, **opts)
    assert "from the cache" in caplog.text
    np.testing.assert_array_equal(again.X, ws.X)
    # Another step, or a changed file, is another cache entry.
    assert len(prepare("csv", root, step_s=1.0, **opts)) > len(ws)
    f = root / "p0.csv"
    f.write_text(f.read_text().replace("walking", "running"))
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    assert prepare("csv", root, **opts).class_names == ["running", "sitting", "walking"]
    assert len(set(_cached()) - before) == 3


def test_prepare_out_is_not_overwritten_without_force(tmp_path):
    root = _csv_dataset(tmp_path / "data", n_files=1)
    out = tmp_path / "w.npz"
    out.write_bytes(b"keep me")
    with pytest.raises(ZeroharError, match=f"output {out} already exists; pass --force to overwrite it"):
        prepare("csv", root, out=out, placement="wrist", device="watch", progress=False)
    assert out.read_bytes() == b"keep me"
    ws = prepare("csv", root, out=out, force=True, placement="wrist", device="watch", progress=False)
    back = WindowSet.load(out)
    np.testing.assert_array_equal(back.X, ws.X)
    assert back.meta["dataset"] == "csv"


def test_prepare_unlabelled_csv_gives_unlabelled_windows(tmp_path):
    f = tmp_path / "free.csv"
    f.write_text("time,ax,ay,az\n" + "".join(f"{i / 25:.2f},0.01,0.02,0.99\n" for i in range(500)))
    ws = prepare("csv", f, placement="thigh", device="activPAL", progress=False)
    assert ws.class_names == [] and len(ws) == 6 and (ws.y == -1).all()  # 19.96 s: windows at 0, 2.5, ..., 12.5 s


def test_prepare_csv_with_a_folds_file_orders_classes(tmp_path):
    root = _csv_dataset(tmp_path / "data", n_files=1)
    folds = tmp_path / "folds.yaml"
    folds.write_text("classes: [walking, sitting, lying]\nfolds:\n  fold1: {unseen: [lying]}\n")
    ws = prepare("csv", root, folds=folds, placement="wrist", device="watch", progress=False)
    assert ws.class_names == ["walking", "sitting", "lying"]
    assert ws.class_counts()["walking"] > 0 and ws.class_counts()["lying"] == 0


# ---------------------------------------------------------------------------------------------- bad input
def test_prepare_bad_input_writes_nothing(tmp_path):
    before = set(_cached())
    out = tmp_path / "o.npz"
    with pytest.raises(ZeroharError, match="unknown dataset 'mnist': expected one of csv, hapt"):
        prepare("mnist", tmp_path, out=out)
    with pytest.raises(ZeroharError, match=f"shoulder: data directory or file {tmp_path / 'none'} does not exist; "
                                           "pass --download to fetch https://"):
        prepare("shoulder", tmp_path / "none", out=out)
    short = _csv_dataset(tmp_path / "short", n_files=1, n=150)  # 3 s at 50 Hz
    with pytest.raises(ZeroharError, match=r"recording 'p0' \(.*p0.csv\) is 3.0 s long, shorter than one 5 s window"):
        prepare("csv", short, out=out, placement="wrist", device="watch", progress=False)
    with pytest.raises(ZeroharError, match="dataset 'shoulder' does not take the option 'placement'"):
        prepare("shoulder", tmp_path, placement="wrist")
    with pytest.raises(ZeroharError, match="output .*o.txt: expected a .npz file name"):
        prepare("hapt", out=tmp_path / "o.txt")
    with pytest.raises(ZeroharError, match="window length must be positive, found -5"):
        prepare("hapt", window_s=-5)
    assert not out.exists() and set(_cached()) == before


def test_load_windowset_checks_a_prepared_file(tmp_path):
    root = _csv_dataset(tmp_path / "data", n_files=1)
    out = tmp_path / "w.npz"
    prepare("csv", root, out=out, placement="wrist", device="watch", progress=False)
    assert len(load_windowset(data=out)) > 0
    with pytest.raises(ZeroharError, match="w.npz holds windows of 150 samples \\(5 s\\); expected 300 \\(10 s\\)"):
        load_windowset(data=out, window_s=10.0)
    with pytest.raises(ZeroharError, match="w.npz was prepared from dataset 'csv', not 'hapt'"):
        load_windowset("hapt", data=out)
    with pytest.raises(ZeroharError, match="give a dataset name or a prepared window set"):
        load_windowset()


# ---------------------------------------------------------------------------------------------- command
def test_command_prepares_csv_and_prints_the_class_table(tmp_path, capsys):
    root = _csv_dataset(tmp_path / "data")
    out = tmp_path / "w.npz"
    code = main(["prepare", "--data-format", "csv", "--root", str(root), "--placement", "left wrist", "--device",
                 "smartwatch", "--out", str(out), "--no-progress"])
    assert code == 0 and out.is_file()
    text = capsys.readouterr().out
    ws = WindowSet.load(out)
    assert class_table(ws) in text
    for name, count in ws.class_counts().items():
        assert any(line.split()[0] == name and f"{count:,}" in line for line in text.splitlines())
    assert f"csv: {len(ws):,} windows (" in text


def test_command_reports_bad_input_in_one_line(tmp_path, capsys):
    code = main(["prepare", "--dataset", "csv", "--root", str(tmp_path / "missing.csv"), "--placement", "w",
                 "--device", "d"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert err == f"zerohar prepare: error: csv: data directory or file {tmp_path / 'missing.csv'} does not exist"


# ---------------------------------------------------------------------------------------------- real files
def test_prepare_hapt_subset_and_window_lengths(shared_data, tmp_path):
    root = hapt_subset(shared_data, tmp_path, [1, 2])
    five = prepare("hapt", root, progress=False)
    ten = prepare("hapt", root, window_s=10.0, progress=False)
    assert five.X.shape[1:] == (6, 150) and ten.X.shape[1:] == (6, 300)
    assert set(five.subject) == {"01"} and five.meta["n_raw_recordings"] == 2
    # Step is half a window: consecutive windows of a recording start 2.5 s (5 s) apart.
    assert np.allclose(np.diff(five.start[five.recording == 0]), 2.5)
    assert np.allclose(np.diff(ten.start[ten.recording == 0]), 5.0)


def test_prepare_full_hapt_gives_12_classes_from_30_subjects(shared_data, tmp_path):
    out = tmp_path / "hapt.npz"
    assert main(["prepare", "--dataset", "hapt", "--root", str(shared_data / "hapt"), "--out", str(out),
                 "--no-progress"]) == 0
    ws = WindowSet.load(out)
    labelled = ws.y >= 0
    assert len(np.unique(ws.y[labelled])) == 12 and len(np.unique(ws.subject[labelled])) == 30
    emb = load_windowset("hapt")
    np.testing.assert_array_equal(ws.y, emb.y)  # the embedded derivative gives the same windows
    np.testing.assert_allclose(ws.X, emb.X, atol=5e-3)


def test_prepare_spswhar_defaults_to_one_window_per_segment(shared_data, tmp_path):
    shutil.copytree(shared_data / "sp-sw-har" / "DATA" / "s02", tmp_path / "DATA" / "s02")
    seg = prepare("spswhar", tmp_path, progress=False)
    assert seg.X.shape[1:] == (12, 150)
    assert set(np.unique(seg.y)) == set(range(5))  # every class, including the 1-2 s transitions
    sliding = prepare("spswhar", tmp_path, per_trial=False, progress=False)
    assert sliding.class_counts()["standing up"] == 0  # why the default is per segment
