"""Class-disjoint folds (`metadata/folds/<dataset>.yaml` or a user's own file of the same format).

A folds file names the classes of a dataset (this order is *the* class ordering for ids, predictions and
targets alike) and, per fold, the unseen classes::

    classes: [walking, sitting, ...]
    folds:
      fold1: {unseen: [walking, sitting]}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zerohar.errors import ZeroharError
from zerohar.io import load_yaml
from zerohar.paths import metadata_dir


@dataclass(frozen=True)
class Folds:
    classes: tuple[str, ...]
    folds: dict[str, tuple[str, ...]]  # fold name -> unseen classes
    source: str = ""

    def unseen(self, fold: str) -> list[str]:
        if fold not in self.folds:
            raise ZeroharError(f"unknown fold {fold!r} in {self.source}: expected one of {', '.join(self.folds)}")
        return list(self.folds[fold])

    def seen(self, fold: str) -> list[str]:
        u = set(self.unseen(fold))
        return [c for c in self.classes if c not in u]


def load_folds(dataset_or_path: str | Path) -> Folds:
    """Folds of a named dataset (`metadata/folds/NAME.yaml`) or of a YAML file path."""
    p = Path(dataset_or_path)
    if not (p.suffix in (".yaml", ".yml") or p.is_file()):
        p = metadata_dir() / "folds" / f"{dataset_or_path}.yaml"
        if not p.is_file():
            known = sorted(f.stem for f in (metadata_dir() / "folds").glob("*.yaml"))
            raise ZeroharError(f"unknown dataset {dataset_or_path!r}: expected one of {', '.join(known)}")
    d = load_yaml(p, "folds file")
    if not isinstance(d, dict):
        raise ZeroharError(f"folds file {p}: expected a mapping with the keys 'classes' and 'folds', found "
                           f"{type(d).__name__}")
    if set(d) != {"classes", "folds"}:
        extra = sorted(str(k) for k in set(d) - {"classes", "folds"})
        found = f"unknown key {extra[0]!r}" if extra else f"no {sorted({'classes', 'folds'} - set(d))[0]!r}"
        raise ZeroharError(f"folds file {p}: expected exactly the keys 'classes' and 'folds', found {found}")
    if not isinstance(d["classes"], list) or not d["classes"]:
        found = "an empty list" if d["classes"] == [] else type(d["classes"]).__name__
        raise ZeroharError(f"folds file {p}: 'classes' must be a non-empty list of class names, found {found}")
    classes = [_class_name(c, i, p) for i, c in enumerate(d["classes"], 1)]
    twice = next((c for c in classes if classes.count(c) > 1), None)
    if twice is not None:
        raise ZeroharError(f"folds file {p}: 'classes' lists the class {twice!r} twice")
    if d["folds"] is not None and not isinstance(d["folds"], dict):
        raise ZeroharError(f"folds file {p}: 'folds' must be a mapping of fold name -> {{unseen: [...]}}, found "
                           f"{type(d['folds']).__name__}")
    folds = {}
    for name, f in (d["folds"] or {}).items():
        if not isinstance(f, dict) or set(f) != {"unseen"} or not isinstance(f["unseen"], list) or not f["unseen"]:
            raise ZeroharError(f"folds file {p}: fold {name!r} must be a mapping with a non-empty 'unseen' list")
        unseen = [_class_name(c, i, p, f"fold {name!r}: unseen class") for i, c in enumerate(f["unseen"], 1)]
        bad = [c for c in unseen if c not in classes]
        if bad:
            raise ZeroharError(f"folds file {p}: fold {name!r} names classes {bad} that are not in 'classes'")
        if not set(classes) - set(unseen):
            raise ZeroharError(f"folds file {p}: fold {name!r} holds out every class, which leaves no seen class to "
                               "train on; expected at least one class outside 'unseen'")
        folds[str(name)] = tuple(unseen)
    return Folds(tuple(classes), folds, str(p))


def _class_name(c, i: int, p: Path, what: str = "class") -> str:
    """A class name of a folds file: a one-line, non-empty text (a number is read as its text)."""
    if isinstance(c, bool) or not isinstance(c, (str, int, float)):
        raise ZeroharError(f"folds file {p}: {what} {i} is a {type(c).__name__}; expected a class name")
    name = str(c)
    if "\n" in name or "\r" in name:
        raise ZeroharError(f"folds file {p}: {what} {i} ({name!r}) holds a line break; expected a one-line name")
    if not name.strip():
        raise ZeroharError(f"folds file {p}: {what} {i} is empty; expected a class name")
    return name


def class_ids(names: list[str], class_names: list[str]) -> np.ndarray:
    """Ids of `names` in the ordering `class_names` (one ordering for predictions and targets)."""
    missing = [n for n in names if n not in class_names]
    if missing:
        raise ZeroharError(f"classes {missing} are missing from the data (it has {class_names})")
    return np.array([class_names.index(n) for n in names], dtype=np.int64)
