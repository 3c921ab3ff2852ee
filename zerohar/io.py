"""The one way zerohar writes files, and its safe loaders.

Every file zerohar writes (text, JSON, YAML, .npz, torch checkpoints, figures, label tables, downloads,
index folders, logs) goes through :func:`atomic_write`, :func:`atomic_directory`, :class:`TableWriter` or
:class:`AtomicLog`: the content is written to a temporary sibling, flushed to disk (fsync), given the ordinary
umask-derived mode (``mkstemp`` would leave it 0600) and renamed over the destination. A reader never sees a
half-written file, a failure or a kill leaves the previous file (or nothing) in place, and the temporary file is
removed on every error path, Ctrl-C and SIGTERM included (the command line turns SIGTERM into an exception).

A temporary file is named ``.<name>.<random>.<host>-<pid>.tmp``. Only a ``kill -9`` (or a power cut) can leave
one behind; the next write of the same destination removes every such file whose process is gone (same host,
pid not running) or that is older than a day, and no reader ever picks one up (they are hidden and end in
``.tmp``).

Outputs are checked before any work (:func:`check_output`): the name, an existing file, and that its folder can
be written, so an unwritable ``--out`` fails in one sentence before minutes of work or paid requests.

Loaders never unpickle: YAML through ``yaml.safe_load`` (:func:`load_yaml`), JSON through :func:`load_json`
(both refuse duplicate keys and absurd nesting), arrays through ``np.load(allow_pickle=False)``, checkpoints
through ``torch.load(weights_only=True)`` (at their call sites).
"""

from __future__ import annotations

import csv
import errno
import json
import logging
import os
import re
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from zerohar.errors import ZeroharError

logger = logging.getLogger(__name__)

#: Nesting deeper than this in a YAML or JSON file is refused (a user file is never that deep; Python's
#: recursion limit is about 1000, and a hostile file must not reach it).
MAX_NESTING = 100
#: A temporary file or folder of another host (or whose pid cannot be told) is stale after this long.
STALE_AFTER_S = 24 * 3600.0


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


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:24] or "host"


def _owner_tag() -> str:
    """`<host>-<pid>`: who writes a temporary file (so a later run can tell a dead writer's leftovers)."""
    return f"{_host()}-{os.getpid()}"


_TAG = re.compile(r"\.([A-Za-z0-9]+)-(\d+)\.tmp$")


def _writer_gone(name: str, mtime: float) -> bool:
    """True when the temporary file `name` belongs to a process that no longer runs (or is a day old)."""
    if time.time() - mtime > STALE_AFTER_S:
        return True
    m = _TAG.search(name)
    if m is None or m.group(1) != _host():
        return False
    pid = int(m.group(2))
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # it exists (another user's process)
    return False


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Remove the temporary siblings of `path` that a killed writer left behind (see the module docstring).

    Returns:
        The paths removed.
    """
    path = Path(path)
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    prefix = f".{path.name}."
    for e in entries:
        if not (e.name.startswith(prefix) and e.name.endswith(".tmp")):
            continue
        try:
            if not _writer_gone(e.name, e.stat(follow_symlinks=False).st_mtime):
                continue
            if e.is_dir(follow_symlinks=False):
                shutil.rmtree(e.path, ignore_errors=True)
            else:
                os.unlink(e.path)
        except OSError:
            continue
        removed.append(Path(e.path))
        logger.info("removed %s, left behind by an interrupted write", e.path)
    return removed


def _temporary(path: Path, *, folder: bool = False) -> str:
    """A new temporary sibling of `path` (file or folder), after removing stale ones."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ZeroharError(f"output {path}: {path.parent} is not a folder") from None
    except PermissionError as e:
        raise ZeroharError(f"output {path}: the folder {e.filename or path.parent} is not writable (permission "
                           "denied)") from None
    remove_stale_temporaries(path)
    prefix, suffix = f".{path.name}.", f".{_owner_tag()}.tmp"
    try:
        if folder:
            return tempfile.mkdtemp(dir=path.parent, prefix=prefix, suffix=suffix)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
    except PermissionError:
        raise ZeroharError(f"output {path}: the folder {path.parent} is not writable (permission denied)") from None
    os.close(fd)
    return tmp


def _refuse_input(path: Path) -> None:
    """An output that is one of the recordings being read is refused (even with --force)."""
    if _is_input(path):
        raise ZeroharError(f"output {path} is the input recording; write the output to another file")


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
    _refuse_input(path)
    tmp = _temporary(path)
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
    tmp = Path(_temporary(directory, folder=True))
    try:
        fill(tmp)
        for f in tmp.iterdir():
            if f.is_file():
                _fsync(str(f))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700
        if directory.exists():
            old = Path(_temporary(directory.with_name(directory.name + ".old"), folder=True))
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
#: Recordings being read by this process (real paths): an output may never replace one of them.
_INPUTS: set[str] = set()


