"""LabelIndex: prototypes, search with and without candidate restriction, persistence, model identity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zerohar.errors import ZeroharError
from zerohar.inference import index as index_mod
from zerohar.inference.index import LabelIndex, model_identity, numpy_search_pays, top_k


@pytest.fixture(params=["faiss", "numpy"])
def search_impl(request, monkeypatch):
    """Each search test runs on both implementations the machine's timing can choose."""
    monkeypatch.setattr(index_mod, "numpy_search_pays", lambda n, speeds=None: request.param == "numpy")
    return request.param


def _random_labels(n_labels: int, k: int, dim: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"label {i}": rng.normal(size=(k, dim)).astype(np.float32) for i in range(n_labels)}


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_prototype_is_normalised_mean_of_normalised_descriptions():
    vecs = _random_labels(3, 5, 8)
    index = LabelIndex.from_embeddings(vecs)
    for i, (lab, v) in enumerate(vecs.items()):
        assert index.labels[i] == lab
        expected = _unit(_unit(v).mean(axis=0))
        np.testing.assert_allclose(index.prototypes[i], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(index.prototypes, axis=1), 1.0, rtol=1e-5)


def test_search_returns_the_nearest_prototypes_best_first(search_impl):
    vecs = _random_labels(6, 3, 16, seed=1)
    index = LabelIndex.from_embeddings(vecs)
    q = np.random.default_rng(2).normal(size=(20, 16)).astype(np.float32)
    scores, labels = index.search(q, k=3)
    sims = _unit(q) @ index.prototypes.T
    order = np.argsort(-sims, axis=1)[:, :3]
    assert labels.shape == scores.shape == (20, 3)
    assert (labels == np.asarray(index.labels)[order]).all()
    np.testing.assert_allclose(scores, np.take_along_axis(sims, order, axis=1), rtol=1e-5, atol=1e-6)
    assert (np.diff(scores, axis=1) <= 1e-7).all()


def test_candidate_restriction_never_returns_other_labels(search_impl):
    vecs = _random_labels(10, 2, 12, seed=3)
    index = LabelIndex.from_embeddings(vecs)
    # Queries equal to the prototypes of labels outside the candidate set: unrestricted, they find themselves.
    q = index.prototypes[[0, 1, 2]]
    cands = ["label 7", "label 3", "label 9"]  # deliberately unsorted
    _, free = index.search(q, k=1)
    assert list(free[:, 0]) == ["label 0", "label 1", "label 2"]
    scores, labels = index.search(q, k=5, candidates=cands)
    assert labels.shape == (3, 3)  # k is capped at the number of candidates
    assert set(labels.ravel()) <= set(cands)
    sims = q @ index.prototypes[index.label_ids(cands)].T
    np.testing.assert_allclose(scores, -np.sort(-sims, axis=1), rtol=1e-5, atol=1e-6)


def test_per_query_candidates():
    vecs = _random_labels(5, 2, 8, seed=4)
    index = LabelIndex.from_embeddings(vecs)
    q = index.prototypes[[0, 0, 4]]
    per_query = [["label 0", "label 1"], ["label 2", "label 3"], ["label 4", "label 1"]]
    _, labels = index.search(q, k=1, candidates=per_query)
    assert labels[0, 0] == "label 0"
    assert labels[1, 0] in ("label 2", "label 3")
    assert labels[2, 0] == "label 4"


def test_large_candidate_sets_agree_with_brute_force(search_impl):
    vecs = _random_labels(3000, 1, 16, seed=5)
    index = LabelIndex.from_embeddings(vecs)
    rng = np.random.default_rng(6)
    cand_ids = rng.choice(3000, size=2500, replace=False)
    cands = [index.labels[i] for i in cand_ids]
    q = rng.normal(size=(7, 16)).astype(np.float32)
    scores, labels = index.search(q, k=4, candidates=cands)
    sims = _unit(q) @ index.prototypes[np.sort(cand_ids)].T
    np.testing.assert_allclose(scores, -np.sort(-sims, axis=1)[:, :4], rtol=1e-5, atol=1e-5)
    assert set(labels.ravel()) <= set(cands)


