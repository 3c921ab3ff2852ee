"""Parsers of the five ZeroHAR-paper datasets, tested on small fixtures in their exact raw formats.

The archives cannot be downloaded here, so ``tests/fixtures/raw/<dataset>/`` holds a few files written by
``tests/fixtures/raw/make_fixtures.py`` in the layout the public archive distributes. The expectations below
come from the datasets' own documentation (readme / column_names.txt / label legends), written out in this file
independently of the parser modules, and from re-reading the fixture files with plain numpy / scipy / csv.

What each fixture encodes:

- **PAMAP2** (``PAMAP2_Dataset/Protocol/subject101.dat``, ``subject102.dat``): 54 space-separated columns;
  timestamp in s at 100 Hz; activityID in column 2 with 0 (transient) between activities; heart rate mostly
  NaN; 3 IMUs (hand, chest, ankle) of 17 columns each (temperature, acc +-16 g, acc +-6 g, gyro, mag,
  4 orientation), acc in m/s^2 with gravity, ``%g`` number formatting; dropped packets as NaN in all 17
  columns of the hand IMU (3 rows) and the chest IMU (1 row); all 12 protocol activity ids plus id 10
  (computer work, optional part, not a class).
- **Opportunity** (``OpportunityUCIDataset/dataset/S1-ADL1.dat``, ``S2-Drill.dat``): 250 space-separated integer
  columns; MILLISEC timestamps at 30 Hz; IMU acc in milli g (gravity = +-1000); 13 columns per IMU from
  column 38; NaN for lost packets (RUA IMU rows 5-7, RWR accelerometer); label tracks in columns 244-250 with
  all 17 ML_Both_Arms gesture codes and 0 (null).
- **USC-HAD** (``USC-HAD/Subject<n>/a<act>t<trial>.mat``): MATLAB files with string metadata fields and
  ``sensor_readings`` (N, 6): acc in g, gyro in deg/s at 100 Hz; one file uses the misspelt key
  ``activity_numbr`` as some archive files do.
- **WISDM 2019** (``wisdm-dataset/raw/{phone,watch}/{accel,gyro}/data_<id>_<sensor>_<device>.txt``): lines
  ``subject,code,timestamp_ns,x,y,z;``; irregular ~20 Hz; phone and watch clocks with unrelated epochs; gyro
  starting 0.25 s after the accelerometer of the same device; a 150 ms delivery pause in the phone accel
  stream; subject 1601 has no watch gyroscope data for activity B (jogging). Robustness case (not a documented
  raw fact): one watch accel line delivered twice.
- **HARTH** (``harth/S006.csv``, ``S015.csv``, ``S023.csv``): header ``timestamp,back_x,...,thigh_z,label``;
  datetimes at 50 Hz in g; S006 carries all 12 label codes; S015 an extra ``index`` column and code 18
  (transport, from the older GitHub release: not a class); S023 an unnamed index column and nanosecond
  timestamps.
"""

from __future__ import annotations

import csv
import importlib.util
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from zerohar.data.folds import load_folds
from zerohar.data.layout import SensorLayout
from zerohar.data.sources import harth, opportunity, pamap2, uschad, wisdm
from zerohar.data.transforms import to_canonical, unit_factors
from zerohar.errors import ZeroharError

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "raw"
MODULES = [pamap2, opportunity, uschad, wisdm, harth]
STANDARD_GRAVITY = 9.80665


def _classes(name: str) -> list[str]:
    return list(load_folds(name).classes)


def _copy(name: str, tmp_path: Path) -> Path:
    """A writable copy of a fixture tree (for the bad-input tests)."""
    dst = tmp_path / name
    shutil.copytree(FIX / name, dst)
    return dst


# ---------------------------------------------------------------------------------------------- all sources
def test_fixtures_are_what_the_script_writes(tmp_path):
    """The committed fixtures are reproducible from make_fixtures.py, byte for byte, and stay small."""
    spec = importlib.util.spec_from_file_location("make_fixtures", FIX / "make_fixtures.py")
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    total = make.write_all(tmp_path)
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    committed = sorted(
        p.relative_to(FIX) for p in FIX.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    )
    assert written == committed
    for rel in written:
        assert (tmp_path / rel).read_bytes() == (FIX / rel).read_bytes(), rel
    assert total < 200 * 1024


