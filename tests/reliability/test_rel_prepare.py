"""`zerohar prepare` on malformed recordings, layouts, folds files, flags and outputs."""

from __future__ import annotations

import os

import numpy as np
import pytest
from badinputs import HEADER, csv_text, layout_yaml, nested_yaml, signal, write

PD = ("--placement", "waist", "--device", "phone")


def prep(path, *args, pd: bool = True):
    return ["prepare", "--dataset", "csv", "--root", path, "--no-progress", *(PD if pd else ()), *args]


def _x(fn, n=600):
    x = signal(n)
    fn(x)
    return x


# ---------------------------------------------------------------------------------------------- the recording
def _many_fields(tmp):
    lines = csv_text(60).splitlines()
    lines[2] = ",".join(["1"] * 300_000)
    return "\n".join(lines) + "\n"


def _dup_all():
    t = 100.0 + np.repeat(np.arange(300) / 30.0, 2)
    return csv_text(times=t, x=signal(600))


def _dup_some():
    t = 100.0 + np.arange(600) / 30.0
    t[100:110] = t[100]
    return csv_text(times=t)


def _empty_cells():
    lines = csv_text().splitlines()
    for i in (10, 20, 30):
        f = lines[i].split(",")
        f[2] = ""
        lines[i] = ",".join(f)
    return "\n".join(lines) + "\n"


def _mixed_zones():
    head = "time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z\n"
    return head + "2024-03-01T10:00:01+01:00,0,0,1,0,0,0\n2024-03-01T09:00:00+00:00,0,0,1,0,0,0\n" * 1


def _naive_and_aware():
    head = "time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z\n"
    return head + "2024-03-01T10:00:00,0,0,1,0,0,0\n2024-03-01T10:00:00.1+00:00,0,0,1,0,0,0\n"


