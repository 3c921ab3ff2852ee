"""Dataset sources: one module per dataset or file format, turning raw files into raw Recordings.

Every source module has:

- ``NAME``: the dataset name (``metadata/folds/<NAME>.yaml`` holds its class ordering);
- ``URL``: the public archive to download, or None;
- ``DEFAULT_LAYOUT``: path of its ``metadata/sensors/<NAME>.yaml``;
- ``read(root, progress=True) -> list[Recording]``: raw recordings (declared units, raw rate or timestamps),
  labels indexing the class list of the folds file, -1 = unlabelled;
- ``download(root)``: fetch and unpack the archive into ``root`` (never called by tests);
- optional ``DIRNAME`` (folder name under ``$ZEROHAR_DATA``, default ``NAME``) and ``PER_TRIAL`` (True when
  recordings are single short trials cut as one window each, BENCHMARK.md; default False).

Modules are imported only when asked for (:func:`get_source`), so importing this package is cheap.
"""

from __future__ import annotations

import importlib
import logging
import os
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType

from tqdm.auto import tqdm

from zerohar.errors import ZeroharError
from zerohar.io import atomic_write
from zerohar.paths import metadata_dir, shared_data_dir

logger = logging.getLogger(__name__)

_MODULES = {
    "hapt": "zerohar.data.sources.hapt",
    "shoulder": "zerohar.data.sources.shoulder",
    "spswhar": "zerohar.data.sources.spswhar",
    "csv": "zerohar.data.sources.csv",
    "pamap2": "zerohar.data.sources.pamap2",
    "opportunity": "zerohar.data.sources.opportunity",
    "uschad": "zerohar.data.sources.uschad",
    "wisdm": "zerohar.data.sources.wisdm",
    "harth": "zerohar.data.sources.harth",
}


class _LazySources(Mapping):
    """name -> source module, imported on first access."""

    def __getitem__(self, name: str) -> ModuleType:
        return importlib.import_module(_MODULES[name])

    def __iter__(self) -> Iterator[str]:
        return iter(_MODULES)

    def __len__(self) -> int:
        return len(_MODULES)


SOURCES: Mapping[str, ModuleType] = _LazySources()


def get_source(name: str) -> ModuleType:
    """The source module of a dataset name; a ZeroharError names the known ones otherwise."""
    if name not in _MODULES:
        raise ZeroharError(f"unknown dataset {name!r}: expected one of {', '.join(sorted(_MODULES))}")
    return SOURCES[name]


def layout_file(name: str) -> Path:
    """`metadata/sensors/<name>.yaml`."""
    return metadata_dir() / "sensors" / f"{name}.yaml"


def default_root(name: str) -> Path | None:
    """Where a dataset's raw files are when no root is given: `$ZEROHAR_DATA/<dir>`, else `../shared/data/<dir>`."""
    dirname = getattr(get_source(name), "DIRNAME", name)
    env = os.environ.get("ZEROHAR_DATA")
    if env:
        return Path(env).expanduser() / dirname
    shared = shared_data_dir()
    if shared is not None and (shared / dirname).is_dir():
        return shared / dirname
    return None


def dataset_roots(names: list[str], root: str | Path) -> dict[str, str]:
    """Each dataset's folder inside `root` (`root/<DIRNAME>`): how `--root` reads with several datasets.

    Raises:
        ZeroharError: a dataset has no folder in `root`.
    """
    out = {}
    for n in names:
        d = Path(root) / getattr(get_source(n), "DIRNAME", n)
        if not d.is_dir():
            raise ZeroharError(f"--root {root}: no folder {d.name} for dataset {n!r} in it (with several datasets "
                               "--root is the folder that holds each dataset's folder)")
        out[n] = str(d)
    return out


def find_dir(root: str | Path, name: str, dataset: str) -> Path:
    """`root/name`, `root` itself when it is called `name`, or `root/*/name` (an unpacked archive's top folder)."""
    root = Path(root)
    if not root.is_dir():
        raise ZeroharError(f"{dataset}: data directory {root} does not exist")
    if root.name == name:
        return root
    for cand in [root / name, *sorted(root.glob(f"*/{name}"))]:
        if cand.is_dir():
            return cand
    raise ZeroharError(f"{dataset}: {root} has no {name}/ folder; expected the dataset's {name}/ inside it")


def require_file(path: Path, dataset: str, what: str) -> Path:
    if not path.is_file():
        raise ZeroharError(f"{dataset}: {what} {path} does not exist")
    return path


# ---------------------------------------------------------------------------------------------- download
def fetch_file(url: str, dest: str | Path, progress: bool = True) -> Path:
    """Download `url` to `dest` with a progress bar, through a temporary file renamed into place."""

    def download(tmp: str) -> None:
        logger.info("downloading %s", url)
        with urllib.request.urlopen(url) as resp, open(tmp, "wb") as f:  # noqa: S310 (fixed https URLs)
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=Path(url).name, disable=not progress) as bar:
                while chunk := resp.read(1 << 20):
                    f.write(chunk)
                    bar.update(len(chunk))

    try:
        return atomic_write(dest, download)
    except OSError as e:
        raise ZeroharError(f"could not download {url}: {e}") from None


def fetch_archive(url: str, root: str | Path, progress: bool = True) -> Path:
    """Download a .zip / .tar(.gz) archive with a progress bar and unpack it into `root`.

    The archive is unpacked into a temporary folder that is renamed into place, so an interrupted download
    leaves nothing half-written; members that would land outside `root`, and links, are refused.

    Args:
        url: archive address (http/https).
        root: destination folder (created); must not already hold files.
        progress: show a progress bar.

    Returns:
        `root`.
    """
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise ZeroharError(f"download destination {root} is not empty; choose an empty or new folder")
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent, suffix=".download") as tmp:
        archive = fetch_file(url, Path(tmp) / "archive", progress)
        unpack = Path(tmp) / "unpacked"
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                _extract_zip(z, unpack)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as t:
                if any(m.issym() or m.islnk() for m in t.getmembers()):
                    raise ZeroharError(f"{url}: the archive holds links; refusing to unpack it")
                _check_members(t.getnames(), unpack)
                t.extractall(unpack)
        else:
            raise ZeroharError(f"{url} is not a .zip or .tar archive")
        if root.exists():
            root.rmdir()
        os.replace(unpack, root)
    return root


def _check_members(names: list[str], dest: Path) -> None:
    dest = dest.resolve()
    for member in names:
        target = (dest / member).resolve()
        if dest not in target.parents and target != dest:
            raise ZeroharError(f"archive member {member!r} would be written outside {dest}")


def _extract_zip(z: zipfile.ZipFile, dest: Path) -> None:
    _check_members(z.namelist(), dest)
    z.extractall(dest)
    # Archives inside the archive (UCI packs some datasets twice) are unpacked in place.
    for inner in list(dest.rglob("*.zip")):
        with zipfile.ZipFile(inner) as zi:
            _extract_zip(zi, inner.parent)
        inner.unlink()
