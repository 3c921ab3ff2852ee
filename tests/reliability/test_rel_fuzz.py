"""Property-based fuzzing of every reader of user files: any content gives a valid result or a ZeroharError,
never another exception (no traceback)."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zerohar.data.folds import load_folds
from zerohar.data.layout import SensorLayout
from zerohar.data.sources import csv as csv_source
from zerohar.data.transforms import to_canonical
from zerohar.errors import ZeroharError
from zerohar.io import load_json, load_yaml
from zerohar.text.labels import read_label_file, read_labels_file

FAST = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Text that looks like the real thing often enough to get past the first checks.
CELLS = st.one_of(st.sampled_from(["0", "1", "-1", "0.5", "1e30", "nan", "inf", "", " ", '"', "a", "1,2",
                                   "2024-03-01T10:00:00", "2024-03-01T10:00:00+01:00", "walking", "\x00"]),
                  st.floats(allow_nan=True).map(repr), st.text(max_size=6))
HEADERS = st.one_of(st.just("time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z,label"), st.just("t;ax;ay;az"),
                    st.just("datetime\tacc_x\tacc_y\tacc_z"), st.just("acc_x,acc_y,acc_z"),
                    st.text(max_size=40))
ROWS = st.lists(st.lists(CELLS, min_size=0, max_size=9), max_size=40)
DELIMS = st.sampled_from([",", ";", "\t"])


def _csv(header: str, rows, delim: str) -> bytes:
    return (header + "\n" + "\n".join(delim.join(r) for r in rows)).encode("utf-8", "surrogatepass")


def _expect_zerohar_error(fn) -> None:
    try:
        fn()
    except ZeroharError:
        pass


def _read_csv(path) -> None:
    rec = csv_source.read_csv_recording(path, placement="wrist", device="watch")
    to_canonical(rec)


def _stream_csv(path) -> None:
    s = csv_source.open_csv_stream(path, placement="wrist", device="watch", chunk_rows=7)
    for _ in s.chunks:
        pass


@FAST
@given(header=HEADERS, rows=ROWS, delim=DELIMS)
def test_csv_reader_structured(tmp_path_factory, header, rows, delim):
    p = tmp_path_factory.mktemp("csv") / "r.csv"
    try:
        p.write_bytes(_csv(header, rows, delim))
    except UnicodeEncodeError:
        return
    _expect_zerohar_error(lambda: _read_csv(p))
    _expect_zerohar_error(lambda: _stream_csv(p))


@FAST
@given(data=st.binary(max_size=400))
def test_csv_reader_bytes(tmp_path_factory, data):
    p = tmp_path_factory.mktemp("csv") / "r.csv"
    p.write_bytes(b"time,acc_x,acc_y,acc_z\n" + data)
    _expect_zerohar_error(lambda: _read_csv(p))
    p.write_bytes(data)
    _expect_zerohar_error(lambda: _read_csv(p))


def _npy_bytes(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


ARRAYS = st.one_of(
    st.builds(lambda n, c, v: np.full((n, c), v), st.integers(0, 40), st.integers(0, 10),
              st.sampled_from([0.0, 1.0, np.nan, np.inf, 1e30, -1.0])),
    st.builds(lambda n: np.random.default_rng(n).normal(size=(n, 6)), st.integers(0, 300)),
    st.builds(lambda n: np.arange(n), st.integers(0, 20)),
    st.just(np.array("text")), st.just(np.zeros((3, 3), dtype=complex)), st.just(np.zeros((2, 3, 3))),
)


@FAST
@given(arr=ARRAYS, cut=st.integers(0, 400), rate=st.sampled_from([None, 30.0, -5.0, float("nan"), 1e9]))
def test_npy_reader(tmp_path_factory, arr, cut, rate):
    p = tmp_path_factory.mktemp("npy") / "r.npy"
    data = _npy_bytes(arr)
    p.write_bytes(data if cut >= len(data) else data[:cut])  # whole, or truncated
    _expect_zerohar_error(lambda: to_canonical(csv_source.read_array_recording(p, placement="w", device="d",
                                                                               rate=rate)))


@FAST
@given(signals=ARRAYS, time=st.one_of(st.none(), ARRAYS), rate=st.one_of(st.none(), ARRAYS),
       names=st.lists(st.sampled_from(["signals", "time", "rate", "other"]), unique=True, max_size=4),
       cut=st.integers(0, 2000))
def test_npz_reader(tmp_path_factory, signals, time, rate, names, cut):
    p = tmp_path_factory.mktemp("npz") / "r.npz"
    arrays = {"signals": signals, "time": time, "rate": rate, "other": np.zeros(2)}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for n in names:
            if arrays[n] is not None:
                z.writestr(n + ".npy", _npy_bytes(arrays[n]))
    data = buf.getvalue()
    p.write_bytes(data if cut >= len(data) else data[:cut])
    _expect_zerohar_error(lambda: to_canonical(csv_source.read_array_recording(p, placement="w", device="d")))


# ---------------------------------------------------------------------------------------------- YAML / JSON files
YAML_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8),
              st.sampled_from(["acc", "gyro", "x", "g", "rad/s", "wrist", "walking", "fold1"])),
    lambda kids: st.one_of(st.lists(kids, max_size=5),
                           st.dictionaries(st.sampled_from(["name", "channels", "column", "sensor", "axis",
                                                            "placement", "device", "unit", "classes", "folds",
                                                            "unseen", "labels", "provenance", "x"]), kids,
                                           max_size=6)),
    max_leaves=25,
)
YAML_TEXT = st.one_of(YAML_VALUES.map(lambda v: json.dumps(v, allow_nan=True)), st.text(max_size=120),
                      st.binary(max_size=120).map(lambda b: b.decode("latin-1")),
                      st.integers(50, 1200).map(lambda d: "[" * d + "]" * d),
                      st.just("a: 1\na: 2\n"), st.just("!!python/object/apply:os.system ['true']\n"))


@FAST
@given(text=YAML_TEXT)
def test_layout_reader(tmp_path_factory, text):
    p = tmp_path_factory.mktemp("lay") / "l.yaml"
    p.write_text(text, encoding="utf-8", errors="surrogatepass") if text.isascii() else p.write_bytes(
        text.encode("utf-8", "replace"))
    _expect_zerohar_error(lambda: SensorLayout.from_yaml(p))


@FAST
@given(text=YAML_TEXT)
def test_folds_reader(tmp_path_factory, text):
    p = tmp_path_factory.mktemp("folds") / "f.yaml"
    p.write_bytes(text.encode("utf-8", "replace"))
    _expect_zerohar_error(lambda: load_folds(p))
    _expect_zerohar_error(lambda: load_yaml(p))


@FAST
@given(text=YAML_TEXT)
def test_label_file_readers(tmp_path_factory, text):
    d = tmp_path_factory.mktemp("labels")
    for name in ("l.json", "l.txt"):
        p = d / name
        p.write_bytes(text.encode("utf-8", "replace"))
        _expect_zerohar_error(lambda: read_labels_file(p))  # noqa: B023 - called at once
        _expect_zerohar_error(lambda: read_label_file(p))  # noqa: B023
        _expect_zerohar_error(lambda: load_json(p))  # noqa: B023


@FAST
@given(data=st.binary(max_size=300))
def test_every_reader_on_raw_bytes(tmp_path_factory, data):
    d = tmp_path_factory.mktemp("raw")
    for name, read in (("l.yaml", SensorLayout.from_yaml), ("f.yaml", load_folds), ("l.json", read_label_file),
                       ("l.txt", read_labels_file)):
        p = d / name
        p.write_bytes(data)
        _expect_zerohar_error(lambda: read(p))  # noqa: B023
