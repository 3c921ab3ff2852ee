"""The generic csv source (and .npy / .npz recordings): column names, layouts, labels, streaming, bad input."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import yaml

from zerohar.data.sources import csv as csv_source
from zerohar.data.sources.csv import open_csv_stream
from zerohar.data.transforms import STANDARD_GRAVITY, canonical_stream, make_windows, to_canonical
from zerohar.errors import ZeroharError

RATE = 50.0


def _write(path: Path, header: list[str], rows: list[list], delimiter: str = ",") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [delimiter.join(header)] + [delimiter.join(str(v) for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _signal(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.c_[rng.normal(0, 0.2, (n, 2)), 1 + rng.normal(0, 0.05, n)]


def _acc_file(path: Path, n: int = 600, names=("acc_x", "acc_y", "acc_z"), labels=None, subjects=None, t0=0.0,
              scale=1.0) -> Path:
    x = _signal(n) * scale
    header = ["time", *names] + (["label"] if labels is not None else []) + (["subject"] if subjects else [])
    rows = []
    for i in range(n):
        row = [f"{t0 + i / RATE:.4f}", *(f"{v:.5f}" for v in x[i])]
        if labels is not None:
            row.append(labels[i])
        if subjects:
            row.append(subjects[i])
        rows.append(row)
    return _write(path, header, rows)


def _layout_file(path: Path, channels: list[dict]) -> Path:
    path.write_text(yaml.safe_dump({"name": "mine", "channels": channels}))
    return path


# ---------------------------------------------------------------------------------------------- columns
@pytest.mark.parametrize(
    "names",
    [("acc_x", "acc_y", "acc_z"), ("ax", "ay", "az"), ("accel_x", "accel_y", "accel_z"), ("x_acc", "y_acc", "z_acc"),
     ("AccX", "AccY", "AccZ"), ("Acc X", "Acc Y", "Acc Z")],
)
def test_accelerometer_column_aliases(tmp_path, names):
    rec = csv_source.read_csv_recording(_acc_file(tmp_path / "a.csv", names=names), placement="left wrist",
                                        device="smartwatch")
    assert rec.layout.columns == names
    assert [(s.sensor, s.placement, s.device, s.unit) for s in rec.layout.sensors] == [
        ("acc", "left wrist", "smartwatch", "g")]
    np.testing.assert_allclose(rec.timestamps[:3], [0, 0.02, 0.04])


def test_gyro_and_magnetometer_aliases_make_three_sensors(tmp_path):
    header = ["t", "ax", "ay", "az", "gx", "gy", "gz", "mag_x", "mag_y", "mag_z"]
    rows = [[i / RATE, 0, 0, 1, 0.1, 0, 0, 20, 0, 40] for i in range(100)]
    rec = csv_source.read_csv_recording(_write(tmp_path / "g.csv", header, rows), placement="hip", device="IMU")
    assert [s.sensor for s in rec.layout.sensors] == ["acc", "gyro", "mag"]
    wx = ["time", "wx", "wy", "wz", "acc_x", "acc_y", "acc_z"]
    rec = csv_source.read_csv_recording(_write(tmp_path / "w.csv", wx, [[i, 1, 2, 3, 0, 0, 1] for i in range(9)]),
                                        placement="hip", device="IMU")
    # Canonical order is sensor by sensor as the file lists them; the gyro triad keeps x, y, z.
    assert rec.layout.columns == ("wx", "wy", "wz", "acc_x", "acc_y", "acc_z")
    np.testing.assert_array_equal(rec.signals[0], [1, 2, 3, 0, 0, 1])


def test_layout_file_maps_columns_and_declares_units(tmp_path):
    x = _signal(300) * STANDARD_GRAVITY
    rows = [[i / RATE, *x[i], 0.0, 0.0, 90.0] for i in range(300)]
    path = _write(tmp_path / "r.csv", ["time", "A1", "A2", "A3", "G1", "G2", "G3"], rows)
    chans = [{"column": f"A{i + 1}", "sensor": "acc", "axis": a, "placement": "chest", "device": "Shimmer",
              "unit": "m/s^2"} for i, a in enumerate("xyz")]
    chans += [{"column": f"G{i + 1}", "sensor": "gyro", "axis": a, "placement": "chest", "device": "Shimmer",
               "unit": "deg/s"} for i, a in enumerate("xyz")]
    rec = csv_source.read_csv_recording(path, layout=_layout_file(tmp_path / "l.yaml", chans))
    (piece,) = to_canonical(rec)
    assert np.median(piece.signals[:, 2]) == pytest.approx(1.0, abs=0.05)  # m/s^2 -> g
    np.testing.assert_allclose(piece.signals[:, 5], np.pi / 2, rtol=1e-5)  # deg/s -> rad/s


def test_layout_without_column_keys_finds_channels_by_name(tmp_path):
    chans = [{"sensor": "acc", "axis": a, "placement": "ankle", "device": "watch", "unit": "g"} for a in "xyz"]
    rec = csv_source.read_csv_recording(_acc_file(tmp_path / "a.csv", names=("x_acc", "y_acc", "z_acc")),
                                        layout=_layout_file(tmp_path / "l.yaml", chans))
    assert rec.layout.sensors[0].placement == "ankle" and rec.signals.shape == (600, 3)


# ---------------------------------------------------------------------------------------------- labels, time
def test_labels_subjects_and_class_names(tmp_path):
    n = 900
    labels = ["walking"] * 400 + [""] * 100 + ["cycling"] * 400
    subjects = ["p1"] * 450 + ["p2"] * 450
    path = _acc_file(tmp_path / "a.csv", n, labels=labels, subjects=subjects)
    recs = csv_source.read(path, progress=False, placement="wrist", device="watch")
    assert [r.subject for r in recs] == ["p1", "p2"]
    assert recs[0].meta["class_names"] == ["cycling", "walking"]  # sorted label texts
    lab = np.concatenate([r.labels for r in recs])
    np.testing.assert_array_equal(lab, [1] * 400 + [-1] * 100 + [0] * 400)
    # With class names from a folds file: that ordering, and an unknown label is an error.
    recs = csv_source.read(path, progress=False, placement="wrist", device="watch",
                           class_names=["walking", "cycling", "running"])
    assert recs[1].labels[-1] == 1
    with pytest.raises(ZeroharError, match="a.csv: label 'cycling' is not one of the classes \\(walking, running\\)"):
        csv_source.read(path, progress=False, placement="wrist", device="watch", class_names=["walking", "running"])
    with pytest.raises(ZeroharError, match="a.csv holds 2 subjects; read it as a dataset"):
        csv_source.read_csv_recording(path, placement="wrist", device="watch")


def test_a_folder_is_a_dataset(tmp_path):
    for k in range(3):
        _acc_file(tmp_path / "data" / f"s{k}.csv", 400, labels=["sit" if k else "lie"] * 400)
    recs = csv_source.read(tmp_path / "data", progress=False, placement="wrist", device="watch")
    assert [r.subject for r in recs] == ["s0", "s1", "s2"]
    ws = make_windows([p for r in recs for p in to_canonical(r)], recs[0].meta["class_names"])
    assert ws.class_counts() == {"lie": 2, "sit": 4}  # 8 s per file: windows at 0 s and 2.5 s


def test_iso_datetimes_and_semicolons(tmp_path):
    start = dt.datetime(2024, 3, 1, 8, 0, 0)
    rows = [[(start + dt.timedelta(seconds=i / RATE)).isoformat(timespec="milliseconds") + "Z", 0, 0, 1]
            for i in range(300)]
    rec = csv_source.read_csv_recording(_write(tmp_path / "d.csv", ["timestamp", "ax", "ay", "az"], rows, ";"),
                                        placement="wrist", device="watch")
    epoch = start.replace(tzinfo=dt.timezone.utc).timestamp()
    np.testing.assert_allclose(rec.timestamps - epoch, np.arange(300) / RATE, atol=1e-6)
    naive = [[(start + dt.timedelta(seconds=i / RATE)).isoformat(), 0, 0, 1] for i in range(300)]
    rec = csv_source.read_csv_recording(_write(tmp_path / "n.csv", ["datetime", "ax", "ay", "az"], naive),
                                        placement="wrist", device="watch")
    np.testing.assert_allclose(rec.timestamps - epoch, np.arange(300) / RATE, atol=1e-6)
    assert csv_source.open_csv_stream(tmp_path / "n.csv", placement="w", device="d").absolute_time


def test_empty_cells_are_missing_values_and_get_interpolated(tmp_path):
    rows = [[i / RATE, "" if 100 <= i < 105 else 0.5, 0, 1] for i in range(400)]
    rec = csv_source.read_csv_recording(_write(tmp_path / "e.csv", ["time", "ax", "ay", "az"], rows),
                                        placement="wrist", device="watch")
    assert np.isnan(rec.signals[100:105, 0]).all()
    (piece,) = to_canonical(rec)
    assert piece.meta["canonical_stats"]["nan_interpolated"] == 5
    np.testing.assert_allclose(piece.signals[:, 0], 0.5, atol=1e-6)


# ---------------------------------------------------------------------------------------------- streaming
def test_chunks_stream_the_same_rows_and_canonical_signal(tmp_path):
    path = _acc_file(tmp_path / "a.csv", 5000, labels=["walk"] * 5000)
    whole = csv_source.read_csv_recording(path, placement="wrist", device="watch")
    chunks = list(csv_source.iter_csv_chunks(path, chunk_rows=700, placement="wrist", device="watch"))
    assert max(len(c[0]) for c in chunks) == 700 and sum(len(c[0]) for c in chunks) == 5000
    np.testing.assert_array_equal(np.concatenate([c[1] for c in chunks]), whole.signals)
    stream = csv_source.open_csv_stream(path, placement="wrist", device="watch", chunk_rows=700, class_names=["walk"])
    pieces = list(canonical_stream(stream.chunks, stream.layout))
    (ref,) = to_canonical(whole)
    np.testing.assert_allclose(np.concatenate([p.signals for p in pieces]), ref.signals, atol=1e-4)
    assert (np.concatenate([p.labels for p in pieces]) == 0).all()


def test_npy_and_npz_recordings(tmp_path):
    x = _signal(300)
    np.save(tmp_path / "r.npy", x)
    rec = csv_source.read_array_recording(tmp_path / "r.npy", placement="wrist", device="watch", rate=50.0)
    np.testing.assert_array_equal(rec.signals, x)
    np.testing.assert_allclose(rec.timestamps[-1], 299 / 50)
    np.savez(tmp_path / "r.npz", signals=x, time=np.arange(300) / 25.0)
    rec = csv_source.read_array_recording(tmp_path / "r.npz", placement="wrist", device="watch")
    assert rec.timestamps[-1] == pytest.approx(299 / 25)
    with pytest.raises(ZeroharError, match="r.npy: has no 'time' array; give its sampling rate in Hz"):
        csv_source.read_array_recording(tmp_path / "r.npy", placement="wrist", device="watch")
    np.save(tmp_path / "four.npy", np.zeros((10, 4)))
    with pytest.raises(ZeroharError, match="4 columns cannot be read as acc"):
        csv_source.read_array_recording(tmp_path / "four.npy", placement="wrist", device="watch", rate=30)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ZeroharError, match="obj.npy is not a readable numpy file"):
        csv_source.read_array_recording(tmp_path / "obj.npy", placement="wrist", device="watch", rate=30)


# ---------------------------------------------------------------------------------------------- bad input
def test_missing_file_and_wrong_format(tmp_path):
    with pytest.raises(ZeroharError, match=f"input file {tmp_path / 'no.csv'} does not exist"):
        csv_source.read_csv_recording(tmp_path / "no.csv", placement="w", device="d")
    with pytest.raises(ZeroharError, match=f"input file {tmp_path / 'nodir'} does not exist"):
        csv_source.read(tmp_path / "nodir")
    (tmp_path / "r.xlsx").write_bytes(b"PK\x03\x04")
    with pytest.raises(ZeroharError, match="r.xlsx: expected a .csv or .tsv file, found suffix '.xlsx'"):
        csv_source.read_csv_recording(tmp_path / "r.xlsx", placement="w", device="d")
    (tmp_path / "bin.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    with pytest.raises(ZeroharError, match="bin.csv is not a text \\(UTF-8\\) CSV file"):
        csv_source.read_csv_recording(tmp_path / "bin.csv", placement="w", device="d")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ZeroharError, match="empty.csv is empty; expected a header row"):
        csv_source.read_csv_recording(tmp_path / "empty.csv", placement="w", device="d")
    _write(tmp_path / "hdr.csv", ["time", "ax", "ay", "az"], [])
    with pytest.raises(ZeroharError, match="hdr.csv has a header but no data rows"):
        csv_source.read_csv_recording(tmp_path / "hdr.csv", placement="w", device="d")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(ZeroharError, match="csv: .*empty_dir holds no .csv or .tsv files"):
        csv_source.read(tmp_path / "empty_dir")


def test_missing_extra_and_duplicate_columns(tmp_path):
    path = _write(tmp_path / "m.csv", ["time", "acc_x", "acc_y"], [[0, 0, 0]])
    with pytest.raises(ZeroharError, match="m.csv: acc at wrist on watch lacks axis z; every sensor needs x, y and z"):
        csv_source.read_csv_recording(path, placement="wrist", device="watch")
    path = _write(tmp_path / "x.csv", ["time", "ax", "ay", "az", "temperature"], [[0, 0, 0, 1, 20]])
    with pytest.raises(ZeroharError, match=r"x.csv has columns \['temperature'\] that are neither time, label, "):
        csv_source.read_csv_recording(path, placement="wrist", device="watch")
    path = _write(tmp_path / "d.csv", ["time", "ax", "ax", "az"], [[0, 0, 0, 1]])
    with pytest.raises(ZeroharError, match="d.csv: column 'ax' appears twice in the header"):
        csv_source.read_csv_recording(path, placement="wrist", device="watch")
    path = _write(tmp_path / "s.csv", ["time", "speed", "heading"], [[0, 1, 2]])
    with pytest.raises(ZeroharError, match=r"s.csv has no sensor columns \(found \['time', 'speed', 'heading'\]\)"):
        csv_source.read_csv_recording(path, placement="wrist", device="watch")
    path = _write(tmp_path / "r.csv", ["time", "ax", "ay", "az"], [[0, 0, 0, 1], [0.02, 0, 1], [0.04, 0, 0, 1]])
    with pytest.raises(ZeroharError, match="r.csv line 3 has 3 fields; expected 4 like the header"):
        csv_source.read_csv_recording(path, placement="wrist", device="watch")


def test_non_numeric_values_and_backward_times(tmp_path):
    rows = [[i / RATE, 0, 0, 1] for i in range(50)]
    rows[7][2] = "n/a"
    with pytest.raises(ZeroharError, match="v.csv line 9, column 'ay': 'n/a' is not a number"):
        csv_source.read_csv_recording(_write(tmp_path / "v.csv", ["time", "ax", "ay", "az"], rows),
                                      placement="w", device="d")
    rows = [[i / RATE, 0, 0, 1] for i in range(50)]
    rows[20][0] = 0.1
    with pytest.raises(ZeroharError, match="b.csv line 22, column 'time': time 0.1 is earlier than the previous "
                                           "row's 0.38; expected times that never go backwards"):
        csv_source.read_csv_recording(_write(tmp_path / "b.csv", ["time", "ax", "ay", "az"], rows),
                                      placement="w", device="d")
    # ... also across a chunk boundary
    path = _write(tmp_path / "c.csv", ["time", "ax", "ay", "az"], [[i / RATE, 0, 0, 1] for i in range(40)]
                  + [[0.5, 0, 0, 1]])
    with pytest.raises(ZeroharError, match="c.csv line 42, column 'time': time 0.5 is earlier"):
        list(csv_source.iter_csv_chunks(path, chunk_rows=8, placement="w", device="d"))
    ms = [[1_700_000_000_000 + 20 * i, 0, 0, 1] for i in range(50)]
    with pytest.raises(ZeroharError, match="ms.csv, column 'time': the median time step is 20 s, a sampling rate of "
                                           "0.05 Hz; expected at least 0.5 Hz with times in seconds; times in "
                                           "milliseconds would give this"):
        csv_source.read_csv_recording(_write(tmp_path / "ms.csv", ["time", "ax", "ay", "az"], ms),
                                      placement="w", device="d")
    bad_dt = [["2024-01-01T00:00:00", 0, 0, 1], ["yesterday", 0, 0, 1]]
    with pytest.raises(ZeroharError, match="t.csv line 3, column 'datetime': 'yesterday' is not an ISO 8601"):
        csv_source.read_csv_recording(_write(tmp_path / "t.csv", ["datetime", "ax", "ay", "az"], bad_dt),
                                      placement="w", device="d")


def test_layout_mismatch_unknown_unit_and_no_placement(tmp_path):
    path = _acc_file(tmp_path / "a.csv")
    with pytest.raises(ZeroharError, match="a.csv: give a sensor layout file \\(--layout FILE.yaml\\), or the "
                                           "placement and device"):
        csv_source.read_csv_recording(path)
    gyro = [{"column": f"gyro_{a}", "sensor": "gyro", "axis": a, "placement": "wrist", "device": "watch",
             "unit": "rad/s"} for a in "xyz"]
    with pytest.raises(ZeroharError, match=r"layout file .*g.yaml does not match .*a.csv: its columns \['gyro_x', "):
        csv_source.read_csv_recording(path, layout=_layout_file(tmp_path / "g.yaml", gyro))
    nocol = [{"sensor": "gyro", "axis": a, "placement": "wrist", "device": "watch", "unit": "rad/s"} for a in "xyz"]
    with pytest.raises(ZeroharError, match=r"n.yaml does not match .*a.csv: no column for \['gyro_x'"):
        csv_source.read_csv_recording(path, layout=_layout_file(tmp_path / "n.yaml", nocol))
    furl = [{"column": f"acc_{a}", "sensor": "acc", "axis": a, "placement": "wrist", "device": "watch",
             "unit": "furlong/s^2"} for a in "xyz"]
    with pytest.raises(ZeroharError, match=r"u.yaml: channel 0: unknown unit 'furlong/s\^2' for acc channel 'acc_x'"):
        csv_source.read_csv_recording(path, layout=_layout_file(tmp_path / "u.yaml", furl))


def test_wrong_declared_unit_is_caught_on_the_data(tmp_path):
    path = _acc_file(tmp_path / "ms2.csv", scale=STANDARD_GRAVITY)
    rec = csv_source.read_csv_recording(path, placement="wrist", device="watch")  # default unit: g
    with pytest.raises(ZeroharError, match=r"ms2.csv: the accelerometer at wrist on watch \(declared in g\) reads "
                                           r"\d+.\d g at rest, which looks like m/s\^2"):
        to_canonical(rec)


ACTILIFE_HEAD = ("------------ Data File Created By ActiGraph GT3X+ ActiLife v6.13.4 Firmware v2.5.0 "
                 "date format {fmt} at 30 Hz  Filter Normal -----------\n") + """Serial Number: NEO1C04110003