REFUSED_CSV = [
    ("empty", "", [], ["empty", "header"]),
    ("blank-lines", "\n\n\n", [], ["empty"]),
    ("header-only", ",".join(HEADER) + "\n", [], ["no data rows"]),
    ("binary", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe" * 20, [], ["not a text"]),
    ("latin1-header", "zeit,beschleunigung_x\xe4\n1,2\n".encode("latin-1"), [], ["utf-8"]),
    ("latin1-row", (csv_text(60) + "1,2,3,\xe4,5,6,7,walking\n").encode("latin-1"), [], ["utf-8", "line 62"]),
    ("nul-header", "time,acc\x00_x\n1,2\n", [], ["header"]),
    ("empty-header-field", "time,,acc_x,acc_y,acc_z\n1,2,3,4,5\n", [], ["header"]),
    ("duplicate-column", csv_text(60).replace("gyro_z", "gyro_y", 1), [], ["gyro_y", "twice"]),
    ("unknown-column", csv_text(60).replace("gyro_z,label", "gyro_z,label,temperature").replace(
        ",walking\n", ",walking,21\n"), [], ["temperature", "neither"]),
    ("no-sensor-columns", "time,foo,bar\n1,2,3\n", [], ["no sensor columns"]),
    ("missing-axis", "time,acc_x,acc_y\n" + "".join(f"{i / 30},0,1\n" for i in range(60)), [], ["lacks axis z"]),
    ("too-many-fields", _many_fields, [], ["line 3", "300000 fields", "expected 8"]),
    ("too-few-fields", csv_text(60) + "1,2,3\n", [], ["line 62", "3 fields", "expected 8"]),
    ("not-a-number", csv_text(60).replace("\n101.000000,", "\n101.000000,abc", 1), [], ["line", "not a number"]),
    ("time-not-a-number", csv_text(60) + "soon,0,0,1,0,0,0,walking\n", [], ["line 62", "time"]),
    ("time-missing", csv_text(60) + ",0,0,1,0,0,0,walking\n", [], ["line 62", "time is missing"]),
    ("time-backwards", csv_text(60) + "1.0,0,0,1,0,0,0,walking\n", [], ["line 62", "earlier"]),
    ("time-in-ms", csv_text(600, times=1000 * (np.arange(600) / 30.0)), [], ["milliseconds"]),
    ("time-too-slow", csv_text(600, times=np.arange(600) * 10.0), [], ["0.1 hz", "at least"]),
    ("all-times-equal", csv_text(times=np.full(600, 5.0)), [], ["distinct", "600"]),
    ("every-time-twice", _dup_all(), [], ["distinct", "time"]),
    ("mixed-zones-backwards", _mixed_zones(), [], ["2024-03-01T09:00:00", "earlier"]),
    ("naive-and-aware", _naive_and_aware(), [], ["time zone"]),
    ("bad-datetime", "time,acc_x,acc_y,acc_z\n2024-03-01T10:00:00,0,0,1\n2024-13-45T10:00:00,0,0,1\n", [],
     ["line 3", "datetime"]),
    ("all-nan", csv_text(x=np.full((600, 6), np.nan)), [], ["no", "valid"]),
    ("acc-huge", csv_text(x=_x(lambda x: x.__setitem__((slice(None), slice(0, 3)), 1e30))), [], ["acc", "g"]),
    ("acc-zero", csv_text(x=_x(lambda x: x.__setitem__((slice(None), slice(0, 3)), 0.0))), [], ["gravity"]),
    ("acc-in-ms2", csv_text(x=_x(lambda x: x.__setitem__((slice(None), slice(0, 3)), x[:, :3] * 9.81))), [],
     ["m/s^2"]),
    ("acc-in-milli-g", csv_text(x=_x(lambda x: x.__setitem__((slice(None), slice(0, 3)), x[:, :3] * 1000))), [],
     ["milli"]),
    ("gyro-in-deg", csv_text(x=_x(lambda x: x.__setitem__((slice(None), slice(3, 6)), x[:, 3:] * 57.3))), [],
     ["deg/s"]),
    ("short", csv_text(60), [], ["shorter than one 5 s window"]),
    ("unclosed-quote", csv_text(60) + '"1,2,3,4,5,6,7,walking\n', [], ["line 62"]),
]


@pytest.mark.parametrize("name, content, args, words", REFUSED_CSV, ids=[c[0] for c in REFUSED_CSV])
def test_bad_recording_is_refused(zh, tmp_path, name, content, args, words):
    p = write(tmp_path / "rec.csv", content(tmp_path) if callable(content) else content)
    zh(*prep(p, *args)).refused(str(p), *words)


REPAIRED_CSV = [
    ("short-nan-run", csv_text(x=_x(lambda x: x.__setitem__((slice(100, 110), 1), np.nan))),
     ["10 nan samples", "interpolated"]),
    ("long-nan-run", csv_text(x=_x(lambda x: x.__setitem__((slice(200, 300), 4), np.nan))), ["100", "dropped"]),
    ("inf", csv_text(x=_x(lambda x: x.__setitem__((slice(50, 52), 0), np.inf))), ["2 nan", "interpolated"]),
    ("empty-cells", _empty_cells(), ["3 nan samples", "interpolated"]),
    ("some-duplicate-times", _dup_some(), ["9 samples", "same time"]),
    ("one-hertz", csv_text(60, rate=1.0), ["1 hz", "upsampled"]),
]


@pytest.mark.parametrize("name, content, words", REPAIRED_CSV, ids=[c[0] for c in REPAIRED_CSV])
def test_repairable_recording_is_repaired_with_a_warning(zh, tmp_path, name, content, words):
    p = write(tmp_path / "rec.csv", content)
    zh(*prep(p)).repaired(*words)


def test_a_long_gap_splits_without_a_warning(zh, tmp_path):
    p = write(tmp_path / "rec.csv", csv_text(300) + csv_text(300, t0=200).split("\n", 1)[1])
    r = zh(*prep(p)).ok()
    assert "WARNING" not in r.err


def test_good_recordings_pass_quietly(zh, tmp_path):
    variants = {
        "plain.csv": csv_text(),
        "semicolons.csv": csv_text(delim=";"),
        "tabs.tsv": csv_text(delim="\t"),
        "crlf.csv": csv_text().replace("\n", "\r\n"),
        "bom.csv": "\ufeff" + csv_text(),
    }
    for name, text in variants.items():
        r = zh(*prep(write(tmp_path / name, text))).ok()
        assert "WARNING" not in r.err, (name, r.err)


# ---------------------------------------------------------------------------------------------- the input path
def test_input_that_does_not_exist(zh, tmp_path):
    zh(*prep(tmp_path / "nope.csv")).refused("nope.csv", "does not exist")


def test_input_folder_without_recordings(zh, tmp_path):
    (tmp_path / "empty").mkdir()
    zh(*prep(tmp_path / "empty")).refused("holds no .csv")


def test_input_fifo(zh, tmp_path):
    os.mkfifo(tmp_path / "pipe.csv")
    zh(*prep(tmp_path / "pipe.csv")).refused("pipe.csv", "not a regular file")


def test_input_symlink_loop(zh, tmp_path):
    os.symlink(tmp_path / "b.csv", tmp_path / "a.csv")
    os.symlink(tmp_path / "a.csv", tmp_path / "b.csv")
    zh(*prep(tmp_path / "a.csv")).refused("a.csv", "symbolic link")


def test_input_dangling_symlink(zh, tmp_path):
    os.symlink(tmp_path / "gone.csv", tmp_path / "a.csv")
    zh(*prep(tmp_path / "a.csv")).refused("a.csv", "broken symbolic link")


def test_input_unreadable(zh, tmp_path, deny):
    p = write(tmp_path / "rec.csv", csv_text())
    deny(p, read=True)
    zh(*prep(p)).refused("rec.csv", "permission denied")


def test_input_folder_unreadable(zh, tmp_path, deny):
    write(tmp_path / "d" / "rec.csv", csv_text())
    deny(tmp_path / "d", read=True)
    zh(*prep(tmp_path / "d")).refused("permission denied")


def test_input_wrong_suffix(zh, tmp_path):
    p = write(tmp_path / "rec.txt", csv_text())
    zh(*prep(p)).refused("rec.txt", ".csv")


def test_folder_with_files_of_different_sensors(zh, tmp_path):
    write(tmp_path / "d" / "a.csv", csv_text())
    write(tmp_path / "d" / "b.csv", "time,acc_x,acc_y,acc_z,label\n" + "".join(f"{i / 30},0,0,1,walking\n"
                                                                           for i in range(600)))
    zh(*prep(tmp_path / "d")).refused("different sensors")


# ---------------------------------------------------------------------------------------------- flags
@pytest.mark.parametrize("args, words", [
    (["--rate", "-50"], ["--rate", "positive", "-50"]),
    (["--rate", "0"], ["--rate", "positive"]),
    (["--rate", "nan"], ["--rate"]),
    (["--rate", "inf"], ["--rate"]),
    (["--rate", "1e9"], ["--rate"]),
    (["--window", "7"], ["--window", "5, 10 or 30", "7"]),
    (["--window", "0"], ["--window"]),
    (["--window", "-5"], ["--window"]),
    (["--window", "nan"], ["--window"]),
    (["--step", "-1"], ["step", "positive"]),
    (["--step", "0"], ["step", "positive"]),
    (["--step", "nan"], ["step"]),
    (["--window", "abc"], ["--window", "invalid"]),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_numbers(zh, tmp_path, args, words):
    p = write(tmp_path / "rec.csv", csv_text())
    zh(*prep(p, *args)).refused(*words)


def test_rate_without_time_column_rejects_negative_with_the_flag_named(zh, tmp_path):
    p = write(tmp_path / "rec.csv", "acc_x,acc_y,acc_z\n" + "0,0,1\n" * 600)
    zh(*prep(p, "--rate", "-50")).refused("--rate", "positive")


def test_rate_with_a_time_column_is_refused(zh, tmp_path):
    p = write(tmp_path / "rec.csv", csv_text())
    zh(*prep(p, "--rate", "50")).refused("--rate", "time column")


def test_no_time_column_no_rate(zh, tmp_path):
    p = write(tmp_path / "rec.csv", "acc_x,acc_y,acc_z\n" + "0,0,1\n" * 600)
    zh(*prep(p)).refused("no time column", "--rate")


def test_layout_and_placement_together(zh, tmp_path):
    p = write(tmp_path / "rec.csv", csv_text())
    lay = write(tmp_path / "lay.yaml", layout_yaml())
    zh(*prep(p, "--layout", lay, "--placement", "wrist")).refused("--layout", "--placement")
    zh(*prep(p, "--layout", lay, "--device", "watch", pd=False)).refused("--layout", "--device")


def test_no_layout_no_placement(zh, tmp_path):
    p = write(tmp_path / "rec.csv", csv_text())
    zh(*prep(p, pd=False)).refused("--layout", "--placement")


def test_unknown_dataset(zh):
    zh("prepare", "--dataset", "nosuch").refused("nosuch")


def test_dataset_with_csv_format(zh):
    zh("prepare", "--dataset", "hapt", "--data-format", "csv").refused("--data-format csv")


def test_dataset_root_missing(zh, tmp_path):
    zh("prepare", "--dataset", "pamap2", "--root", tmp_path / "none").refused("does not exist")


def test_dataset_that_takes_no_layout(zh, tmp_path):
    lay = write(tmp_path / "lay.yaml", layout_yaml())
    zh("prepare", "--dataset", "hapt", "--layout", lay, "--no-progress").refused("layout")


def test_dataset_root_of_another_dataset(zh, tmp_path):
    write(tmp_path / "pamap" / "junk.txt", "x")
    zh("prepare", "--dataset", "pamap2", "--root", tmp_path / "pamap", "--no-progress").refused("pamap")


# ---------------------------------------------------------------------------------------------- layout files
def _chan(**kw):
    base = {"column": "acc_x", "sensor": "acc", "axis": "x", "placement": "waist", "device": "phone", "unit": "g"}
    return {**base, **kw}


def _layout_with(i: int, **kw):
    chans = [{"column": f"{s}_{a}", "sensor": s, "axis": a, "placement": "waist", "device": "phone", "unit": u}
             for s, u in (("acc", "g"), ("gyro", "rad/s")) for a in "xyz"]
    chans[i] = {**chans[i], **kw}
    for k, v in list(chans[i].items()):
        if v is None:
            del chans[i][k]
    return layout_yaml(chans)


BAD_LAYOUTS = [
    ("not-yaml", "channels: [\n", ["not valid yaml"]),
    ("a-list", "- 1\n- 2\n", ["mapping"]),
    ("empty", "", ["channels"]),
    ("no-channels", "name: x\n", ["channels"]),
    ("channels-empty", "channels: []\n", ["channels"]),
    ("unknown-top-key", layout_yaml(sample_rate=50), ["sample_rate", "unknown"]),
    ("channel-not-mapping", layout_yaml(["acc_x"]), ["channel 0", "mapping"]),
    ("channel-unknown-key", _layout_with(0, scale=2), ["channel 0", "scale"]),
    ("channel-missing-key", _layout_with(2, unit=None), ["channel 2", "unit"]),
    ("channel-without-column", _layout_with(3, column=None), ["channel 3", "column"]),
    ("duplicate-column", _layout_with(1, column="acc_x"), ["acc_x", "two channels"]),
    ("unknown-sensor", _layout_with(0, sensor="baro"), ["baro", "channel 0"]),
    ("unknown-unit", _layout_with(4, unit="rpm"), ["rpm", "channel 4"]),
    ("unknown-axis", _layout_with(5, axis="w"), ["'w'", "channel 5"]),
    ("missing-axis", layout_yaml([_chan(), _chan(column="acc_y", axis="y")]), ["lacks axis z"]),
    ("mixed-units", _layout_with(1, unit="m/s^2"), ["mixes units"]),
    ("two-x-axes", _layout_with(1, axis="x"), ["two x-axis"]),
    ("column-not-in-file", _layout_with(0, column="ax"), ["'ax'", "not in the file"]),
    ("placement-empty", _layout_with(0, placement=""), ["placement", "channel 0"]),
    ("placement-a-list", _layout_with(0, placement=["a"]), ["placement", "channel 0"]),
    ("nested", nested_yaml(5000), ["nested too deeply"]),
    ("python-tag", "!!python/object/apply:os.system ['true']\n", ["not valid yaml"]),
    ("duplicate-key", "name: a\nname: b\nchannels: []\n", ["name", "twice"]),
    ("binary", "\x00\x01\x02\xff", ["sensor layout file"]),
]


@pytest.mark.parametrize("name, text, words", BAD_LAYOUTS, ids=[c[0] for c in BAD_LAYOUTS])
def test_bad_layout_file_is_refused_naming_it(zh, tmp_path, name, text, words):
    p = write(tmp_path / "rec.csv", csv_text())
    lay = tmp_path / "lay.yaml"
    lay.write_bytes(text.encode("latin-1") if name == "binary" else text.encode())
    zh(*prep(p, "--layout", lay, pd=False)).refused("lay.yaml", *words)


def test_layout_file_missing(zh, tmp_path):
    p = write(tmp_path / "rec.csv", csv_text())
    zh(*prep(p, "--layout", tmp_path / "none.yaml", pd=False)).refused("none.yaml", "does not exist")


def test_layout_declared_deg_but_data_in_rad(zh, tmp_path):
    p = write(tmp_path / "rec.csv", csv_text(x=_x(lambda x: x.__setitem__((slice(None), slice(0, 3)),
                                                                       x[:, :3] * np.array([2.0, 2.0, 1.0])))))
    chans = [{"column": f"{s}_{a}", "sensor": s, "axis": a, "placement": "waist", "device": "phone", "unit": u}
             for s, u in (("acc", "g"), ("gyro", "deg/s")) for a in "xyz"]
    lay = write(tmp_path / "lay.yaml", layout_yaml(chans))
    zh(*prep(p, "--layout", lay, pd=False)).refused("deg/s", "rad/s")


def test_layout_without_any_column_matches_by_name(zh, tmp_path):
    p = write(tmp_path / "rec.csv", csv_text())
    chans = [{"sensor": s, "axis": a, "placement": "waist", "device": "phone", "unit": u}
             for s, u in (("acc", "g"), ("gyro", "rad/s")) for a in "xyz"]
    zh(*prep(p, "--layout", write(tmp_path / "lay.yaml", layout_yaml(chans)), pd=False)).ok()


# ---------------------------------------------------------------------------------------------- folds files
BAD_FOLDS = [
    ("not-yaml", "classes: [\n", ["not valid yaml"]),
    ("nested", nested_yaml(5000), ["nested too deeply"]),
    ("a-list", "- a\n", ["mapping"]),
    ("extra-key", "classes: [walking]\nfolds: {f: {unseen: [walking]}}\nnotes: x\n", ["notes"]),
    ("classes-a-string", "classes: walking\nfolds: {f: {unseen: [walking]}}\n", ["classes", "list"]),
    ("classes-empty", "classes: []\nfolds: {}\n", ["classes", "empty"]),
    ("class-twice", "classes: [walking, walking]\nfolds: {f: {unseen: [walking]}}\n", ["walking", "twice"]),
    ("class-a-mapping", "classes: [{a: 1}]\nfolds: {}\n", ["class 1"]),
    ("class-with-newline", 'classes: ["walk\\ning", sitting]\nfolds: {}\n', ["class 1", "line break"]),
    ("folds-a-list", "classes: [walking, sitting]\nfolds: [a, b]\n", ["folds", "mapping"]),
    ("unseen-unknown", "classes: [walking, sitting]\nfolds: {f: {unseen: [running]}}\n", ["running"]),
    ("unseen-everything", "classes: [walking, sitting]\nfolds: {f: {unseen: [walking, sitting]}}\n",
     ["no seen class"]),
    ("duplicate-key", "classes: [walking]\nclasses: [sitting]\nfolds: {}\n", ["classes", "twice"]),
    ("label-not-in-classes", "classes: [sitting, lying]\nfolds: {f: {unseen: [lying]}}\n", ["walking"]),
]


@pytest.mark.parametrize("name, text, words", BAD_FOLDS, ids=[c[0] for c in BAD_FOLDS])
def test_bad_folds_file_is_refused_naming_it(zh, tmp_path, name, text, words):
    p = write(tmp_path / "rec.csv", csv_text())
    f = write(tmp_path / "folds.yaml", text)
    zh(*prep(p, "--folds", f)).refused(*words)


def test_folds_file_missing(zh, tmp_path):
    p = write(tmp_path / "rec.csv", csv_text())
    zh(*prep(p, "--folds", tmp_path / "f.yaml")).refused("f.yaml", "does not exist")


# ---------------------------------------------------------------------------------------------- outputs
def test_out_exists(zh, tmp_path):
    p = write(tmp_path / "rec.csv", csv_text())
    write(tmp_path / "o.npz", b"old")
    zh(*prep(p, "--out", tmp_path / "o.npz")).refused("o.npz", "already exists", "--force")
    assert (tmp_path / "o.npz").read_bytes() == b"old"


def test_out_is_a_folder(zh, tmp_path):
    p = write(tmp_path / "rec.csv", csv_text())
    (tmp_path / "o.npz").mkdir()
    zh(*prep(p, "--out", tmp_path / "o.npz")).refused("folder")


def test_out_wrong_suffix(zh, tmp_path):
    p = write(tmp_path / "rec.csv", csv_text())
    zh(*prep(p, "--out", tmp_path / "o.csv")).refused(".npz")


def test_out_under_an_unwritable_folder(zh, tmp_path, deny):
    p = write(tmp_path / "rec.csv", csv_text())
    (tmp_path / "ro").mkdir()
    deny(tmp_path / "ro")
    zh(*prep(p, "--out", tmp_path / "ro" / "sub" / "o.npz")).refused("ro", "not writable")


def test_out_under_a_file(zh, tmp_path):
    p = write(tmp_path / "rec.csv", csv_text())
    write(tmp_path / "f", "x")
    zh(*prep(p, "--out", tmp_path / "f" / "o.npz")).refused("not a folder")