def test_unknown_candidate_and_dimension_errors():
    index = LabelIndex.from_embeddings(_random_labels(3, 2, 8))
    with pytest.raises(ZeroharError, match=r"labels \['jogging'\] are not in the label index"):
        index.search(np.ones((1, 8), np.float32), k=1, candidates=["label 0", "jogging"])
    with pytest.raises(ZeroharError, match="embeddings have dimension 4, the label index has 8"):
        index.search(np.ones((1, 4), np.float32), k=1)
    with pytest.raises(ZeroharError, match="already in the index"):
        index.add_embeddings({"label 1": np.ones((1, 8), np.float32)})


def test_explain_names_the_best_matching_description():
    rng = np.random.default_rng(7)
    vecs = {"a": rng.normal(size=(3, 8)).astype(np.float32), "b": rng.normal(size=(2, 8)).astype(np.float32)}
    texts = {"a": ["a0", "a1", "a2"], "b": ["b0", "b1"]}
    index = LabelIndex.from_embeddings(vecs, texts)
    q = np.stack([vecs["a"][2], vecs["b"][0]])
    best, scores = index.explain(q, ["a", "b"])
    assert best == ["a2", "b0"]
    np.testing.assert_allclose(scores, 1.0, rtol=1e-5)


def test_add_extends_the_index():
    vecs = _random_labels(4, 2, 8, seed=8)
    first = dict(list(vecs.items())[:2])
    rest = dict(list(vecs.items())[2:])
    index = LabelIndex.from_embeddings(first)
    index.add_embeddings(rest)
    whole = LabelIndex.from_embeddings(vecs)
    assert index.labels == whole.labels
    q = np.random.default_rng(9).normal(size=(5, 8)).astype(np.float32)
    assert (index.search(q, 2)[1] == whole.search(q, 2)[1]).all()


def test_save_load_round_trip(tmp_path):
    vecs = _random_labels(5, 3, 8, seed=10)
    texts = {lab: [f"{lab} text {j}" for j in range(3)] for lab in vecs}
    model = torch.nn.Linear(4, 8)
    index = LabelIndex.from_embeddings(vecs, texts, model_identity(model), "text-model-x")
    out = index.save(tmp_path / "idx")
    loaded = LabelIndex.load(out, model=model)
    assert loaded.labels == index.labels
    assert loaded.description_texts == index.description_texts
    assert (loaded.description_owner == index.description_owner).all()
    np.testing.assert_array_equal(loaded.prototypes, index.prototypes)
    q = np.random.default_rng(11).normal(size=(6, 8)).astype(np.float32)
    s1, l1 = index.search(q, 3, candidates=["label 4", "label 1", "label 2"])
    s2, l2 = loaded.search(q, 3, candidates=["label 4", "label 1", "label 2"])
    assert (l1 == l2).all()
    np.testing.assert_array_equal(s1, s2)
    assert loaded.explain(q[:2], ["label 0", "label 3"])[0] == index.explain(q[:2], ["label 0", "label 3"])[0]
    assert not list(tmp_path.glob(".idx*")), "temporary directories left behind"


def test_save_refuses_to_overwrite_without_force(tmp_path):
    index = LabelIndex.from_embeddings(_random_labels(2, 1, 4))
    index.save(tmp_path / "idx")
    with pytest.raises(ZeroharError, match=r"idx already exists; pass --force"):
        index.save(tmp_path / "idx")
    bigger = LabelIndex.from_embeddings(_random_labels(3, 1, 4))
    bigger.save(tmp_path / "idx", force=True)
    assert len(LabelIndex.load(tmp_path / "idx")) == 3