@pytest.mark.parametrize("mod", MODULES, ids=lambda m: m.NAME)
def test_source_contract(mod):
    assert mod.NAME in {"pamap2", "opportunity", "uschad", "wisdm", "harth"}
    assert mod.URL.startswith("https://") and mod.URL.endswith(".zip")
    assert Path(mod.DEFAULT_LAYOUT).name == f"{mod.NAME}.yaml"
    lay = SensorLayout.from_yaml(mod.DEFAULT_LAYOUT)
    assert lay.columns and len(lay.columns) == lay.n_channels
    assert callable(mod.read) and callable(mod.download)


@pytest.mark.parametrize("mod", MODULES, ids=lambda m: m.NAME)
def test_recordings_are_well_formed(mod):
    recs = mod.read(FIX / mod.NAME, progress=False)
    layout = SensorLayout.from_yaml(mod.DEFAULT_LAYOUT)
    n_classes = len(_classes(mod.NAME))
    assert recs
    for r in recs:
        assert r.layout == layout
        assert r.signals.dtype == np.float32 and r.signals.shape == (r.n_samples, layout.n_channels)
        assert r.labels.dtype == np.int64 and r.labels.min() >= -1 and r.labels.max() < n_classes
        assert np.all(np.diff(r.times()) > 0)
        assert r.subject and r.name.startswith(f"{mod.NAME}/")


@pytest.mark.parametrize("mod", MODULES, ids=lambda m: m.NAME)
def test_declared_units_match_gravity_and_transforms_accept_them(mod):
    """Accelerometers in their declared unit show gravity of 1 g; the canonical transform raises no unit error."""
    for r in mod.read(FIX / mod.NAME, progress=False):
        x = r.signals.astype(np.float64) * unit_factors(r.layout)  # canonical units
        for i, s in enumerate(r.layout.sensors):
            if s.sensor == "acc":
                norm = np.nanmedian(np.linalg.norm(x[:, 3 * i : 3 * i + 3], axis=1))
                assert 0.7 < norm < 1.6, (r.name, s)
        pieces = to_canonical(r)
        assert pieces and all(p.rate == 30.0 for p in pieces)
        assert all({s.unit for s in p.layout.sensors} <= {"g", "rad/s", "uT"} for p in pieces)


def test_unknown_root_is_one_clear_error(tmp_path):
    for mod in MODULES:
        with pytest.raises(ZeroharError, match="does not exist"):
            mod.read(tmp_path / "nowhere", progress=False)
        with pytest.raises(ZeroharError, match="expected the unpacked public"):
            mod.read(tmp_path, progress=False)


def test_layout_naming_a_column_the_format_lacks(tmp_path):
    p = tmp_path / "lay.yaml"
    p.write_text(
        "channels:\n"
        + "".join(
            f"  - {{column: wrist_{a}, sensor: acc, axis: {a}, placement: wrist, device: IMU, unit: m/s^2}}\n"
            for a in "xyz"
        )
    )
    with pytest.raises(ZeroharError, match=r"names columns \['wrist_x', 'wrist_y', 'wrist_z'\].*hand_acc16_x"):
        pamap2.read(FIX / "pamap2", progress=False, layout=p)


# ---------------------------------------------------------------------------------------------- PAMAP2
# From the PAMAP2 readme: activity ids of the protocol, and the 1-based columns of the used signals.
PAMAP2_IDS = {
    1: "lying", 2: "sitting", 3: "standing", 4: "walking", 5: "running", 6: "cycling", 7: "nordic walking",
    12: "ascending stairs", 13: "descending stairs", 16: "vacuum cleaning", 17: "ironing", 24: "rope jumping",
}
PAMAP2_IMU_START = {"hand": 4, "chest": 21, "ankle": 38}  # 1-based column of each IMU's temperature


def _pamap2_raw(sid: str) -> np.ndarray:
    return np.loadtxt(FIX / "pamap2" / "PAMAP2_Dataset" / "Protocol" / f"subject{sid}.dat")


