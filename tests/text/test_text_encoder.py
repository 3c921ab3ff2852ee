"""The frozen sentence encoder: shape, normalisation, identity, and the disk cache (offline default model)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from zerohar.errors import ZeroharError
from zerohar.text import encoder as enc_mod
from zerohar.text.encoder import DEFAULT_MODEL, TextEncoder, get_text_encoder, text_key


@pytest.fixture
def fresh_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("ZEROHAR_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def model():
    """The default model, loaded once for the file (the process-wide encoder)."""
    e = get_text_encoder()
    e._load()
    return e


def test_encoder_is_one_per_process_and_default_aliases_agree():
    assert get_text_encoder() is get_text_encoder(None)
    assert get_text_encoder() is get_text_encoder(DEFAULT_MODEL)
    assert get_text_encoder() is get_text_encoder(f"sentence-transformers/{DEFAULT_MODEL}")


def test_encode_shape_dtype_norm_and_order(model, fresh_cache):
    texts = ["x-axis of an accelerometer in a smartphone worn on the waist", "a person walks", "a person walks"]
    e = model.encode(texts)
    assert e.shape == (3, model.dim) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(e[1], e[2])
    assert not np.allclose(e[0], e[1])
    assert model.encode([]).shape == (0, model.dim)


def test_similar_texts_are_closer_than_unrelated_ones(model, fresh_cache):
    a, b, c = model.encode(["a person walking", "someone is walking slowly", "the gyroscope measures rotation"])
    assert a @ b > a @ c


def test_cache_is_reused_without_running_the_model(model, fresh_cache, monkeypatch):
    texts = ["legs swing forward in turn", "arms rest on the thighs"]
    first = model.encode(texts)
    shards = list((fresh_cache / "text" / model.identity).glob("*.npz"))
    assert len(shards) == 1
    with np.load(shards[0], allow_pickle=False) as z:
        assert sorted(z["keys"].tolist()) == sorted(text_key(t) for t in texts)

    # A new encoder object (as in a new process) reads the disk cache and never calls the model.
    other = TextEncoder()
    monkeypatch.setattr(other, "_embed", lambda *a, **k: pytest.fail("cached texts were embedded again"))
    np.testing.assert_array_equal(other.encode(texts[::-1]), first[::-1])
    assert other.dim == model.dim  # known from the cache, without loading the model


def test_only_new_texts_are_embedded(model, fresh_cache, monkeypatch):
    model.encode(["one known text"])
    seen = []
    real = model._embed
    monkeypatch.setattr(model, "_embed", lambda texts, progress: seen.extend(texts) or real(texts, progress))
    model.encode(["one known text", "a new text", "a new text", "another new text"])
    assert seen == ["a new text", "another new text"]


def test_shards_are_merged_when_many(model, fresh_cache, monkeypatch):
    monkeypatch.setattr(enc_mod, "MAX_SHARDS", 3)
    texts = [f"text number {i}" for i in range(6)]
    expected = model.encode(texts)  # one shard
    for i in range(5):
        model.encode([f"extra text {i}"])
    folder = fresh_cache / "text" / model.identity
    assert len(list(folder.glob("*.npz"))) <= 3
    assert not list(folder.glob(".tmp-*"))
    fresh = TextEncoder()
    monkeypatch.setattr(fresh, "_embed", lambda *a, **k: pytest.fail("merged cache lost a text"))
    np.testing.assert_array_equal(fresh.encode(texts), expected)


def test_damaged_shard_is_skipped(model, fresh_cache):
    model.encode(["a text to cache"])
    folder = fresh_cache / "text" / model.identity
    (folder / "broken.npz").write_bytes(b"not an npz file")
    out = TextEncoder().encode(["a text to cache", "another one"])
    assert out.shape == (2, model.dim)


def test_identity_is_stable_and_names_the_model(model):
    ident = model.identity
    assert ident.startswith(DEFAULT_MODEL + "-") and "/" not in ident
    assert TextEncoder().identity == ident
    assert str(Path.home()) not in ident


def test_identity_changes_with_the_model_files(tmp_path):
    a = tmp_path / "m"
    a.mkdir()
    (a / "config.json").write_text("{}")
    (a / "model.safetensors").write_bytes(b"0" * 10)
    id1 = TextEncoder(str(a)).identity
    (a / "README.md").write_text("docs do not change the model")
    assert TextEncoder(str(a)).identity == id1
    (a / "model.safetensors").write_bytes(b"0" * 11)
    assert TextEncoder(str(a)).identity != id1
    assert id1.startswith("m-")


def test_encode_rejects_a_bare_string(model):
    with pytest.raises(TypeError, match="list of strings"):
        model.encode("walking")
    with pytest.raises(TypeError, match="text 1 is a int"):
        model.encode(["walking", 3])


def test_unknown_model_is_a_clear_error(tmp_path):
    with pytest.raises(ZeroharError, match="text encoder .*no-such-model.* could not be loaded"):
        TextEncoder(str(tmp_path / "no-such-model")).encode(["walking"])


def test_import_zerohar_does_not_import_sentence_transformers():
    code = (
        "import sys, zerohar, zerohar.text.encoder, zerohar.text.labels, zerohar.text.sensors; "
        "print('sentence_transformers' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
