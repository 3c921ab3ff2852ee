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
    if not isinstance(d, dict) or set(d) != {"classes", "folds"}:
        raise ZeroharError(f"folds file {p}: expected exactly the keys 'classes' and 'folds'")
    classes = [str(c) for c in d["classes"]]
    if len(set(classes)) != len(classes):
        raise ZeroharError(f"folds file {p}: 'classes' lists a class twice")
    folds = {}
    for name, f in (d["folds"] or {}).items():
        if not isinstance(f, dict) or set(f) != {"unseen"} or not f["unseen"]:
            raise ZeroharError(f"folds file {p}: fold {name!r} must be a mapping with a non-empty 'unseen' list")
        bad = [c for c in f["unseen"] if c not in classes]
        if bad:
            raise ZeroharError(f"folds file {p}: fold {name!r} names classes {bad} that are not in 'classes'")
        folds[str(name)] = tuple(str(c) for c in f["unseen"])
    return Folds(tuple(classes), folds, str(p))


def class_ids(names: list[str], class_names: list[str]) -> np.ndarray:
    """Ids of `names` in the ordering `class_names` (one ordering for predictions and targets)."""
    missing = [n for n in names if n not in class_names]
    if missing:
        raise ZeroharError(f"classes {missing} are missing from the data (it has {class_names})")
    return np.array([class_names.index(n) for n in names], dtype=np.int64)