def test_pamap2_signals_timestamps_and_layout():
    recs = pamap2.read(FIX / "pamap2", progress=False)
    assert [r.subject for r in recs] == ["101", "102"]
    for r in recs:
        raw = _pamap2_raw(r.subject)
        assert r.signals.shape == (len(raw), 27) and r.rate == 100.0
        np.testing.assert_array_equal(r.timestamps, raw[:, 0])
        for s_idx, s in enumerate(r.layout.sensors):
            imu = {"dominant wrist": "hand", "chest": "chest", "dominant ankle": "ankle"}[s.placement]
            # within an IMU: +1 temperature, +2..4 acc 16 g, +5..7 acc 6 g, +8..10 gyro, +11..13 mag (1-based)
            first = PAMAP2_IMU_START[imu] + {"acc": 1, "gyro": 7, "mag": 10}[s.sensor]
            expected = raw[:, first - 1 + 0 : first - 1 + 3].astype(np.float32)
            np.testing.assert_array_equal(r.signals[:, 3 * s_idx : 3 * s_idx + 3], expected)
            assert s.unit == {"acc": "m/s^2", "gyro": "rad/s", "mag": "uT"}[s.sensor]
    assert {s.placement for s in recs[0].layout.sensors} == {"dominant wrist", "chest", "dominant ankle"}


def test_pamap2_labels_transient_and_optional_ids():
    classes = _classes("pamap2")
    seen = set()
    for r in pamap2.read(FIX / "pamap2", progress=False):
        ids = _pamap2_raw(r.subject)[:, 1].astype(int)
        for code, label in zip(ids, r.labels):
            if code in PAMAP2_IDS:
                assert classes[label] == PAMAP2_IDS[code]
                seen.add(code)
            else:  # 0 = transient, 10 = computer work (optional part)
                assert label == -1
        assert (ids == 0).any() or (ids == 10).any()
    assert seen == set(PAMAP2_IDS)


def test_pamap2_keeps_dropped_packets_as_nan():
    r = pamap2.read(FIX / "pamap2", progress=False)[0]
    raw = _pamap2_raw("101")
    for s_idx, s in enumerate(r.layout.sensors):
        imu = {"dominant wrist": "hand", "chest": "chest", "dominant ankle": "ankle"}[s.placement]
        lost = np.isnan(raw[:, PAMAP2_IMU_START[imu] - 1])  # temperature column NaN = packet lost
        got = np.isnan(r.signals[:, 3 * s_idx : 3 * s_idx + 3])
        assert np.array_equal(got, np.repeat(lost[:, None], 3, axis=1))
    assert np.isnan(r.signals).any()


def test_pamap2_bad_files(tmp_path):
    root = _copy("pamap2", tmp_path)
    f = root / "PAMAP2_Dataset" / "Protocol" / "subject101.dat"
    lines = f.read_text().splitlines()
    f.write_text("\n".join(lines[:5] + [" ".join(lines[5].split()[:53])] + lines[6:]) + "\n")
    with pytest.raises(ZeroharError, match=r"subject101\.dat line 6 has 53 columns, expected 54"):
        pamap2.read(root, progress=False)
    fields = lines[5].split()
    fields[7] = "abc"
    f.write_text("\n".join(lines[:5] + [" ".join(fields)] + lines[6:]) + "\n")
    with pytest.raises(ZeroharError, match=r"line 6 column 8 holds 'abc', expected a number"):
        pamap2.read(root, progress=False)
    swapped = lines[:5] + [lines[6], lines[5]] + lines[7:]
    f.write_text("\n".join(swapped) + "\n")
    with pytest.raises(ZeroharError, match=r"line 7: timestamp .* is earlier than the previous one"):
        pamap2.read(root, progress=False)
    f.write_text("")
    with pytest.raises(ZeroharError, match=r"subject101\.dat is empty"):
        pamap2.read(root, progress=False)


# ---------------------------------------------------------------------------------------------- Opportunity
# From label_legend.txt (ML_Both_Arms), merged as the ZeroHAR paper: door 1/2, drawer 1/2/3.
OPP_GESTURES = {
    406516: "open door", 406517: "open door", 404516: "close door", 404517: "close door",
    406520: "open fridge", 404520: "close fridge", 406505: "open dishwasher", 404505: "close dishwasher",
    406519: "open drawer", 404519: "close drawer", 406511: "open drawer", 404511: "close drawer",
    406508: "open drawer", 404508: "close drawer", 408512: "clean table", 407521: "drink from cup",
    405506: "toggle switch",
}
# From column_names.txt: the 1-based first column (accX) of each IMU's accelerometer, in milli g.
OPP_IMU_ACC = {"back": 38, "right upper arm": 51, "right forearm": 64, "left upper arm": 77, "left forearm": 90}


