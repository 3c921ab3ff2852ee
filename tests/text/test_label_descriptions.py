"""Label descriptions: the shipped files (every class, 10 distinct descriptions, no sharing) and the loaders."""

from __future__ import annotations

import json

import pytest

from zerohar.data.folds import load_folds
from zerohar.errors import ZeroharError
from zerohar.paths import metadata_dir
from zerohar.text.describe import INSTRUCTION_VERSION, instruction
from zerohar.text.labels import (
    descriptions_for,
    known_datasets,
    load_label_descriptions,
    read_label_file,
    template_descriptions,
    write_label_file,
)

DATASETS = sorted(p.stem for p in (metadata_dir() / "folds").glob("*.yaml"))


def test_all_eight_datasets_are_described():
    assert len(DATASETS) == 8
    assert known_datasets() == DATASETS


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_class_has_ten_distinct_descriptions_of_its_own(dataset):
    classes = list(load_folds(dataset).classes)
    prov, labels = read_label_file(metadata_dir() / "labels" / f"{dataset}.json")
    assert list(labels) == classes  # every class of the folds file, in its order, and nothing else
    owner: dict[str, str] = {}
    for label, descs in labels.items():
        assert len(descs) == 10 and len(set(descs)) == 10, label
        for d in descs:
            assert d == " ".join(d.split()) and d.endswith("."), d
            assert len(d.split()) <= 25, f"{label}: over the instruction's 25 words: {d}"
            assert d not in owner, f"{label!r} and {owner.get(d)!r} share {d!r}"
            owner[d] = label
    assert prov["generator"] and prov["date"] == "2026-11-23"
    assert prov["instruction_version"] == INSTRUCTION_VERSION
    assert prov["instruction"] == instruction(10)


def test_a_label_shared_by_datasets_has_the_same_descriptions_and_no_description_has_two_labels():
    by_label: dict[str, list[str]] = {}
    by_text: dict[str, str] = {}
    for ds in DATASETS:
        for label, descs in load_label_descriptions(ds).items():
            assert by_label.setdefault(label, descs) == descs, f"{label!r} differs in {ds}"
            for d in descs:
                assert by_text.setdefault(d, label) == label, f"{d!r} is used for {label!r} and {by_text[d]!r}"
    assert len(by_label) >= 60  # the eight datasets name 70 distinct activities


# ---------------------------------------------------------------------------------------------- loading
def test_load_by_name_and_by_path(tmp_path):
    by_name = load_label_descriptions("hapt")
    assert load_label_descriptions(metadata_dir() / "labels" / "hapt.json") == by_name
    f = tmp_path / "mine.json"
    f.write_text(json.dumps({"labels": {"rock  climbing ": ["arms pull the body up.", "legs push up."]}}))
    assert load_label_descriptions(f) == {"rock climbing": ["arms pull the body up.", "legs push up."]}


@pytest.mark.parametrize(
    "content, fragments",
    [
        (b"\xff\xfe\x00binary", [" is not a UTF-8 text file (line 1"]),
        (b'{"labels": {', [" is not valid JSON (line 1"]),
        (b'["walking"]', [": expected a JSON object with a 'labels' mapping of label -> list of descriptions",
                          "found a JSON array"]),
        (b'{"walking": ["x"]}', [": expected a JSON object with a 'labels' mapping", "found keys ['walking']"]),
        (b'{"labels": ["walking"]}', [": 'labels' must map labels to descriptions, found a JSON array"]),
        (b'{"labels": {}}', [": 'labels' must map labels to descriptions, found an empty object"]),
        (b'{"labels": {"walking": "legs move"}}',
         [": label 'walking' must have a non-empty list of non-empty description strings, found a JSON string"]),
        (b'{"labels": {"walking": []}}', [": label 'walking' must have", "found an empty array"]),
        (b'{"labels": {"walking": ["ok", 3]}}', [": label 'walking' must have", "found an array holding 3"]),
        (b'{"labels": {" ": ["x"]}}', [": a label name is empty"]),
        (b'{"labels": {"a": ["x"]}, "extra": 1}', [": unexpected top-level keys ['extra']"]),
        (b'{"labels": {"a": ["x"]}, "provenance": []}', [": 'provenance' must be an object, found a JSON array"]),
    ],
)
def test_bad_label_file(tmp_path, content, fragments):
    f = tmp_path / "bad.json"
    f.write_bytes(content)
    with pytest.raises(ZeroharError) as e:
        load_label_descriptions(f)
    msg = str(e.value)
    assert msg.startswith(f"label description file {f}{fragments[0]}"), msg
    assert all(frag in msg for frag in fragments[1:]), msg


