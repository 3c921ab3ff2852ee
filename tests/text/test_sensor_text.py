"""Sensor-context text: every channel of every shipped layout gets a distinct, non-empty description."""

from __future__ import annotations

from pathlib import Path

import pytest

from zerohar.data.layout import Channel, Sensor, SensorLayout
from zerohar.errors import ZeroharError
from zerohar.paths import metadata_dir
from zerohar.text.sensors import (
    axis_description,
    axis_descriptions,
    load_sensor_templates,
    placement_phrase,
    sensor_description,
    sensor_descriptions,
    with_article,
)

LAYOUTS = sorted((metadata_dir() / "sensors").glob("*.yaml"))


def test_examples_of_the_design():
    ch = Channel("acc", "x", "waist", "smartphone", "g")
    assert axis_description(ch) == "x-axis of an accelerometer in a smartphone worn on the waist"
    s = Sensor("acc", "left wrist", "smartwatch", "g")
    assert sensor_description(s) == "accelerometer in a smartwatch worn on the left wrist"
    g = Sensor("gyro", "right trouser pocket", "smartphone", "rad/s")
    assert sensor_description(g) == "gyroscope in a smartphone carried in the right trouser pocket"


@pytest.mark.parametrize("path", LAYOUTS, ids=[p.stem for p in LAYOUTS])
def test_every_channel_of_a_shipped_layout_has_a_distinct_description(path: Path):
    layout = SensorLayout.from_yaml(path)
    axes = axis_descriptions(layout)
    sensors = sensor_descriptions(layout)
    assert len(axes) == layout.n_channels and len(sensors) == layout.n_sensors
    assert all(isinstance(t, str) and t.strip() and "{" not in t for t in axes + sensors)
    assert len(set(axes)) == len(axes), f"{path.name}: two channels share a description"
    assert len(set(sensors)) == len(sensors), f"{path.name}: two sensors share a description"
    for ch, text in zip(layout.channels, axes):
        assert text.startswith(f"{ch.axis}-axis of ")
        assert ch.placement in text and ch.device in text


def test_all_eight_datasets_have_layouts():
    names = {p.stem for p in LAYOUTS}
    expected = {p.stem for p in (metadata_dir() / "folds").glob("*.yaml")}
    assert expected <= names, f"layouts missing for {sorted(expected - names)}"


def test_description_ignores_unit_and_column():
    a = Channel("acc", "y", "chest", "IMU", "g", column="a1")
    b = Channel("acc", "y", "chest", "IMU", "m/s^2", column="chest_acc_y")
    assert axis_description(a) == axis_description(b)
    assert sensor_description(Sensor("acc", "chest", "IMU", "g")) == sensor_description(a)


def test_every_field_distinguishes_channels():
    base = Channel("acc", "x", "left wrist", "smartwatch", "g")
    variants = [
        Channel("gyro", "x", "left wrist", "smartwatch", "rad/s"),
        Channel("mag", "x", "left wrist", "smartwatch", "uT"),
        Channel("acc", "z", "left wrist", "smartwatch", "g"),
        Channel("acc", "x", "right wrist", "smartwatch", "g"),
        Channel("acc", "x", "left wrist", "smartphone", "g"),
    ]
    texts = [axis_description(c) for c in [base, *variants]]
    assert len(set(texts)) == len(texts)


@pytest.mark.parametrize(
    "phrase, expected",
    [("accelerometer", "an accelerometer"), ("smartwatch", "a smartwatch"), ("IMU", "an IMU"),
     ("MPU-9250 board", "an MPU-9250 board"), ("unit", "a unit"), ("activity monitor", "an activity monitor")],
)
def test_articles(phrase, expected):
    assert with_article(phrase) == expected


@pytest.mark.parametrize(
    "placement, expected",
    [("waist", "worn on the waist"), ("right trouser pocket", "carried in the right trouser pocket"),
     ("left hand", "held in the left hand"), ("on the handlebar", "on the handlebar")],
)
def test_placement_phrases(placement, expected):
    assert placement_phrase(placement) == expected


def test_bad_template_file(tmp_path):
    f = tmp_path / "t.yaml"
    f.write_text("axis: '{axis} of {sensr}'\nsensor: '{sensor}'\nsensor_names: {}\nplacements: {}\narticles: {}\n")
    with pytest.raises(ZeroharError, match=r"t.yaml: 'axis' uses unknown placeholders \['sensr'\]"):
        load_sensor_templates(f)
    f.write_text("axis: '{axis}'\n")
    with pytest.raises(ZeroharError, match=r"t.yaml: expected the keys .*'articles'.*found \['axis'\]"):
        load_sensor_templates(f)
    with pytest.raises(ZeroharError, match="sensor template file .*missing.yaml does not exist"):
        load_sensor_templates(tmp_path / "missing.yaml")