def _opp_raw(name: str) -> np.ndarray:
    return np.loadtxt(FIX / "opportunity" / "OpportunityUCIDataset" / "dataset" / f"{name}.dat")


def test_opportunity_signals_in_g_and_timestamps():
    recs = opportunity.read(FIX / "opportunity", progress=False)
    assert [(r.subject, r.meta["session"]) for r in recs] == [("S1", "ADL1"), ("S2", "Drill")]
    for r in recs:
        raw = _opp_raw(r.name.split("/")[1])
        assert r.signals.shape == (len(raw), 15) and r.rate == 30.0
        np.testing.assert_allclose(r.timestamps, raw[:, 0] / 1000.0)
        for s_idx, s in enumerate(r.layout.sensors):
            c = OPP_IMU_ACC[s.placement] - 1
            expected = (raw[:, c : c + 3] / 1000.0).astype(np.float32)  # milli g -> g
            np.testing.assert_array_equal(r.signals[:, 3 * s_idx : 3 * s_idx + 3], expected)
            assert (s.sensor, s.unit, s.device) == ("acc", "g", "IMU")
        assert np.isnan(r.signals).any()  # lost packets stay NaN


def test_opportunity_labels_merge_gestures_and_null():
    classes = _classes("opportunity")
    seen = set()
    for r in opportunity.read(FIX / "opportunity", progress=False):
        codes = _opp_raw(r.name.split("/")[1])[:, 249].astype(int)  # column 250: ML_Both_Arms
        for code, label in zip(codes, r.labels):
            assert (classes[label] if label >= 0 else None) == OPP_GESTURES.get(code)
            seen.add(code)
    assert set(OPP_GESTURES) <= seen and 0 in seen
    assert {c for c in seen if c} == set(OPP_GESTURES)


def test_opportunity_sessions_and_custom_layout(tmp_path):
    drill = opportunity.read(FIX / "opportunity", progress=False, sessions=("Drill",))
    assert [r.name for r in drill] == ["opportunity/S2-Drill"]
    with pytest.raises(ZeroharError, match=r"sessions \('XYZ',\): expected 'ADL' and/or 'Drill'"):
        opportunity.read(FIX / "opportunity", progress=False, sessions=("XYZ",))
    p = tmp_path / "rwr.yaml"
    p.write_text(
        "channels:\n"
        + "".join(
            f"  - {{column: Accelerometer RWR acc{a}, sensor: acc, axis: {a.lower()}, placement: right wrist, "
            "device: accelerometer, unit: g}\n"
            for a in "XYZ"
        )
    )
    r = opportunity.read(FIX / "opportunity", progress=False, layout=p)[0]
    raw = _opp_raw("S1-ADL1")
    np.testing.assert_array_equal(r.signals, (raw[:, 22:25] / 1000.0).astype(np.float32))  # columns 23-25
    p.write_text(p.read_text().replace("unit: g", "unit: m/s^2"))
    with pytest.raises(ZeroharError, match="declare unit: g"):
        opportunity.read(FIX / "opportunity", progress=False, layout=p)
    p.write_text(p.read_text().replace("Accelerometer RWR acc", "InertialMeasurementUnit BACK gyro"))
    with pytest.raises(ZeroharError, match="InertialMeasurementUnit BACK gyroX"):
        opportunity.read(FIX / "opportunity", progress=False, layout=p)


def test_opportunity_bad_files(tmp_path):
    root = _copy("opportunity", tmp_path)
    f = root / "OpportunityUCIDataset" / "dataset" / "S1-ADL1.dat"
    lines = f.read_text().splitlines()
    f.write_text("\n".join(lines[:3] + [" ".join(lines[3].split()[:-1])] + lines[4:]) + "\n")
    with pytest.raises(ZeroharError, match=r"S1-ADL1\.dat line 4 has 249 columns, expected 250"):
        opportunity.read(root, progress=False)


