"""Label lists a user gives (clean_labels, read_labels_file) and the one label-text rule (label_texts)."""

from __future__ import annotations

import logging

import pytest

from zerohar.errors import ZeroharError
from zerohar.text.label_rule import label_texts
from zerohar.text.labels import clean_labels, load_label_descriptions, read_labels_file, template_descriptions

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
    with pytest.raises(ZeroharError, match=r"only one label \('walking'\); zero-shot classification needs at least"):
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


def test_describe_asks_the_llm_only_for_labels_without_written_descriptions(monkeypatch, tmp_path):
    from llm_server import LLMServer

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
    texts = label_texts(["rock climbing", "sitting"], dataset="hapt")
    assert texts["rock climbing"] == template_descriptions("rock climbing")
    assert len(texts["sitting"]) == 10 and texts["sitting"] != template_descriptions("sitting")
    assert label_texts(["a b", "c"], label_text="names") == {"a b": ["a b"], "c": ["c"]}
    written = label_texts(["rowing", "sitting"], written={"rowing": ["arms pull"]}, dataset="hapt")
    assert written["rowing"] == ["arms pull"]
