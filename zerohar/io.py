"""The one way zerohar writes files, and its safe loaders.

Every file zerohar writes (text, JSON, YAML, .npz, torch checkpoints, figures, label tables, downloads,
index folders) goes through :func:`atomic_write` or :func:`atomic_directory`: the content is written to a
temporary sibling, flushed to disk (fsync), given the ordinary umask-derived mode (``mkstemp`` would leave it
0600) and renamed over the destination. A reader never sees a half-written file, a failure or a kill leaves
the previous file (or nothing) in place, and the temporary file is removed on every error path.

Loaders never unpickle: YAML through ``yaml.safe_load`` (:func:`load_yaml`), arrays through
``np.load(allow_pickle=False)``, checkpoints through ``torch.load(weights_only=True)`` (at their call sites).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from zerohar.errors import ZeroharError

#: Nesting deeper than this in a YAML or JSON file is refused (a user file is never that deep; Python's
#: recursion limit is about 1000, and a hostile file must not reach it).
MAX_NESTING = 100


# ---------------------------------------------------------------------------------------------- writing
def _umask() -> int:
    umask = os.umask(0)  # the only way to read it: set, then restore
    os.umask(umask)
    return umask


def _umask_mode() -> int:
    """The mode an ordinary new file gets (mkstemp would leave 0600)."""
    return 0o666 & ~_umask()


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[str], None], *, force: bool = True) -> Path:
    """Write `path` through a temporary file in the same folder, then rename it into place.

    Args:
        path: the destination (its folder is created).
        write: called with the temporary file's path; it must write the whole content there.
        force: when False, an existing `path` is a ZeroharError (nothing is written).

    Returns:
        `path` as a Path.
    """
    path = Path(path)
    if not force and path.exists():
        raise ZeroharError(f"output {path} already exists; pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        _fsync(tmp)
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _to_file(write: Callable[[Any], None]) -> Callable[[str], None]:
    def fill(tmp: str) -> None:
        with open(tmp, "wb") as f:
            write(f)

    return fill


def atomic_write_bytes(path: str | Path, data: bytes, *, force: bool = True) -> Path:
    """`data` to `path`, atomically."""
    return atomic_write(path, _to_file(lambda f: f.write(data)), force=force)


def atomic_write_text(path: str | Path, text: str, *, force: bool = True) -> Path:
    """`text` (UTF-8) to `path`, atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"), force=force)


def atomic_write_json(path: str | Path, obj: Any, *, force: bool = True) -> Path:
    """`obj` as indented JSON, atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2) + "\n", force=force)


def read_json_file(path: str | Path, what: str = "JSON file") -> Any:
    """A JSON file zerohar wrote; unreadable or invalid JSON is a ZeroharError naming `what` and the file."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ZeroharError(f"{what} {path} cannot be read ({e.__class__.__name__}: {e})") from None


def atomic_write_yaml(path: str | Path, obj: Any, *, force: bool = True) -> Path:
    """`obj` as YAML (keys in their order), atomically."""
    return atomic_write_text(path, yaml.safe_dump(obj, sort_keys=False), force=force)


def atomic_savez(path: str | Path, *, force: bool = True, **arrays: np.ndarray) -> Path:
    """`np.savez` of `arrays` to `path`, atomically (arrays of objects are refused by the reader)."""
    return atomic_write(path, _to_file(lambda f: np.savez(f, **arrays)), force=force)


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """`torch.save(obj)` atomically: a kill during the write leaves the previous checkpoint intact."""
    import torch  # heavy: only the training loop writes checkpoints

    return atomic_write(path, _to_file(lambda f: torch.save(obj, f)))


def atomic_directory(directory: str | Path, fill: Callable[[Path], None], *, force: bool = False) -> Path:
    """Build a folder through a temporary sibling, then swap it into place (the old one, if any, is removed).

    Args:
        directory: the destination folder.
        fill: called with the temporary folder; writes every file of the result there.
        force: replace an existing `directory` (else a ZeroharError).
    """
    directory = Path(directory)
    if directory.exists() and not force:
        raise ZeroharError(f"{directory} already exists; pass --force to overwrite it")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.tmp"))
    try:
        fill(tmp)
        for f in tmp.iterdir():
            if f.is_file():
                _fsync(str(f))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(directory, old)
            os.replace(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, directory)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return directory


