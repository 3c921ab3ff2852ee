"""Sources hapt, shoulder, spswhar and the embedded HAPT derivative; the source registry.

Real files (../shared/data via the `shared_data` fixture, small subsets copied to tmp where a whole dataset is
not needed) and format fixtures written here in the exact raw layout (for alignment and bad input).
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import hapt_subset

from zerohar.data.folds import load_folds
from zerohar.data.sources import SOURCES, embedded, fetch_archive, get_source, hapt, shoulder, spswhar
from zerohar.data.transforms import to_canonical
from zerohar.errors import ZeroharError


# ---------------------------------------------------------------------------------------------- registry
def test_registry_names_every_source_and_rejects_unknown_ones():
    assert set(SOURCES) == {"hapt", "shoulder", "spswhar", "csv", "pamap2", "opportunity", "uschad", "wisdm", "harth"}
    assert get_source("hapt") is hapt
    with pytest.raises(ZeroharError, match="unknown dataset 'hpat': expected one of csv, hapt, harth, "):
        get_source("hpat")


def test_source_modules_are_imported_lazily():
    code = "import sys, zerohar.data.sources; print(any(m.endswith(('.hapt', '.spswhar')) for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("name", ["hapt", "shoulder", "spswhar"])
def test_core_sources_follow_the_contract(name):
    mod = get_source(name)
    assert mod.NAME == name and mod.URL.startswith("https://") and Path(mod.DEFAULT_LAYOUT).is_file()
    assert callable(mod.read) and callable(mod.download)


# ---------------------------------------------------------------------------------------------- hapt
def test_hapt_reports_61_recordings_30_users_1214_segments(shared_data, caplog):
    raw = shared_data / "hapt" / "RawData"
    caplog.set_level("INFO")
    recs = hapt.read(shared_data / "hapt", progress=False)
    segments = np.loadtxt(raw / "labels.txt", dtype=np.int64)
    # What the files hold, and the figures issue 2 states for the UCI release.
    assert len(recs) == len(list(raw.glob("acc_exp*.txt"))) == 61
    assert len({r.subject for r in recs}) == len(np.unique(segments[:, 1])) == 30
    assert sum(r.meta["n_segments"] for r in recs) == len(segments) == 1214
    assert "hapt: 61 recordings, 30 users, 1,214 labelled segments" in caplog.text
    assert all(r.rate == 50.0 and r.signals.shape[1] == 6 for r in recs)


def test_hapt_segments_are_zero_based_and_inclusive(shared_data, tmp_path):
    root = hapt_subset(shared_data, tmp_path, [1])
    (rec,) = hapt.read(root, progress=False)
    segs = np.loadtxt(root / "RawData" / "labels.txt", dtype=np.int64)
    segs = segs[segs[:, 0] == 1]
    classes = list(load_folds("hapt").classes)
    for _, _, aid, a, b in segs:
        cls = classes.index(hapt.ACTIVITIES[aid])
        assert rec.labels[a] == cls and rec.labels[b] == cls
    first, last = segs[:, 3].min(), segs[:, 4].max()
    assert (rec.labels[:first] == -1).all() and (rec.labels[last + 1 :] == -1).all()
    assert (rec.labels >= 0).sum() == (segs[:, 4] - segs[:, 3] + 1).sum()
    # acc in g, gyro in rad/s: the declared units pass the plausibility check
    assert np.median(np.linalg.norm(rec.signals[:, :3], axis=1)) == pytest.approx(1.0, abs=0.1)
    assert to_canonical(rec)[0].n_samples == pytest.approx(rec.n_samples * 0.6, abs=1)


def test_hapt_bad_input(shared_data, tmp_path):
    root = hapt_subset(shared_data, tmp_path, [1])
    raw = root / "RawData"
    with pytest.raises(ZeroharError, match=f"hapt: data directory {tmp_path / 'nope'} does not exist"):
        hapt.read(tmp_path / "nope")
    (raw / "gyro_exp01_user01.txt").rename(raw / "gyro.bak")
    with pytest.raises(ZeroharError, match="hapt: gyroscope file .*gyro_exp01_user01.txt does not exist"):
        hapt.read(root, progress=False)
    (raw / "gyro_exp01_user01.txt").write_text("0.1 0.2\n0.3 0.4\n")
    with pytest.raises(ZeroharError, match="gyro_exp01_user01.txt has 2 values per line; expected 3"):
        hapt.read(root, progress=False)
    (raw / "gyro.bak").rename(raw / "gyro_exp01_user01.txt")
    (raw / "labels.txt").write_text("1 1 5 250 999999\n")
    with pytest.raises(ZeroharError, match="labels.txt has a segment of experiment 1 outside samples 0-"):
        hapt.read(root, progress=False)
    (raw / "labels.txt").write_text("1 1 walking 250 300\n")
    with pytest.raises(ZeroharError, match="labels.txt is not five integers per line"):
        hapt.read(root, progress=False)


# ---------------------------------------------------------------------------------------------- shoulder
def test_shoulder_reads_every_set_with_its_exercise_and_side(shared_data):
    root = shared_data / "shoulder-exercises"
    recs = shoulder.read(root, progress=False)
    with open(root / "index.csv", newline="") as f:
        index = list(csv.DictReader(f))
    classes = list(load_folds("shoulder").classes)
    assert len(recs) == len(index)
    for rec, row in zip(recs, index):
        assert rec.n_samples == int(row["samples"])
        assert set(rec.labels.tolist()) == {classes.index(row["exercise"])}
        assert rec.meta["side"] == row["side"] and rec.subject == f"{int(row['subject']):02d}"
    assert {r.layout.sensors[0].placement for r in recs} == {"wrist"}
    pieces = to_canonical(recs[0])  # g / rad/s pass the unit check
    assert pieces[0].rate == 30.0


def _write_shoulder(root: Path, rows: list[list], series: dict[str, np.ndarray]) -> Path:
    (root / "series").mkdir(parents=True)
    with open(root / "index.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(shoulder.INDEX_COLUMNS)
        w.writerows(rows)
    for name, a in series.items():
        np.savetxt(root / name, a, delimiter=",", fmt="%.5f", header="ax,ay,az,wx,wy,wz", comments="")
    return root


def test_shoulder_bad_input(tmp_path):
    a = np.tile([0.0, 0.0, 1.0, 0.1, 0.0, 0.0], (120, 1))
    root = _write_shoulder(tmp_path / "ok", [["series/000.csv", 3, 1, "PEN", "pendulum", 100]], {"series/000.csv": a})
    with pytest.raises(ZeroharError, match="000.csv has 120 samples but index.csv says 100; expected equal"):
        shoulder.read(root, progress=False)
    root = _write_shoulder(tmp_path / "code", [["series/000.csv", 3, 1, "XYZ", "jumping", 120]], {"series/000.csv": a})
    with pytest.raises(ZeroharError, match="index.csv line 2 has exercise code 'XYZ'; expected one of PEN"):
        shoulder.read(root, progress=False)
    (tmp_path / "cols").mkdir()
    (tmp_path / "cols" / "index.csv").write_text("file,subject,exercise\n")
    with pytest.raises(ZeroharError, match=r"index.csv has columns \['file', 'subject', 'exercise'\]; expected"):
        shoulder.read(tmp_path / "cols", progress=False)


def test_shoulder_release_conversion_and_restricted_unpickling(tmp_path):
    rng = np.random.default_rng(0)
    release = {
        "X": [rng.normal(0, 0.1, (60, 6)), rng.normal(0, 0.1, (80, 6))],
        "y": np.array([0, 6]), "subject": np.array([4, 9]), "side": np.array([1.0, 0.0]),
        "y_labels": ["PEN", "ABD", "FEL", "IR", "ER", "TRAP", "ROW"], "X_labels": ["ax", "ay", "az", "wx", "wy", "wz"],
    }
    np.save(tmp_path / "watch.npy", np.array(release, dtype=object), allow_pickle=True)
    shoulder.convert_release(tmp_path / "watch.npy", tmp_path / "out")
    recs = shoulder.read(tmp_path / "out", progress=False)
    assert [r.n_samples for r in recs] == [60, 80] and [r.subject for r in recs] == ["04", "09"]
    assert [r.meta["exercise"] for r in recs] == ["pendulum", "bent-over row"]
    np.testing.assert_allclose(recs[1].signals, release["X"][1], atol=1e-5)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    np.save(tmp_path / "evil.npy", np.array({"X": Evil()}, dtype=object), allow_pickle=True)
    with pytest.raises(ZeroharError, match="holds an object of type builtins.print; refusing to unpickle it"):
        shoulder.convert_release(tmp_path / "evil.npy", tmp_path / "out2")
    assert not (tmp_path / "out2" / "index.csv").exists()


# ---------------------------------------------------------------------------------------------- spswhar
def _write_device(path: Path, t_ms: np.ndarray, acc: np.ndarray, gyro: np.ndarray, labels: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(spswhar.COLUMNS)
        for i in range(len(t_ms)):
            w.writerow([*acc[i], *gyro[i], int(t_ms[i]), labels[i]])


def test_spswhar_aligns_phone_and_watch_by_timestamp_into_one_recording(tmp_path):
    rng = np.random.default_rng(3)
    t0 = 1_657_533_977_000
    # Phone: jittered ~100 Hz with batches of equal timestamps; watch starts 1.5 s later and stops 1 s earlier.
    tp = t0 + np.sort(np.round(np.cumsum(rng.choice([0, 9, 10, 11, 23], 1200)))).astype(np.int64)
    tw = t0 + 1500 + np.arange(0, tp[-1] - t0 - 2500, 10)
    # acc x encodes time, so the alignment can be checked: phone x = 9.81 * t (s), watch x = 9.81 * 2 t.
    acc_p = np.stack([9.81 * (tp - t0) / 1000, np.zeros(len(tp)), np.full(len(tp), 9.81)], axis=1)
    acc_w = np.stack([9.81 * 2 * (tw - t0) / 1000, np.zeros(len(tw)), np.full(len(tw), 9.81)], axis=1)
    lab = lambda t: ["SEATED" if x - t0 < 4000 else "WALKING" for x in t]  # noqa: E731
    _write_device(tmp_path / "DATA/s01/s01_01_sp.csv", tp, acc_p, np.zeros((len(tp), 3)), lab(tp))
    _write_device(tmp_path / "DATA/s01/s01_01_sw.csv", tw, acc_w, np.zeros((len(tw), 3)), lab(tw))
    (rec,) = spswhar.read(tmp_path, progress=False)
    assert rec.signals.shape[1] == 12 and rec.rate == 100.0
    assert {s.placement for s in rec.layout.sensors} == {"trouser pocket", "wrist"}
    assert rec.meta["start_unix_s"] == pytest.approx((t0 + 1500) / 1000)
    assert rec.n_samples == pytest.approx((tw[-1] - tw[0]) / 10 + 1, abs=1)  # the overlap only
    tt = (t0 + 1500) / 1000 + np.arange(rec.n_samples) / 100 - t0 / 1000  # seconds since t0
    np.testing.assert_allclose(rec.signals[:, 0], 9.81 * tt, atol=1e-6)  # phone, interpolated on the common base
    np.testing.assert_allclose(rec.signals[:, 6], 9.81 * 2 * tt, atol=1e-6)  # watch
    classes = list(load_folds("spswhar").classes)
    assert rec.labels[0] == classes.index("seated") and rec.labels[-1] == classes.index("walking")
    (piece,) = to_canonical(rec)
    assert piece.layout.sensors[0].unit == "g" and piece.signals[0, 2] == pytest.approx(9.81 / 9.80665, rel=1e-3)


def test_spswhar_real_subject(shared_data, tmp_path):
    shutil.copytree(shared_data / "sp-sw-har" / "DATA" / "s01", tmp_path / "DATA" / "s01")
    recs = spswhar.read(tmp_path, progress=False)
    assert len(recs) == len(list((tmp_path / "DATA" / "s01").glob("*_sp.csv")))
    for rec in recs:
        pieces = to_canonical(rec)  # m/s^2 declared: the unit check passes
        norm = np.median(np.linalg.norm(pieces[0].signals[:, :3], axis=1))
        assert norm == pytest.approx(1.0, abs=0.15)
        assert set(np.unique(rec.labels)) <= set(range(5)) | {-1}


def test_spswhar_bad_input(tmp_path):
    t = 1_000_000 + np.arange(300) * 10
    z = np.zeros((300, 3))
    _write_device(tmp_path / "DATA/s01/s01_01_sp.csv", t, z + [0, 0, 9.8], z, ["JUMPING"] * 300)
    _write_device(tmp_path / "DATA/s01/s01_01_sw.csv", t, z + [0, 0, 9.8], z, ["SEATED"] * 300)
    with pytest.raises(ZeroharError, match="s01_01_sp.csv has label 'JUMPING'; expected one of SEATED"):
        spswhar.read(tmp_path, progress=False)
    tb = t.copy()
    tb[100] = tb[50]
    _write_device(tmp_path / "DATA/s01/s01_01_sp.csv", tb, z + [0, 0, 9.8], z, ["SEATED"] * 300)
    with pytest.raises(ZeroharError, match="s01_01_sp.csv line 102: timestamp goes backwards"):
        spswhar.read(tmp_path, progress=False)
    _write_device(tmp_path / "DATA/s01/s01_01_sp.csv", t + 10_000, z + [0, 0, 9.8], z, ["SEATED"] * 300)
    with pytest.raises(ZeroharError, match="s01_01_sp.csv and s01_01_sw.csv do not overlap in time"):
        spswhar.read(tmp_path, progress=False)
    with pytest.raises(ZeroharError, match="spswhar: .* has no DATA/ folder"):
        spswhar.read(tmp_path / "DATA" / "s01", progress=False)


# ---------------------------------------------------------------------------------------------- embedded
def test_embedded_hapt_is_small_complete_and_canonical():
    p = embedded.path()
    assert p.stat().st_size <= 10 * 1024 * 1024
    assert (p.parent / "HAPT_ATTRIBUTION.md").read_text().count("CC BY 4.0") >= 1
    recs = embedded.read()
    assert len(recs) == 61 and len({r.subject for r in recs}) == 30
    assert all(r.rate == 30.0 for r in recs)
    assert [s.unit for s in recs[0].layout.sensors] == ["g", "rad/s"]
    assert recs[0].meta["class_names"] == list(load_folds("hapt").classes)
    labels = np.concatenate([r.labels for r in recs])
    assert set(np.unique(labels)) == set(range(12)) | {-1}


def test_embedded_matches_the_raw_files(shared_data, tmp_path):
    root = hapt_subset(shared_data, tmp_path, [5, 6])
    raw = [to_canonical(r)[0] for r in hapt.read(root, progress=False)]
    emb = {r.name: r for r in embedded.read()}
    for r in raw:
        e = emb[r.name]
        np.testing.assert_array_equal(e.labels, r.labels)
        np.testing.assert_allclose(e.signals, r.signals, atol=4e-3)  # float16 storage


def test_embedded_round_trip_and_foreign_file(tmp_path):
    recs = embedded.read()[:2]
    out = embedded.write(recs, recs[0].meta["class_names"], tmp_path / "e.npz", {"note": "test"})
    back = embedded.read(out)
    assert [r.name for r in back] == [r.name for r in recs]
    np.testing.assert_array_equal(back[1].signals, recs[1].signals)
    np.savez(tmp_path / "x.npz", a=np.zeros(3))
    with pytest.raises(ZeroharError, match="x.npz is not zerohar's embedded data"):
        embedded.read(tmp_path / "x.npz")


# ---------------------------------------------------------------------------------------------- download
def test_fetch_archive_unpacks_into_place_and_refuses_escaping_members(tmp_path):
    import zipfile

    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as z:
        z.writestr("HAPT/RawData/labels.txt", "1 1 5 0 10\n")
    root = fetch_archive(good.as_uri(), tmp_path / "data", progress=False)
    assert (root / "HAPT" / "RawData" / "labels.txt").read_text() == "1 1 5 0 10\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "good.zip"]  # no temporary left behind
    with pytest.raises(ZeroharError, match="download destination .*data is not empty"):
        fetch_archive(good.as_uri(), root, progress=False)
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../../escaped.txt", "x")
    with pytest.raises(ZeroharError, match="archive member '../../escaped.txt' would be written outside"):
        fetch_archive(evil.as_uri(), tmp_path / "data2", progress=False)
    assert not (tmp_path / "data2").exists() and not (tmp_path.parent / "escaped.txt").exists()