Start Time 11:55:00
Start Date {date}
Epoch Period (hh:mm:ss) 00:00:00
Download Time 12:09:58
Download Date 12/20/2021
Current Memory Address: 0
Current Battery Voltage: 4.26     Mode = 12
--------------------------------------------------
Accelerometer X,Accelerometer Y,Accelerometer Z
"""


def _actilife(path, fmt="M/d/yyyy", date="12/20/2021", rows=90):
    body = "".join(f"{0.01 * (i % 7):.3f},0.020,-1.000\n" for i in range(rows))
    path.write_text(ACTILIFE_HEAD.format(fmt=fmt, date=date) + body)
    return path


@pytest.mark.parametrize("fmt,date", [("M/d/yyyy", "12/20/2021"), ("d/M/yyyy", "20/12/2021"),
                                      ("dd.MM.yyyy", "20.12.2021")])
def test_actilife_export_reads_start_rate_and_samples_from_its_preamble(tmp_path, fmt, date):
    stream = open_csv_stream(_actilife(tmp_path / "a.csv", fmt, date), placement="wrist", device="smartwatch")
    t, x = np.concatenate([c[0] for c in stream.chunks]), None
    stream = open_csv_stream(tmp_path / "a.csv", placement="wrist", device="smartwatch")
    x = np.concatenate([c[1] for c in stream.chunks])
    start = (np.datetime64("2021-12-20T11:55:00") - np.datetime64(0, "s")) / np.timedelta64(1, "s")
    assert len(t) == len(x) == 90 and t[0] == start
    np.testing.assert_allclose(np.diff(t), 1 / 30, atol=1e-6)  # epoch seconds in float64
    np.testing.assert_allclose(x[:3], [[0.0, 0.02, -1.0], [0.01, 0.02, -1.0], [0.02, 0.02, -1.0]])


def test_actilife_export_without_its_start_or_with_a_contradicting_rate_is_one_clear_error(tmp_path):
    bad = tmp_path / "b.csv"
    bad.write_text(_actilife(tmp_path / "a.csv").read_text().replace("Start Date 12/20/2021", "Start Day x"))
    with pytest.raises(ZeroharError, match="ActiLife CSV export.*start time and date"):
        open_csv_stream(bad, placement="wrist", device="smartwatch")
    with pytest.raises(ZeroharError, match="at 30 Hz.*--rate 50 contradicts"):
        list(open_csv_stream(tmp_path / "a.csv", placement="wrist", device="smartwatch", rate=50).chunks)