# ---------------------------------------------------------------------------------------------- output paths
def check_output(
    path: str | Path,
    *,
    force: bool = False,
    update: bool | None = None,
    suffixes: Iterable[str] | None = None,
) -> Path:
    """Refuse an output path before any work is done (the one check every command makes of its output).

    Args:
        path: the output file.
        force: an existing file may be overwritten.
        update: the command can merge into an existing file: with `update`, an existing file is accepted (the
            caller checks that it is valid); without it, the message names ``--update`` as well as ``--force``.
            None: the command has no such option.
        suffixes: allowed file endings (lower case, with the dot); None allows any. A ``.parquet`` output needs
            pyarrow, which is checked here.

    Raises:
        ZeroharError: the path is a folder, has another suffix, needs a missing package, or exists without
            `force` / `update`.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffixes is not None:
        allowed = tuple(suffixes)
        if suffix not in allowed:
            raise ZeroharError(
                f"output {p}: expected a {' or '.join(allowed)} file name, found suffix {suffix or '(none)'!r}"
            )
    if suffix == ".parquet":
        try:
            import pyarrow.parquet  # noqa: F401 (optional dependency: only for .parquet outputs)
        except ImportError:
            raise ZeroharError(
                f"output {p}: writing Parquet needs pyarrow (pip install pyarrow); or name a .csv file"
            ) from None
    if p.is_dir():
        raise ZeroharError(f"output {p} is a folder; expected a file name")
    if p.exists() and not (force or update):
        hint = "--update to merge into it, or --force to overwrite it" if update is False else \
            "--force to overwrite it"
        raise ZeroharError(f"output {p} already exists; pass {hint}")
    return p


# ---------------------------------------------------------------------------------------------- tables
def _fmt(values) -> list:
    arr = np.asarray(values)
    if arr.dtype.kind == "f":
        return [f"{v:.4f}" for v in arr.tolist()]
    return [str(v) for v in arr.tolist()]


class TableWriter:
    """A table (CSV, or Parquet with pyarrow) written batch by batch into a temporary file, renamed to `path`
    on :meth:`commit`; :meth:`abort` (or leaving the ``with`` block by an exception) removes it."""

    def __init__(self, path: str | Path, columns: list[str]):
        self.path, self.columns = Path(path), list(columns)
        self.parquet = self.path.suffix.lower() == ".parquet"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        os.close(fd)
        if self.parquet:
            import pyarrow as pa  # optional dependency: only for .parquet outputs
            import pyarrow.parquet as pq

            self._pa = pa
            types = {c: pa.string() if c.startswith("label") or c == "start_time" else pa.float64() for c in columns}
            self.schema = pa.schema([(c, types[c]) for c in columns])
            self._writer = pq.ParquetWriter(self.tmp, self.schema)
        else:
            self._file = open(self.tmp, "w", newline="", encoding="utf-8")
            self._writer = csv.writer(self._file)
            self._writer.writerow(columns)

    def write(self, cols: dict[str, np.ndarray | list]) -> None:
        if self.parquet:
            self._writer.write_table(self._pa.table({c: list(cols[c]) for c in self.columns}, schema=self.schema))
        else:
            self._writer.writerows(zip(*(_fmt(cols[c]) for c in self.columns)))

    def commit(self) -> Path:
        self._close()
        _fsync(self.tmp)
        os.chmod(self.tmp, _umask_mode())
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        self._close()
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)

    def _close(self) -> None:
        if self.parquet:
            self._writer.close()
        elif not self._file.closed:
            self._file.close()

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            self.abort()
        return False


# ---------------------------------------------------------------------------------------------- loading
def _depth(obj: Any, limit: int) -> int:
    """Nesting depth of a parsed document, iteratively (no recursion), stopping past `limit`."""
    stack, deepest = [(obj, 1)], 0
    while stack:
        o, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > limit:
            return deepest
        if isinstance(o, dict):
            stack.extend((v, d + 1) for v in o.values())
        elif isinstance(o, list):
            stack.extend((v, d + 1) for v in o)
    return deepest


def load_yaml(path: str | Path, what: str = "YAML file", *, mapping: bool = False) -> Any:
    """A YAML file through ``yaml.safe_load`` (tags that would run code are refused); a missing, unreadable,
    malformed or absurdly nested file is one ZeroharError naming it.

    Args:
        path: the file.
        what: how messages name it ("folds file", "sensor layout file", ...).
        mapping: the top level must be a mapping; an empty file then loads as ``{}``.
    """
    p = Path(path)
    if not p.is_file():
        raise ZeroharError(f"{what} {p} does not exist" if not p.exists() else f"{what} {p} is not a file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ZeroharError(f"cannot read {what} {p} ({e.__class__.__name__}: {e})") from None
    try:
        data = yaml.safe_load(text)
    except RecursionError:
        raise ZeroharError(f"{what} {p} is nested too deeply (more than {MAX_NESTING} levels)") from None
    except yaml.YAMLError as e:
        raise ZeroharError(f"{what} {p} is not valid YAML ({e.__class__.__name__})") from None
    if _depth(data, MAX_NESTING) > MAX_NESTING:
        raise ZeroharError(f"{what} {p} is nested too deeply (more than {MAX_NESTING} levels)")
    if mapping:
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise ZeroharError(f"{what} {p}: expected a mapping at the top level, found {type(data).__name__}")
    return data