def test_unknown_dataset_and_missing_file(tmp_path):
    with pytest.raises(ZeroharError) as e:
        load_label_descriptions("nope")
    assert str(e.value).startswith("no label descriptions for dataset 'nope': expected a .json file or one of ")
    assert "hapt" in str(e.value)
    with pytest.raises(ZeroharError, match="label description file .*missing.json does not exist"):
        load_label_descriptions(tmp_path / "missing.json")


# ---------------------------------------------------------------------------------------------- fallbacks
def test_template_descriptions():
    t = template_descriptions("  rock   climbing ")
    assert len(t) == 10 and len(set(t)) == 10
    assert all("rock climbing" in s for s in t)
    assert "a person is rock climbing." in t
    with pytest.raises(ZeroharError, match="an activity label is empty"):
        template_descriptions("   ")


def test_descriptions_for_prefers_written_ones_then_templates():
    hapt = load_label_descriptions("hapt")
    out = descriptions_for(["walking", "Walking  Upstairs", "rock climbing", "walking"])
    assert list(out) == ["walking", "Walking  Upstairs", "rock climbing"]  # keys as given, duplicates dropped
    assert out["walking"] == hapt["walking"]
    assert out["Walking  Upstairs"] == hapt["walking upstairs"]  # case and spacing ignored in the lookup
    assert out["rock climbing"] == template_descriptions("rock climbing")


def test_descriptions_for_with_explicit_sources(tmp_path):
    mine = {"walking": ["my own walking text."]}
    assert descriptions_for(["walking"], known=mine)["walking"] == ["my own walking text."]
    # Earlier sources win; a dataset name or a file path also works.
    out = descriptions_for(["walking", "pendulum"], known=[mine, "shoulder"])
    assert out["walking"] == ["my own walking text."]
    assert out["pendulum"] == load_label_descriptions("shoulder")["pendulum"]
    # A label the given source lacks falls back to templates, even when another shipped file has it.
    assert descriptions_for(["walking"], known="shoulder")["walking"] == template_descriptions("walking")
    with pytest.raises(ZeroharError, match="activity label 2 is empty"):
        descriptions_for(["walking", ""])


# ---------------------------------------------------------------------------------------------- writing
def test_write_refuses_overwrite_and_merges_with_update(tmp_path):
    f = tmp_path / "out.json"
    write_label_file(f, {"generator": "a"}, {"walking": ["x."]})
    with pytest.raises(ZeroharError, match=f"output {f} already exists; pass --update .* or --force"):
        write_label_file(f, {"generator": "b"}, {"running": ["y."]})
    write_label_file(f, {"generator": "b"}, {"running": ["y."], "walking": ["z."]}, update=True)
    prov, labels = read_label_file(f)
    assert labels == {"walking": ["z."], "running": ["y."]}
    assert prov["generator"] == "a" and prov["updates"] == [{"generator": "b", "labels": ["running", "walking"]}]
    write_label_file(f, {"generator": "c"}, {"jumping": ["j."]}, force=True)
    assert read_label_file(f) == ({"generator": "c"}, {"jumping": ["j."]})
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temp files left behind
