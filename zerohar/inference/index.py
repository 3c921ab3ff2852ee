"""The label index: any label text -> prototypes in the joint space, searched with faiss.

A :class:`LabelIndex` holds, for every label, the projected embeddings of its descriptions and their
normalised mean (the label *prototype*, as Stage II trains it). Windows are named by inner-product search
over the prototypes (`faiss.IndexFlatIP`, exact); the individual descriptions are kept to explain a
decision (which description matched best).

The search itself is exact either way, so it runs on whichever measured faster on this machine: faiss, or one
matrix product and a partial sort in numpy (:func:`numpy_search_pays`, timed once per machine at 10, 1,000 and
10,000 labels through :func:`zerohar.model.tuning.kept_speeds`; faiss only where it is 1.1x numpy or more).
1,000 windows, top 5 (`zerohar speed`): on the AVX2 AMD EPYC faiss was 1.15x numpy at 10 labels and 2.2x at
1,000; on the Intel Xeon with AVX512-BF16 numpy was 1.2x faiss at 10 labels, 1.9x at 1,000 and 1.5x at 100,000
(faiss' OpenMP top-k heaps cost more than they save there).

On disk an index is a directory: `prototypes.faiss`, `descriptions.faiss` (faiss files) and `index.json`
(labels, description texts and their owners, the identity of the model whose text projector made the
vectors, and of the sentence encoder). Vectors only make sense for the model that projected them, so
loading an index for another model is an error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import faiss
import numpy as np
import torch

from zerohar.errors import ZeroharError
from zerohar.io import atomic_directory
from zerohar.model import tuning
from zerohar.model.zerohar import label_prototypes

logger = logging.getLogger(__name__)

FORMAT = "zerohar.LabelIndex/1"
#: Above this many candidates a restricted search goes through faiss with an id selector; below it, one
#: matrix product over the candidate prototypes is faster than faiss' per-call overhead.
_SELECTOR_MIN_CANDIDATES = 2048
#: Label counts at which faiss and numpy are timed (1,000 query windows of 256 dimensions, top 5).
SEARCH_SIZES = (10, 1_000, 10_000)
#: faiss runs only where it measured at least this many times numpy (the reference the speed gate compares
#: with): at 100 labels the two were level on the Intel Xeon and the timing chose either from run to run.
FAISS_MIN_GAIN = 1.1
#: The numpy search scores at most this many (window, label) pairs at a time (64 MB of float32).
_NUMPY_BLOCK = 1 << 24


def top_k(x: np.ndarray, P: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The `k` largest inner products of each row of `x (N, E)` with the rows of `P (L, E)`, best first.

    numpy: one matrix product per block of rows, a partial sort, then a sort of the k. Returns
    `(scores (N, k) float32, row ids (N, k) int64)`.
    """
    k = min(k, len(P))
    scores = np.empty((len(x), k), np.float32)
    ids = np.empty((len(x), k), np.int64)
    step = max(1, _NUMPY_BLOCK // max(1, len(P)))
    for a in range(0, len(x), step):
        sims = x[a : a + step] @ P.T  # (n, L)
        if k < len(P):
            part = np.argpartition(-sims, k - 1, axis=1)[:, :k]  # (n, k) unordered
        else:
            part = np.broadcast_to(np.arange(len(P)), sims.shape).copy()
        part_scores = np.take_along_axis(sims, part, axis=1)
        order = np.argsort(-part_scores, axis=1, kind="stable")
        ids[a : a + step] = np.take_along_axis(part, order, axis=1)
        scores[a : a + step] = np.take_along_axis(part_scores, order, axis=1)
    return scores, ids


def measure_search(rounds: int = 3, queries: int = 1000, dim: int = 256) -> dict[str, float]:
    """Queries/s of faiss (`IndexFlatIP`) and of :func:`top_k` at each of :data:`SEARCH_SIZES` labels."""
    rng = np.random.default_rng(0)
    q = _normalize(rng.normal(size=(queries, dim)))
    out = {}
    for n in SEARCH_SIZES:
        P = _normalize(rng.normal(size=(n, dim)))
        index = faiss.IndexFlatIP(dim)
        index.add(P)
        fns = {f"faiss {n}": lambda index=index: index.search(q, 5), f"numpy {n}": lambda P=P: top_k(q, P, 5)}
        out.update(tuning.interleaved_rates(fns, queries, rounds))
    return out


def search_speeds(refresh: bool = False) -> dict[str, float] | None:
    """This machine's :func:`measure_search`, measured once and kept (None with `ZEROHAR_TUNE=off`).

    Asked on every search, so the answer of this process is remembered (per `ZEROHAR_TUNE` and thread count).
    """
    key = (tuning.tuning_enabled(), torch.get_num_threads())
    if refresh or key not in _SEARCH_SPEEDS:
        identity = tuning.machine_identity("label-search", sizes=list(SEARCH_SIZES))
        _SEARCH_SPEEDS[key] = tuning.kept_speeds(identity, measure_search, refresh)
    return _SEARCH_SPEEDS[key]


_SEARCH_SPEEDS: dict[tuple, dict[str, float] | None] = {}


def numpy_search_pays(n_labels: int, speeds: dict[str, float] | None = None) -> bool:
    """True unless faiss measured at least :data:`FAISS_MIN_GAIN` times numpy at the timed label count nearest to
    `n_labels` (log scale).

    `speeds` default to this machine's (:func:`search_speeds`); without a timing (`ZEROHAR_TUNE=off`) faiss.
    """
    speeds = search_speeds() if speeds is None else speeds
    if not speeds:
        return False
    size = min(SEARCH_SIZES, key=lambda s: abs(math.log(max(n_labels, 1) / s)))
    return speeds.get(f"faiss {size}", 0.0) < FAISS_MIN_GAIN * speeds.get(f"numpy {size}", 0.0)


def model_identity(model) -> str:
    """A stable fingerprint of a model's weights (sha256 over its state dict in key order).

    Two loads of the same saved model give the same identity; any retraining changes it.
    """
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        t = v.detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return "sha256:" + h.hexdigest()[:32]


def _normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(n, 1e-12)


class LabelIndex:
    """Label prototypes and descriptions in the joint embedding space.

    Build one with :meth:`build` (from a model and label texts) or :meth:`from_embeddings` (from projected
    description vectors), extend it with :meth:`add`, query it with :meth:`search`.

    Attributes:
        labels: label names, in insertion order (row i of the prototype matrix).
        prototypes: `(L, E)` float32, L2-normalised.
        descriptions: `(M, E)` float32 projected descriptions, L2-normalised.
        description_texts: the M description texts. description_owner: `(M,)` label id of each.
        model_identity / text_identity: which model and sentence encoder made the vectors.
    """

    def __init__(self, dim: int, model_identity: str = "", text_identity: str = ""):
        self.dim = int(dim)
        self.model_identity = model_identity
        self.text_identity = text_identity
        self.labels: list[str] = []
        self.description_texts: list[str] = []
        self.description_owner = np.zeros(0, dtype=np.int64)
        self.prototypes = np.zeros((0, self.dim), dtype=np.float32)
        self.descriptions = np.zeros((0, self.dim), dtype=np.float32)
        self._proto_index = faiss.IndexFlatIP(self.dim)
        self._desc_index = faiss.IndexFlatIP(self.dim)
        self._label_id: dict[str, int] = {}
        self._names: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def __contains__(self, label: str) -> bool:
        return label in self._label_id

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_embeddings(
        cls, labels: dict[str, np.ndarray], texts: dict[str, list[str]] | None = None,
        model_identity: str = "", text_identity: str = "",
    ) -> LabelIndex:
        """An index from already projected description vectors.

        Args:
            labels: label -> `(K, E)` projected description embeddings (K >= 1; normalised here).
            texts: label -> the K description texts (optional; used by explanations and the sidecar).
            model_identity, text_identity: recorded and checked on load.
        """
        if not labels:
            raise ZeroharError("the label index needs at least one label; the label list is empty")
        dim = int(np.asarray(next(iter(labels.values()))).shape[-1])
        index = cls(dim, model_identity, text_identity)
        index.add_embeddings(labels, texts)
        return index

    @classmethod
    def build(cls, model, labels: dict[str, list[str]], text_encoder, progress: bool | None = None) -> LabelIndex:
        """Embed every description with the sentence encoder, project it with the model's text projector.

        Args:
            model: a :class:`zerohar.model.zerohar.ZeroHARModel` (its `encode_text` projector is used).
            labels: label -> descriptions (e.g. from :func:`zerohar.text.labels.descriptions_for`).
            text_encoder: a :class:`zerohar.text.encoder.TextEncoder`.
            progress: progress bar of the sentence encoder (None = its default).
        """
        vectors, texts = _project(model, labels, text_encoder, progress)
        return cls.from_embeddings(vectors, texts, model_identity(model), text_encoder.identity)

    def add(self, model, labels: dict[str, list[str]], text_encoder, progress: bool | None = None) -> None:
        """Add labels (and their descriptions) projected by `model`, which must be the index's model."""
        ident = model_identity(model)
        if self.model_identity and ident != self.model_identity:
            raise ZeroharError(
                f"cannot add labels projected by model {ident} to an index built by model {self.model_identity}"
            )
        if self.text_identity and text_encoder.identity != self.text_identity:
            raise ZeroharError(
                f"cannot add labels embedded by text encoder {text_encoder.identity!r} to an index built with "
                f"{self.text_identity!r}"
            )
        vectors, texts = _project(model, labels, text_encoder, progress)
        self.add_embeddings(vectors, texts)
        self.model_identity, self.text_identity = ident, text_encoder.identity

    def add_embeddings(self, labels: dict[str, np.ndarray], texts: dict[str, list[str]] | None = None) -> None:
        """Add labels from projected description vectors (label -> `(K, E)`); a label already present is an error."""
        texts = texts or {}
        dup = [lab for lab in labels if lab in self._label_id]
        if dup:
            raise ZeroharError(f"labels {dup} are already in the index; build a new index to change them")
        protos, descs, owners, desc_texts = [], [], [], []
        for lab, vecs in labels.items():
            vecs = np.asarray(vecs, dtype=np.float32)
            if vecs.ndim == 1:
                vecs = vecs[None]
            if vecs.ndim != 2 or vecs.shape[0] == 0 or vecs.shape[1] != self.dim:
                raise ZeroharError(
                    f"label {lab!r}: description embeddings have shape {vecs.shape}, expected (K >= 1, {self.dim})"
                )
            t = list(texts.get(lab, [""] * len(vecs)))
            if len(t) != len(vecs):
                raise ZeroharError(f"label {lab!r}: {len(t)} description texts for {len(vecs)} embeddings")
            vecs = _normalize(vecs)
            protos.append(label_prototypes(torch.from_numpy(vecs)[None])[0].numpy())  # the model's prototype rule
            lid = len(self.labels)
            self._label_id[lab] = lid
            self.labels.append(lab)
            descs.append(vecs)
            owners.extend([lid] * len(vecs))
            desc_texts.extend(t)
        P = np.stack(protos).astype(np.float32)  # (L_new, E)
        D = np.concatenate(descs).astype(np.float32)  # (M_new, E)
        self.prototypes = np.concatenate([self.prototypes, P])
        self.descriptions = np.concatenate([self.descriptions, D])
        self.description_owner = np.concatenate([self.description_owner, np.asarray(owners, dtype=np.int64)])
        self.description_texts.extend(desc_texts)
        self._proto_index.add(P)
        self._desc_index.add(D)

    # ------------------------------------------------------------------ search
    def label_ids(self, labels: Sequence[str]) -> np.ndarray:
        """Row ids of `labels`; an unknown label is an error naming it."""
        missing = [lab for lab in labels if lab not in self._label_id]
        if missing:
            raise ZeroharError(f"labels {missing} are not in the label index (it has {len(self.labels)} labels)")
        return np.array([self._label_id[lab] for lab in labels], dtype=np.int64)

    def search_ids(
        self, embeddings: np.ndarray, k: int, candidates: Sequence[str] | Sequence[Sequence[str]] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`search` but returns label row ids `(N, k)` instead of names."""
        x = _normalize(np.atleast_2d(embeddings))  # (N, E)
        if x.shape[1] != self.dim:
            raise ZeroharError(f"embeddings have dimension {x.shape[1]}, the label index has {self.dim}")
        if not self.labels:
            raise ZeroharError("the label index is empty")
        if candidates is None:
            k = min(k, len(self.labels))
            if numpy_search_pays(len(self.labels)):
                return top_k(x, self.prototypes, k)
            scores, ids = self._proto_index.search(x, k)
            return scores, ids.astype(np.int64)
        if len(candidates) and not isinstance(candidates[0], str):  # one candidate list per query
            if len(candidates) != len(x):
                raise ZeroharError(f"{len(candidates)} candidate lists for {len(x)} query windows")
            groups: dict[tuple[str, ...], list[int]] = {}
            for i, c in enumerate(candidates):
                groups.setdefault(tuple(c), []).append(i)
            k = min([k] + [len(set(c)) for c in groups])
            scores = np.empty((len(x), k), np.float32)
            ids = np.empty((len(x), k), np.int64)
            for cands, rows in groups.items():
                scores[rows], ids[rows] = self._search_candidates(x[rows], k, list(cands))
            return scores, ids
        return self._search_candidates(x, k, list(candidates))

    def _search_candidates(self, x: np.ndarray, k: int, candidates: list[str]) -> tuple[np.ndarray, np.ndarray]:
        cand = np.unique(self.label_ids(candidates))
        if len(cand) == 0:
            raise ZeroharError("the candidate label list is empty")
        k = min(k, len(cand))
        if len(cand) >= _SELECTOR_MIN_CANDIDATES and not numpy_search_pays(len(cand)):
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(cand))
            scores, ids = self._proto_index.search(x, k, params=params)
            return scores, ids.astype(np.int64)
        scores, top = top_k(x, self.prototypes[cand], k)
        return scores, cand[top]

    def search(
        self, embeddings: np.ndarray, k: int = 1, candidates: Sequence[str] | Sequence[Sequence[str]] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The `k` best labels of each window embedding, by cosine similarity to the label prototypes.

        Args:
            embeddings: `(N, E)` window embeddings (normalised here).
            k: labels per window; capped at the number of candidates.
            candidates: restrict the search to these labels (all windows), or one list per window (length N);
                None searches every label of the index.

        Returns:
            `(scores (N, k) float32, labels (N, k) str array)`, best first.
        """
        scores, ids = self.search_ids(embeddings, k, candidates)
        if self._names is None or len(self._names) != len(self.labels):
            self._names = np.asarray(self.labels, dtype=str)  # cached: rebuilt only after labels are added
        return scores, self._names[ids]

    def explain(self, embeddings: np.ndarray, labels: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """For each window and its (predicted) label, the label's description that matches the window best.

        Returns:
            `(texts (N,), scores (N,))`: the best description text of `labels[i]` for window i and its cosine.
        """
        x = _normalize(np.atleast_2d(embeddings))  # (N, E)
        lids = self.label_ids(list(labels))
        texts, scores = [], np.empty(len(x), np.float32)
        for i, lid in enumerate(lids):
            rows = np.flatnonzero(self.description_owner == lid)
            sims = self.descriptions[rows] @ x[i]  # (K,)
            j = int(np.argmax(sims))
            texts.append(self.description_texts[rows[j]])
            scores[i] = sims[j]
        return texts, scores

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path, force: bool = False) -> Path:
        """Write the index directory atomically (a temporary sibling renamed into place).

        An existing directory is replaced only with `force`.
        """
        directory = Path(directory)
        if directory.exists() and not force:
            raise ZeroharError(f"label index {directory} already exists; pass --force to overwrite it")

        def fill(tmp: Path) -> None:
            faiss.write_index(self._proto_index, str(tmp / "prototypes.faiss"))
            faiss.write_index(self._desc_index, str(tmp / "descriptions.faiss"))
            sidecar = {
                "format": FORMAT,
                "dim": self.dim,
                "model_identity": self.model_identity,
                "text_identity": self.text_identity,
                "labels": self.labels,
                "descriptions": [
                    {"id": i, "label": self.labels[o], "text": t}
                    for i, (o, t) in enumerate(zip(self.description_owner.tolist(), self.description_texts))
                ],
            }
            (tmp / "index.json").write_text(json.dumps(sidecar, indent=1, ensure_ascii=False))

        return atomic_directory(directory, fill, force=True)

    @classmethod
    def load(cls, directory: str | Path, model=None, text_encoder=None) -> LabelIndex:
        """Read an index written by :meth:`save`; with `model` / `text_encoder`, check it was built by them.

        Raises:
            ZeroharError: missing or malformed files, or an index built by another model / text encoder.
        """
        directory = Path(directory)
        meta_path = directory / "index.json"
        if not meta_path.is_file():
            raise ZeroharError(f"{directory} is not a label index: {meta_path.name} is missing")
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("format") != FORMAT:
                raise ValueError("format")
            protos = faiss.read_index(str(directory / "prototypes.faiss"))
            descs = faiss.read_index(str(directory / "descriptions.faiss"))
            P = protos.reconstruct_n(0, protos.ntotal) if protos.ntotal else np.zeros((0, meta["dim"]), np.float32)
            D = descs.reconstruct_n(0, descs.ntotal) if descs.ntotal else np.zeros((0, meta["dim"]), np.float32)
            labels = [str(x) for x in meta["labels"]]
            owner_of = {lab: i for i, lab in enumerate(labels)}
            owners = np.array([owner_of[d["label"]] for d in meta["descriptions"]], dtype=np.int64)
            texts = [str(d["text"]) for d in meta["descriptions"]]
            if len(P) != len(labels) or len(D) != len(texts):
                raise ValueError("size mismatch")
        except Exception as e:  # JSON, faiss (RuntimeError), KeyError, ValueError
            raise ZeroharError(
                f"label index {directory} is corrupt or was not written by zerohar ({e.__class__.__name__}: {e})"
            ) from None
        if model is not None:
            ident = model_identity(model)
            if meta["model_identity"] != ident:
                raise ZeroharError(
                    f"label index {directory} was built by model {meta['model_identity']}, not by the model given "
                    f"({ident}); rebuild it with `zerohar index --run RUN`"
                )
        if text_encoder is not None and meta["text_identity"] != text_encoder.identity:
            raise ZeroharError(
                f"label index {directory} was built with text encoder {meta['text_identity']!r}, not "
                f"{text_encoder.identity!r}"
            )
        index = cls(int(meta["dim"]), meta["model_identity"], meta["text_identity"])
        index.labels = labels
        index._label_id = owner_of
        index.prototypes = np.ascontiguousarray(P, dtype=np.float32)
        index.descriptions = np.ascontiguousarray(D, dtype=np.float32)
        index.description_owner = owners
        index.description_texts = texts
        index._proto_index, index._desc_index = protos, descs
        return index


def _project(model, labels: dict[str, list[str]], text_encoder, progress) -> tuple[dict, dict]:
    """label -> `(K, E)` projected, normalised description vectors, and label -> texts."""
    if not labels:
        raise ZeroharError("the label index needs at least one label; the label list is empty")
    empty = [lab for lab, d in labels.items() if not d]
    if empty:
        raise ZeroharError(f"labels {empty} have no descriptions")
    texts = [t for d in labels.values() for t in d]
    emb = text_encoder.encode(texts, progress=progress)  # (M, d_text)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            proj = model.encode_text(torch.from_numpy(np.ascontiguousarray(emb)), normalize=True)  # (M, E)
    finally:
        model.train(was_training)
    proj = proj.float().cpu().numpy()
    out, start = {}, 0
    for lab, d in labels.items():
        out[lab] = proj[start : start + len(d)]
        start += len(d)
    return out, {lab: list(d) for lab, d in labels.items()}
