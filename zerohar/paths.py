"""Where zerohar finds its shipped metadata and keeps its cache."""

from __future__ import annotations

import os
from pathlib import Path


def metadata_dir() -> Path:
    """The `metadata/` tree: the repository's top-level folder, or the copy installed inside the wheel."""
    repo = Path(__file__).resolve().parent.parent / "metadata"
    if repo.is_dir():
        return repo
    import zerohar._metadata as m  # installed wheel: metadata/ is packaged as zerohar._metadata

    return Path(next(iter(m.__path__)))


def cache_dir() -> Path:
    """`$ZEROHAR_CACHE`, default `~/.cache/zerohar`; created on first use."""
    d = Path(os.environ.get("ZEROHAR_CACHE", Path.home() / ".cache" / "zerohar")).expanduser()
    d.mkdir(parents=True, exist_ok=True)
    return d


def embedded_dir() -> Path:
    """Data shipped inside the package (the compact HAPT derivative used by the demo and core tests)."""
    return Path(__file__).resolve().parent / "data" / "embedded"


def shared_data_dir() -> Path | None:
    """`../shared/data` beside the checkout (developers and CI only), or `$ZEROHAR_SHARED_DATA`; None if absent."""
    env = os.environ.get("ZEROHAR_SHARED_DATA")
    if env:
        return Path(env) if Path(env).is_dir() else None
    d = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
    return d if d.is_dir() else None
