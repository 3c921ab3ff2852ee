"""Label maps (`data.label_map`, zerohar.data.multi): near-synonyms of two sources stay two labels unless a map
gives them one text; bad map files are one-sentence errors; the shipped examples validate.

Random windows (bookkeeping only), saved as window sets of different layouts, as in tests/data/test_multi.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import window_set_file

from zerohar.cli import build_parser
from zerohar.commands._training import overrides_from_args
from zerohar.config import resolve_config
from zerohar.data.folds import load_folds
from zerohar.data.layout import Sensor, SensorLayout
from zerohar.data.multi import load_data, load_label_map
from zerohar.data.sources import dataset_roots
from zerohar.errors import ZeroharError
from zerohar.paths import metadata_dir

WAIST = SensorLayout((Sensor("acc", "waist", "smartphone", "g"),))
WRIST = SensorLayout((Sensor("acc", "wrist", "smartwatch", "g"),))
REPO = Path(__file__).resolve().parents[2]


def _set(path, layout, classes, n_subjects, per, seed):
    return window_set_file(path, layout, classes, n_subjects, per, seed, cyclic_labels=True)


@pytest.fixture
def two_sets(tmp_path):
    """`a` says "walking forward" and "upstairs", `b` "walking" and "walking upstairs": near-synonyms."""
    a = _set(tmp_path / "a.npz", WAIST, ["walking forward", "upstairs", "lying"], 5, 12, 0)
    b = _set(tmp_path / "b.npz", WRIST, ["walking", "walking upstairs", "rowing"], 5, 12, 1)
    return a, b


def _load(a, b, label_map=None, stage="stage2"):
    data = {"sources": [{"data": str(a)}, {"data": str(b)}]}
    if label_map is not None:
        data["label_map"] = str(label_map)
    return load_data(resolve_config(stage, overrides={"data": data, "train": {"label_text": "names"}}))


def _map(tmp_path, text: str) -> Path:
    p = tmp_path / "map.yaml"
    p.write_text(text)
    return p


def _positives(d, ids):
    """Which windows of classes `ids` are positives of each other: the same text row."""
    _, row = d.text_rows()
    return row[ids][:, None] == row[ids][None, :]


def test_near_synonyms_are_two_labels_without_a_map_and_one_with_it(tmp_path, two_sets):
    a, b = two_sets
    d = _load(a, b)
    texts, row = d.text_rows()
    assert texts == ["walking forward", "upstairs", "lying", "walking", "walking upstairs", "rowing"]
    assert d.class_text("a/walking forward") == "walking forward" and not d.label_map
    ids = [d.classes.index("a/walking forward"), d.classes.index("b/walking")]
    assert _positives(d, ids).tolist() == [[True, False], [False, True]]
    assert "label_map" not in d.ws.meta

    m = _map(tmp_path, "a/walking forward: walking\na/upstairs: walking upstairs\n")
    d = _load(a, b, m)
    texts, row = d.text_rows()
    assert texts == ["walking", "walking upstairs", "lying", "rowing"]
    assert d.class_text("a/walking forward") == d.class_text("b/walking") == "walking"
    assert d.class_text("b/rowing") == "rowing"  # classes not in the map keep their name
    assert _positives(d, ids).all()
    assert row[d.classes.index("a/upstairs")] == row[d.classes.index("b/walking upstairs")]
    # the classes themselves stay namespaced and distinct; the map is recorded with the data
    assert d.classes[:3] == ["a/walking forward", "a/upstairs", "a/lying"]
    assert d.label_map == d.ws.meta["label_map"] == {"a/walking forward": "walking", "a/upstairs": "walking upstairs"}
    assert d.label_map_file == str(m)


def test_the_cli_flag_sets_the_label_map(tmp_path, two_sets):
    a, b = two_sets
    m = _map(tmp_path, "a/walking forward: walking\n")
    args = build_parser().parse_args(["stage2", "--data", str(a), str(b), "--label-map", str(m)])
    assert overrides_from_args(args)["data"]["label_map"] == str(m)
    assert resolve_config("stage2", overrides=overrides_from_args(args)).data.label_map == str(m)


@pytest.mark.parametrize("text, message", [
    ("a/walking fwd: walking\n", r"key 'a/walking fwd' is not a class of a \(its classes: walking forward, "
                                 r"upstairs, lying\)"),
    ("c/walking: walking\n", r"key 'c/walking' names the source 'c', which this run does not train on"),
    ("walking forward: walking\n", r"key 'walking forward' is not a namespaced class; write source/label"),
    ("a/walking forward: [walking]\n", r"key 'a/walking forward' maps to \['walking'\], expected a label text"),
    ("a/walking forward: 3\n", r"key 'a/walking forward' maps to 3, expected a label text"),
    ("a/walking forward: ''\n", r"key 'a/walking forward' maps to '', expected a label text"),
    ("a/walking forward: b/walking\n", r"key 'a/walking forward' maps to the class 'b/walking'; write its label "
                                       r"text 'walking'"),
    ("a/upstairs: lying\n", r"key 'a/upstairs' gives 'a/upstairs' and 'a/lying' the same text 'lying', but one "
                            r"source's classes must stay distinct labels"),
    ("- a/walking forward\n", r"expected a mapping at the top level, found list"),
    ("a/lying: x\na/lying: y\n", r"key 'a/lying' appears twice"),
])
def test_a_bad_label_map_is_one_sentence_naming_the_file_and_the_key(tmp_path, two_sets, text, message):
    a, b = two_sets
    m = _map(tmp_path, text)
    with pytest.raises(ZeroharError, match=message) as e:
        _load(a, b, m)
    assert str(m) in str(e.value) and ". " not in str(e.value).replace(str(m), "")


def test_a_label_map_needs_several_sources_and_an_existing_file(tmp_path, two_sets):
    a, b = two_sets
    m = _map(tmp_path, "a/walking forward: walking\n")
    with pytest.raises(ZeroharError, match=r"data.label_map merges classes of several sources, so it needs "
                                           r"data.sources"):
        resolve_config("stage2", overrides={"data": {"data": str(a), "label_map": str(m)}})
    with pytest.raises(ZeroharError, match="label map file"):
        _load(a, b, tmp_path / "missing.yaml")
    assert _load(a, b, _map(tmp_path, "")).label_map == {}  # an empty map merges nothing


def test_a_text_trained_in_one_source_and_unseen_in_another_is_warned_about(tmp_path, two_sets, caplog):
    a, b = two_sets
    folds = tmp_path / "a_folds.yaml"
    folds.write_text("classes: [walking forward, upstairs, lying]\nfolds:\n  f1: {unseen: [walking forward]}\n")
    m = _map(tmp_path, "a/walking forward: walking\n")
    data = {"sources": [{"data": str(a), "folds": str(folds), "fold": "f1"}, {"data": str(b)}], "label_map": str(m)}
    d = load_data(resolve_config("stage2", overrides={"data": data, "train": {"label_text": "names"}}))
    assert d.unseen == ["a/walking forward"]
    assert "unseen classes a/walking forward share their label text with a trained class" in caplog.text


# ---------------------------------------------------------------------------------------------- shipped examples
def test_the_example_sources_and_label_map_validate(monkeypatch):
    monkeypatch.chdir(REPO)  # the example's paths are relative to the checkout, as on the command line
    cfg = resolve_config("stage2", config_file="metadata/sources.example.yaml")
    names = [s["dataset"] for s in cfg.data.sources]
    assert names == ["hapt", "shoulder", "spswhar", "uschad"]
    assert cfg.data.label_map == "metadata/label_map.example.yaml" and cfg.data.fold is None
    for stage in ("pretrain", "stage1"):
        resolve_config(stage, config_file="metadata/sources.example.yaml")
    # every key is a real class of its dataset (the class lists of the folds files: no raw data needed)
    classes = [f"{n}/{c}" for n in names for c in load_folds(n).classes]
    mapping = load_label_map(cfg.data.label_map, classes, names)
    assert mapping == {"uschad/walking forward": "walking", "spswhar/seated": "sitting",
                       "spswhar/standing up": "sit-to-stand", "spswhar/sitting down": "stand-to-sit"}
    # each mapped text is another dataset's class name, so the map merges and does not just rename
    for key, text in mapping.items():
        assert any(c.split("/", 1)[1] == text and not c.startswith(key.split("/")[0] + "/") for c in classes)
    descriptions = [s["descriptions"] for s in cfg.data.sources if s.get("descriptions")]
    assert descriptions and all((REPO / p).is_file() for p in descriptions)
    assert (metadata_dir() / "label_map.example.yaml").is_file()


def test_the_example_roots_are_the_shared_datasets(shared_data, monkeypatch):
    monkeypatch.chdir(REPO)
    cfg = resolve_config("stage2", config_file="metadata/sources.example.yaml")
    names = [s["dataset"] for s in cfg.data.sources]
    expected = dataset_roots(names, REPO.parent / "shared" / "data")  # where `../shared/data/...` points
    for s in cfg.data.sources:
        assert (REPO / s["root"]).resolve() == Path(expected[s["dataset"]]).resolve()