# ---------------------------------------------------------------------------------------------- USC-HAD
USC_ACTIVITIES = {  # readme: activity numbers 1-12
    1: "walking forward", 2: "walking left", 3: "walking right", 4: "walking upstairs", 5: "walking downstairs",
    6: "running forward", 7: "jumping", 8: "sitting", 9: "standing", 10: "sleeping", 11: "elevator up",
    12: "elevator down",
}


def test_uschad_trials_both_key_spellings():
    classes = _classes("uschad")
    recs = uschad.read(FIX / "uschad", progress=False)
    assert [r.name for r in recs] == ["uschad/Subject1/a1t1", "uschad/Subject1/a10t2", "uschad/Subject2/a6t1"]
    assert [r.subject for r in recs] == ["1", "1", "2"]
    for r in recs:
        mat = scipy.io.loadmat(r.meta["path"])
        key = "activity_number" if "activity_number" in mat else "activity_numbr"
        act = int(mat[key][0])
        assert set(r.labels.tolist()) == {classes.index(USC_ACTIVITIES[act])}
        np.testing.assert_array_equal(r.signals, mat["sensor_readings"].astype(np.float32))
        assert r.rate == 100.0 and r.timestamps is None
    assert any("activity_numbr" in scipy.io.loadmat(r.meta["path"]) for r in recs)
    units = {s.sensor: s.unit for s in recs[0].layout.sensors}
    assert units == {"acc": "g", "gyro": "deg/s"}
    assert {s.placement for s in recs[0].layout.sensors} == {"front right hip"}


def test_uschad_bad_files(tmp_path):
    root = _copy("uschad", tmp_path)
    f = root / "USC-HAD" / "Subject1" / "a1t1.mat"
    mat = scipy.io.loadmat(f)
    scipy.io.savemat(f, {"subject": "1", "activity_number": "1", "sensor_readings": mat["sensor_readings"][:, :5]})
    with pytest.raises(ZeroharError, match=r"a1t1\.mat: sensor_readings has shape \(150, 5\), expected \(N, 6\)"):
        uschad.read(root, progress=False)
    scipy.io.savemat(f, {"subject": "1", "activity_number": "13", "sensor_readings": mat["sensor_readings"]})
    with pytest.raises(ZeroharError, match=r"a1t1\.mat: activity_number is 13; expected 1 to 12"):
        uschad.read(root, progress=False)
    scipy.io.savemat(f, {"subject": "1", "activity_number": "1"})
    with pytest.raises(ZeroharError, match=r"a1t1\.mat has no 'sensor_readings' variable"):
        uschad.read(root, progress=False)
    f.write_text("not a mat file")
    with pytest.raises(ZeroharError, match=r"a1t1\.mat is not a readable MATLAB \.mat file"):
        uschad.read(root, progress=False)


# ---------------------------------------------------------------------------------------------- WISDM
WISDM_CODES = {  # activity_key.txt
    "A": "walking", "B": "jogging", "C": "stairs", "D": "sitting", "E": "standing", "F": "typing",
    "G": "brushing teeth", "H": "eating soup", "I": "eating chips", "J": "eating pasta", "K": "drinking from cup",
    "L": "eating sandwich", "M": "kicking soccer ball", "O": "playing catch with tennis ball",
    "P": "dribbling basketball", "Q": "writing", "R": "clapping", "S": "folding clothes",
}


def _wisdm_raw(sid: str, device: str, sensor: str, code: str) -> tuple[np.ndarray, np.ndarray]:
    path = FIX / "wisdm" / "wisdm-dataset" / "raw" / device / sensor / f"data_{sid}_{sensor}_{device}.txt"
    rows = [line.rstrip(";\n").split(",") for line in path.read_text().splitlines()]
    rows = [r for r in rows if r[1] == code]
    return np.array([int(r[2]) for r in rows]), np.array([[float(v) for v in r[3:]] for r in rows])