def test_loading_an_index_of_another_model_is_an_error(tmp_path):
    torch.manual_seed(0)
    a, b = torch.nn.Linear(4, 8), torch.nn.Linear(4, 8)
    assert model_identity(a) != model_identity(b)
    LabelIndex.from_embeddings(_random_labels(2, 1, 8), model_identity=model_identity(a)).save(tmp_path / "idx")
    with pytest.raises(ZeroharError, match=r"idx was built by model sha256:\w+, not by the model given"):
        LabelIndex.load(tmp_path / "idx", model=b)


def test_model_identity_is_stable_across_a_state_dict_copy():
    a = torch.nn.Linear(4, 8)
    b = torch.nn.Linear(4, 8)
    b.load_state_dict(a.state_dict())
    assert model_identity(a) == model_identity(b)


def test_loading_a_corrupt_index_is_an_error(tmp_path):
    (tmp_path / "idx").mkdir()
    with pytest.raises(ZeroharError, match="is not a label index: index.json is missing"):
        LabelIndex.load(tmp_path / "idx")
    LabelIndex.from_embeddings(_random_labels(2, 1, 4)).save(tmp_path / "idx2")
    (tmp_path / "idx2" / "prototypes.faiss").write_bytes(b"garbage")
    with pytest.raises(ZeroharError, match="idx2 is corrupt or was not written by zerohar"):
        LabelIndex.load(tmp_path / "idx2")


def test_numpy_top_k_in_blocks_equals_one_product(monkeypatch):
    rng = np.random.default_rng(7)
    x, P = _unit(rng.normal(size=(50, 8))).astype(np.float32), _unit(rng.normal(size=(30, 8))).astype(np.float32)
    whole = top_k(x, P, 4)
    monkeypatch.setattr(index_mod, "_NUMPY_BLOCK", 7 * 30)  # 7 windows per block: 8 blocks, the last short
    blocked = top_k(x, P, 4)
    np.testing.assert_array_equal(whole[1], blocked[1])
    np.testing.assert_allclose(whole[0], blocked[0], rtol=1e-6)
    sims = x @ P.T
    np.testing.assert_array_equal(whole[1], np.argsort(-sims, axis=1)[:, :4])
    assert top_k(x, P, 99)[1].shape == (50, 30)  # k capped at the number of labels


def test_the_faster_search_is_chosen_at_the_nearest_timed_size():
    def speeds(faiss, numpy):  # queries/s at 10, 1,000 and 10,000 labels
        return {**{f"faiss {n}": f for n, f in zip(index_mod.SEARCH_SIZES, faiss)},
                **{f"numpy {n}": v for n, v in zip(index_mod.SEARCH_SIZES, numpy)}}

    intel = speeds((1.2e6, 80e3, 2.6e3), (1.5e6, 130e3, 5.1e3))
    epyc = speeds((2.0e6, 200e3, 6.0e3), (1.7e6, 90e3, 2.5e3))
    mixed = speeds((1.0e6, 200e3, 6.0e3), (1.5e6, 90e3, 2.5e3))
    for n in (1, 12, 1000, 100_000):
        assert numpy_search_pays(n, intel) and not numpy_search_pays(n, epyc)
    assert numpy_search_pays(50, mixed) and not numpy_search_pays(500, mixed)  # 100 is the boundary
    level = speeds((1.0e6, 100e3, 5.0e3), (1.0e6, 95e3, 5.0e3))  # faiss 1.05x: not enough to leave numpy
    assert numpy_search_pays(1000, level)
    assert not numpy_search_pays(10, {})  # no timing (ZEROHAR_TUNE=off): faiss


def test_label_search_is_timed_for_both_implementations_at_each_size():
    got = index_mod.measure_search(rounds=1, queries=8, dim=16)
    assert set(got) == {f"{impl} {n}" for impl in ("faiss", "numpy") for n in index_mod.SEARCH_SIZES}
    assert all(v > 0 for v in got.values())
