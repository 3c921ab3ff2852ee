"""Helpers shared by the raw-archive parsers (pamap2, opportunity, uschad, wisdm, harth).

What every such parser needs and nothing more: finding the dataset folder under the root a user gives,
reading a numeric text table with one clear error for a malformed line, picking the columns a sensor layout
names, mapping label codes and checking timestamps. Downloading is `zerohar.data.sources.fetch_archive`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from zerohar.data.layout import SensorLayout
from zerohar.errors import ZeroharError


# ---------------------------------------------------------------------------------------------- folders
def dataset_dir(root: str | Path, dataset: str, marker: str, prefixes: Sequence[str] = ()) -> Path:
    """The folder under `root` that holds `marker` (a glob pattern relative to the unpacked archive).

    `root` may be that folder itself or any of the folders the archive unpacks into (`prefixes`, e.g.
    ``PAMAP2_Dataset``), also one level down (a zip unpacked into a folder of its own name).

    Raises:
        ZeroharError: `root` does not exist, or no candidate holds `marker`.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ZeroharError(f"{dataset} root {root} does not exist or is not a folder")
    candidates = [root] + [root / p for p in prefixes]
    candidates += [c / p for c in sorted(x for x in root.iterdir() if x.is_dir()) for p in ("", *prefixes)]
    for c in candidates:
        if c.is_dir() and next(c.glob(marker), None) is not None:
            return c
    where = f"{root}, {', '.join(str(root / p) for p in prefixes)}" if prefixes else str(root)
    raise ZeroharError(
        f"{dataset} root {root} does not hold {marker!r} (looked in {where} and the folders below {root}); "
        f"expected the unpacked public {dataset} archive"
    )


# ---------------------------------------------------------------------------------------------- tables
def read_table(path: Path, n_columns: int, *, delimiter: str | None = None, skiprows: int = 0) -> np.ndarray:
    """A numeric text table `(rows, n_columns)` float64; ``NaN`` tokens are kept as NaN.

    Every row must have exactly `n_columns` numeric fields; otherwise the error names the file, line and
    column. An empty file is an error too.
    """
    if not path.is_file():
        raise ZeroharError(f"{path} does not exist")
    if path.stat().st_size == 0:
        raise ZeroharError(f"{path} is empty; expected rows of {n_columns} numeric columns")
    try:
        with np.errstate(all="ignore"):
            data = np.loadtxt(path, delimiter=delimiter, skiprows=skiprows, dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise diagnose(path, n_columns, delimiter, skiprows, fallback=str(e)) from None
    if data.shape[0] == 0:
        raise ZeroharError(f"{path} has no data rows; expected rows of {n_columns} numeric columns")
    if data.shape[1] != n_columns:
        raise ZeroharError(f"{path} has {data.shape[1]} columns per row, expected {n_columns}")
    return data


def diagnose(
    path: Path, n_columns: int, delimiter: str | None, skiprows: int = 0, text_columns: Sequence[int] = (),
    fallback: str = "",
) -> ZeroharError:
    """The error for the first malformed line of a table numpy refused (slow path, only on failure).

    Checks each line for `n_columns` fields and a number in every field except `text_columns` (0-based).
    """
    with open(path, errors="replace") as f:
        for lineno, line in enumerate(f, start=1):
            if lineno <= skiprows or not line.strip():
                continue
            fields = line.strip().split(delimiter)
            if len(fields) != n_columns:
                return ZeroharError(f"{path} line {lineno} has {len(fields)} columns, expected {n_columns}")
            for col, v in enumerate(fields):
                if col in text_columns:
                    continue
                try:
                    float(v)
                except ValueError:
                    return ZeroharError(
                        f"{path} line {lineno} column {col + 1} holds {v.strip()[:30]!r}, expected a number"
                    )
    return ZeroharError(f"{path} is not a table of {n_columns} columns ({fallback or 'unreadable'})")


def check_times(t: np.ndarray, path: Path, first_line: int = 1) -> None:
    """Timestamps must never go backwards (equal neighbours are tolerated)."""
    bad = np.flatnonzero(np.diff(t) < 0)
    if bad.size:
        i = int(bad[0]) + 1
        raise ZeroharError(
            f"{path} line {i + first_line}: timestamp {t[i]:g} is earlier than the previous one ({t[i - 1]:g}); "
            "expected timestamps that never go backwards"
        )
    if not np.all(np.isfinite(t)):
        i = int(np.flatnonzero(~np.isfinite(t))[0])
        raise ZeroharError(f"{path} line {i + first_line}: the timestamp is missing (NaN); expected a number")


# ---------------------------------------------------------------------------------------------- layouts
def resolve_layout(layout: SensorLayout | str | Path | None, default: Path) -> SensorLayout:
    """`layout` as a SensorLayout: None = the dataset's shipped layout file, a path = a layout YAML."""
    if layout is None:
        return SensorLayout.from_yaml(default)
    if isinstance(layout, SensorLayout):
        return layout
    return SensorLayout.from_yaml(layout)


def column_indices(layout: SensorLayout, available: dict, dataset: str) -> list:
    """What `available` gives (a raw column index) for every channel of `layout`, in canonical order.

    Channels are matched by their `column` name; a name the raw format lacks is an error listing valid names.
    """
    if not layout.columns:
        raise ZeroharError(
            f"{dataset} sensor layout {layout.name or '(unnamed)'}: every channel needs a 'column' naming its raw "
            f"{dataset} column (for example {next(iter(available))!r})"
        )
    unknown = [c for c in layout.columns if c not in available]
    if unknown:
        raise ZeroharError(
            f"{dataset} sensor layout names columns {unknown} that the raw {dataset} files do not have; "
            f"expected names such as {', '.join(repr(c) for c in list(available)[:6])}"
        )
    return [available[c] for c in layout.columns]


# ---------------------------------------------------------------------------------------------- labels
def map_codes(codes: np.ndarray, mapping: dict[int, int]) -> np.ndarray:
    """Class ids (int64) of raw label codes; a code outside `mapping` (null, transient, unused) is -1."""
    codes = np.asarray(codes)
    out = np.full(codes.shape, -1, dtype=np.int64)
    finite = np.isfinite(codes) if codes.dtype.kind == "f" else np.ones(codes.shape, bool)
    for code, cls in mapping.items():
        out[finite & (codes == code)] = cls
    return out


def progress_bar(items: Iterable, progress: bool, desc: str, total: int | None = None):
    """A tqdm bar over files (or subjects) that `progress=False` switches off."""
    return tqdm(items, desc=desc, total=total, unit="file", disable=not progress, leave=False)