def test_wisdm_aligns_phone_and_watch_per_subject_and_activity(caplog):
    classes = _classes("wisdm")
    with caplog.at_level(logging.WARNING):
        recs = wisdm.read(FIX / "wisdm", progress=False)
    # 1601 jogging (B) has no watch gyroscope stream: skipped with a warning, the others kept
    assert [r.name for r in recs] == ["wisdm/1600/A", "wisdm/1600/F", "wisdm/1601/D"]
    assert "no watch gyro data" in caplog.text
    for r in recs:
        code = r.meta["activity_code"]
        assert set(r.labels.tolist()) == {classes.index(WISDM_CODES[code])}
        assert r.rate is None and r.timestamps[0] == 0.0
        assert r.layout.n_sensors == 4 and not np.isnan(r.signals).any()
        # the reference stream (phone accel) keeps its own irregular timestamps and values
        t_raw, xyz_raw = _wisdm_raw(r.subject, "phone", "accel", code)
        i0 = int(np.flatnonzero(np.isclose(xyz_raw[:, 0].astype(np.float32), r.signals[0, 0]))[0])
        np.testing.assert_array_equal(r.signals[:, :3], xyz_raw[i0 : i0 + r.n_samples].astype(np.float32))
        np.testing.assert_allclose(r.timestamps, (t_raw[i0 : i0 + r.n_samples] - t_raw[i0]) / 1e9)
        dt = np.diff(r.timestamps)
        assert dt.std() > 0 and 0.04 < np.median(dt) < 0.06  # irregular, ~20 Hz
        # watch values are interpolated from the watch's own samples: within their range
        _, w = _wisdm_raw(r.subject, "watch", "accel", code)
        assert w[:, 0].min() <= r.signals[:, 6].min() and r.signals[:, 6].max() <= w[:, 0].max()


def test_wisdm_phone_only_layout_keeps_pairs_without_watch():
    phone = wisdm.device_layout("phone")
    assert {s.device for s in phone.sensors} == {"smartphone"} and phone.n_channels == 6
    recs = wisdm.read(FIX / "wisdm", progress=False, layout=phone)
    assert [r.name for r in recs] == ["wisdm/1600/A", "wisdm/1600/F", "wisdm/1601/B", "wisdm/1601/D"]
    assert all(r.layout == phone for r in recs)
    full = wisdm.read(FIX / "wisdm", progress=False)
    # the phone channels are the same samples; the watch no longer trims the span where all streams have data
    n = full[0].n_samples
    assert recs[0].n_samples >= n
    np.testing.assert_array_equal(recs[0].signals[:n], full[0].signals[:, :6])
    with pytest.raises(ZeroharError, match=r"WISDM devices \['tablet'\]: expected one or both of phone, watch"):
        wisdm.device_layout("tablet")


def test_wisdm_interpolated_stream_is_nan_across_its_own_gaps():
    full = SensorLayout.from_yaml(wisdm.DEFAULT_LAYOUT)
    watch_first = SensorLayout(
        tuple(full.sensors[i] for i in (2, 3, 0, 1)), "wisdm", tuple(full.columns[6:] + full.columns[:6])
    )
    r = wisdm.read(FIX / "wisdm", progress=False, layout=watch_first, max_gap=0.1)[0]
    phone_acc = r.signals[:, 6:9]
    # the phone accel stream pauses ~0.2 s once: NaN there, nowhere else; the reference (watch) has no NaN
    assert 1 <= np.isnan(phone_acc[:, 0]).sum() <= 4
    assert not np.isnan(r.signals[:, :6]).any()
    r = wisdm.read(FIX / "wisdm", progress=False, layout=watch_first, max_gap=0.5)[0]
    assert not np.isnan(r.signals).any()


def test_wisdm_bad_files(tmp_path):
    root = _copy("wisdm", tmp_path)
    f = root / "wisdm-dataset" / "raw" / "phone" / "accel" / "data_1600_accel_phone.txt"
    lines = f.read_text().splitlines()
    f.write_text("\n".join(lines[:2] + [lines[2].replace(",A,", ",A,x", 1)] + lines[3:]) + "\n")
    with pytest.raises(ZeroharError, match=r"data_1600_accel_phone\.txt line 3 field 3 holds 'x\d+'"):
        wisdm.read(root, progress=False)
    f.write_text("\n".join(lines[:2] + [lines[2].rsplit(",", 1)[0] + ";"] + lines[3:]) + "\n")
    with pytest.raises(ZeroharError, match=r"line 3 has 5 fields, expected 6"):
        wisdm.read(root, progress=False)
    f.write_text("\n".join(lines[:2] + ["1633" + lines[2][4:]] + lines[3:]) + "\n")
    with pytest.raises(ZeroharError, match=r"line 3: subject 1633, expected 1600"):
        wisdm.read(root, progress=False)
    shutil.rmtree(root / "wisdm-dataset" / "raw" / "watch" / "gyro")
    with pytest.raises(ZeroharError, match=r"raw/watch/gyro does not exist; the layout needs the watch gyro"):
        wisdm.read(root, progress=False)