def note_input(path: str | Path) -> None:
    """Remember that `path` is an input being read, so no writer replaces it (``--out`` equal to ``--input``)."""
    try:
        _INPUTS.add(os.path.realpath(path))
    except (OSError, ValueError):
        pass


def _is_input(path: Path) -> bool:
    if not _INPUTS:
        return False
    try:
        return os.path.realpath(path) in _INPUTS
    except (OSError, ValueError):
        return False


def check_writable(path: str | Path, what: str = "output") -> None:
    """Refuse an output whose folder cannot be created or written, before any work is done.

    The nearest existing folder on the way to `path` must be a folder in which a file can be created (a probe
    file is created and removed at once); nothing else is created, so a later refusal leaves nothing behind.

    Raises:
        ZeroharError: one sentence naming the folder and why.
    """
    p = Path(path).absolute()
    folder = p.parent
    while not folder.exists():
        if folder.is_symlink():
            raise ZeroharError(f"{what} {p}: {folder} is a broken symbolic link; expected a folder")
        if folder.parent == folder:
            break
        folder = folder.parent
    if not folder.is_dir():
        raise ZeroharError(f"{what} {p}: {folder} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".zerohar-probe.", suffix=f".{_owner_tag()}.tmp")
    except OSError as e:
        raise ZeroharError(
            f"{what} {p}: the folder {folder} is not writable ({e.strerror or e.__class__.__name__}); choose "
            "another place or fix its permissions"
        ) from None
    os.close(fd)
    os.unlink(probe)


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
        ZeroharError: the path is a folder, has another suffix, needs a missing package, exists without
            `force` / `update`, is an input being read, or its folder cannot be written.
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
    _refuse_input(p)
    if p.exists() and not (force or update):
        hint = "--update to merge into it, or --force to overwrite it" if update is False else \
            "--force to overwrite it"
        raise ZeroharError(f"output {p} already exists; pass {hint}")
    check_writable(p)
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
        _refuse_input(self.path)
        self.tmp = _temporary(self.path)
        self._writer = self._file = None
        try:
            if self.parquet:
                import pyarrow as pa  # optional dependency: only for .parquet outputs
                import pyarrow.parquet as pq

                self._pa = pa
                types = {c: pa.string() if c.startswith("label") or c == "start_time" else pa.float64()
                         for c in columns}
                self.schema = pa.schema([(c, types[c]) for c in columns])
                self._writer = pq.ParquetWriter(self.tmp, self.schema)
            else:
                self._file = open(self.tmp, "w", newline="", encoding="utf-8")
                self._writer = csv.writer(self._file)
                self._writer.writerow(columns)
        except BaseException:
            self.abort()
            raise

    def write(self, cols: dict[str, np.ndarray | list]) -> None:
        if self.parquet:
            self._writer.write_table(self._pa.table({c: list(cols[c]) for c in self.columns}, schema=self.schema))
        else:
            self._writer.writerows(zip(*(_fmt(cols[c]) for c in self.columns)))

    def commit(self) -> Path:
        try:
            self._close()
            _fsync(self.tmp)
            os.chmod(self.tmp, _umask_mode())
            os.replace(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        try:
            self._close()
        finally:
            if os.path.exists(self.tmp):
                os.unlink(self.tmp)

    def _close(self) -> None:
        if self.parquet:
            if self._writer is not None and getattr(self._writer, "is_open", True):
                self._writer.close()
        elif self._file is not None and not self._file.closed:
            self._file.close()

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            self.abort()
        return False


# ---------------------------------------------------------------------------------------------- logs
class AtomicLog(logging.Handler):
    """A log file written like every other output: into a temporary sibling, renamed to `path` on :meth:`commit`.

    An existing `path` (a resumed run's log) is continued: its content is copied into the temporary file first.
    :meth:`abort` removes the temporary file (a run refused before it started leaves no log behind); a kill -9
    leaves it to the next run's clean-up.

    Args:
        path: the log file.
        level: the handler's level.
    """

    def __init__(self, path: str | Path, level: int = logging.INFO):
        super().__init__(level)
        self.path = Path(path)
        _refuse_input(self.path)
        self.tmp = _temporary(self.path)
        try:
            if self.path.is_file():
                shutil.copyfile(self.path, self.tmp)
            self._file = open(self.tmp, "a", encoding="utf-8")
        except BaseException:
            os.unlink(self.tmp)
            raise

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._file.write(self.format(record) + "\n")
            self._file.flush()
        except Exception:  # noqa: BLE001 - logging must never raise (logging.Handler's contract)
            self.handleError(record)

    def commit(self) -> Path:
        """Close the log and rename it into place."""
        if not self._file.closed:
            self._file.close()
            _fsync(self.tmp)
            os.chmod(self.tmp, _umask_mode())
            os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Close the log and remove it (nothing is left behind)."""
        if not self._file.closed:
            self._file.close()
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)

    def close(self) -> None:
        """Closing the handler keeps the log (as `logging.FileHandler` does): see :meth:`commit`."""
        try:
            self.commit()
        finally:
            super().close()


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


def check_input_file(path: str | Path, what: str = "input file") -> Path:
    """`path` as a Path if it is a regular file that exists; else a ZeroharError saying exactly what it is
    (missing, a broken symbolic link, a symbolic-link loop, a folder, a named pipe or device, not accessible).

    Args:
        path: the file.
        what: how messages name it ("input file", "sensor layout file", ...).
    """
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        if os.path.islink(p):
            raise ZeroharError(f"{what} {p} is a broken symbolic link (to {os.readlink(p)}, which does not "
                               "exist)") from None
        raise ZeroharError(f"{what} {p} does not exist") from None
    except OSError as e:
        reason = {errno.ELOOP: "is a symbolic link loop (it never reaches a file)",
                  errno.ENOTDIR: "has a part that is not a folder",
                  errno.EACCES: "cannot be accessed (permission denied)",
                  errno.ENAMETOOLONG: "is too long a name"}.get(e.errno, f"cannot be accessed ({e.strerror or e})")
        raise ZeroharError(f"{what} {p} {reason}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ZeroharError(f"{what} {p} is a folder; expected a file")
    if not stat.S_ISREG(st.st_mode):
        kind = "a named pipe (FIFO)" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) \
            else "a device"
        raise ZeroharError(f"{what} {p} is {kind}, not a regular file; expected a file")
    return p


def read_input_text(path: str | Path, what: str = "input file") -> str:
    """The UTF-8 text of a user's file (a byte-order mark is dropped), or a ZeroharError naming it."""
    p = check_input_file(path, what)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ZeroharError(f"cannot read {what} {p}: {(e.strerror or str(e)).lower()}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ZeroharError(
            f"{what} {p} is not a UTF-8 text file (line {line} holds the byte 0x{data[e.start]:02x})") from None
    if "\x00" in text:
        raise ZeroharError(f"{what} {p} is not a text file (it holds NUL bytes)")
    return text


class _StrictLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses a key given twice in one mapping (the last would silently win)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, "a mapping key is itself a list or mapping", key_node.start_mark) from None
            if key in seen:
                raise _DuplicateKey(key, key_node.start_mark.line + 1, seen[key])
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


class _DuplicateKey(Exception):
    def __init__(self, key, line: int, first: int):
        super().__init__(key)
        self.key, self.line, self.first = key, line, first


def load_yaml(path: str | Path, what: str = "YAML file", *, mapping: bool = False) -> Any:
    """A YAML file through ``yaml.safe_load`` (tags that would run code are refused); a missing, unreadable,
    malformed or absurdly nested file, or one that gives a key twice, is one ZeroharError naming it.

    Args:
        path: the file.
        what: how messages name it ("folds file", "sensor layout file", ...).
        mapping: the top level must be a mapping; an empty file then loads as ``{}``.
    """
    p = Path(path)
    text = read_input_text(p, what)
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise ZeroharError(f"{what} {p} is nested too deeply (more than {MAX_NESTING} levels)") from None
    except _DuplicateKey as e:
        raise ZeroharError(
            f"{what} {p} line {e.line}: key {e.key!r} appears twice (first on line {e.first}); expected each key once"
        ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}: {getattr(e, 'problem', None) or e.__class__.__name__})" if mark else ""
        raise ZeroharError(f"{what} {p} is not valid YAML{where}") from None
    if _depth(data, MAX_NESTING) > MAX_NESTING:
        raise ZeroharError(f"{what} {p} is nested too deeply (more than {MAX_NESTING} levels)")
    if mapping:
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise ZeroharError(f"{what} {p}: expected a mapping at the top level, found {type(data).__name__}")
    return data


def parse_json(text: str, what: str) -> Any:
    """JSON `text` (of `what`, for messages): a key given twice in one object, absurd nesting or malformed JSON
    is a ZeroharError."""

    def pairs(items):
        d = {}
        for k, v in items:
            if k in d:
                raise ZeroharError(f"{what}: key {k!r} appears twice in one object; expected each key once")
            d[k] = v
        return d

    try:
        data = json.loads(text, object_pairs_hook=pairs)
    except RecursionError:
        raise ZeroharError(f"{what} is nested too deeply (more than {MAX_NESTING} levels)") from None
    except json.JSONDecodeError as e:
        raise ZeroharError(f"{what} is not valid JSON (line {e.lineno}: {e.msg})") from None
    if _depth(data, MAX_NESTING) > MAX_NESTING:
        raise ZeroharError(f"{what} is nested too deeply (more than {MAX_NESTING} levels)")
    return data


def load_json(path: str | Path, what: str = "JSON file") -> Any:
    """A user's JSON file, strictly (see :func:`parse_json`); every problem is one ZeroharError naming it."""
    p = Path(path)
    return parse_json(read_input_text(p, what), f"{what} {p}")