# ---------------------------------------------------------------------------------------------- HARTH
HARTH_CODES = {  # HARTH readme
    1: "walking", 2: "running", 3: "shuffling", 4: "ascending stairs", 5: "descending stairs", 6: "standing",
    7: "sitting", 8: "lying", 13: "cycling (sit)", 14: "cycling (stand)", 130: "cycling (sit, inactive)",
    140: "cycling (stand, inactive)",
}


def _harth_raw(sid: str) -> list[dict]:
    with open(FIX / "harth" / "harth" / f"{sid}.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_harth_files_index_columns_and_timestamps():
    recs = harth.read(FIX / "harth", progress=False)
    assert [r.subject for r in recs] == ["S006", "S015", "S023"]
    for r in recs:
        rows = _harth_raw(r.subject)
        cols = [f"{p}_{a}" for p in ("back", "thigh") for a in "xyz"]
        expected = np.array([[float(row[c]) for c in cols] for row in rows], dtype=np.float32)
        np.testing.assert_array_equal(r.signals, expected)
        t = np.array([row["timestamp"] for row in rows], dtype="datetime64[ns]")
        np.testing.assert_allclose(r.timestamps, (t - t[0]).astype(np.float64) / 1e9)
        assert r.rate == 50.0 and r.meta["start"].startswith(rows[0]["timestamp"][:19].replace(" ", "T"))
    assert [s.placement for s in recs[0].layout.sensors] == ["lower back", "right thigh"]
    assert {(s.sensor, s.unit) for s in recs[0].layout.sensors} == {("acc", "g")}


def test_harth_labels_all_codes_and_unknown(caplog):
    classes = _classes("harth")
    with caplog.at_level(logging.WARNING):
        recs = harth.read(FIX / "harth", progress=False)
    seen = set()
    for r in recs:
        codes = [int(row["label"]) for row in _harth_raw(r.subject)]
        for code, label in zip(codes, r.labels):
            assert (classes[label] if label >= 0 else None) == HARTH_CODES.get(code)
            seen.add(code)
    assert set(HARTH_CODES) < seen  # plus code 18
    assert "label codes [18]" in caplog.text


def test_harth_bad_files(tmp_path):
    root = _copy("harth", tmp_path)
    f = root / "harth" / "S006.csv"
    lines = f.read_text().splitlines()
    f.write_text("\n".join([lines[0].replace(",thigh_z", "")] + lines[1:]) + "\n")
    with pytest.raises(ZeroharError, match=r"S006\.csv: header .* lacks \['thigh_z'\]"):
        harth.read(root, progress=False)
    f.write_text("\n".join([lines[0] + ",subject"] + [line + ",6" for line in lines[1:]]) + "\n")
    with pytest.raises(ZeroharError, match=r"S006\.csv: header .* has extra columns \['subject'\]"):
        harth.read(root, progress=False)
    fields = lines[3].split(",")
    fields[2] = "oops"
    f.write_text("\n".join(lines[:3] + [",".join(fields)] + lines[4:]) + "\n")
    with pytest.raises(ZeroharError, match=r"S006\.csv line 4 column 3 holds 'oops"):
        harth.read(root, progress=False)
    f.write_text("\n".join(lines[:3] + ["yesterday" + lines[3][23:]] + lines[4:]) + "\n")
    with pytest.raises(ZeroharError, match=r"line 4: timestamp 'yesterday' is not a date and time"):
        harth.read(root, progress=False)
    f.write_text("\n".join(lines[:3] + [lines[4], lines[3]] + lines[5:]) + "\n")
    with pytest.raises(ZeroharError, match=r"S006\.csv line 5: timestamp .* is earlier than the previous one"):
        harth.read(root, progress=False)
