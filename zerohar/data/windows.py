"""Recordings (what sources produce) and WindowSets (what models consume), with the npz cache.

A :class:`Recording` is one continuous capture: signals `(T, C)` in the channel order of its layout, either
a constant `rate` (Hz) or per-sample `timestamps` (seconds), per-sample integer labels (-1 = unlabelled)
indexing the dataset's class names, and a subject id.

A :class:`WindowSet` is the canonical, windowed form: `X (N, C, T) float32`, `y (N,)` (-1 = no label),
`subject (N,)`, `recording (N,)` index, `start (N,)` window start in seconds from the recording start,
class names and the layout. It is saved as `.npz` (arrays + a JSON header; never pickle).

Besides its one label, a window cut from per-sample labels records which classes occur in *any* of its samples:
`sample_classes`, `(N, ceil(C / 8)) uint8`, the `(N, C)` bool "window holds a sample of class c" packed with
``np.packbits(..., axis=1, bitorder="little")`` (class c is bit `c % 8` of byte `c // 8`; npz key
``sample_classes``). It is what the pretraining filter uses to leave out every window holding a sample of an
unseen class (:meth:`WindowSet.holds_samples_of`). It is None where it was never recorded: window sets saved
before it existed, and sets built without per-sample labels.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from zerohar.data.layout import SensorLayout
from zerohar.errors import ZeroharError
from zerohar.io import atomic_savez


@dataclass
class Recording:
    signals: np.ndarray  # (T, C) float
    layout: SensorLayout
    labels: np.ndarray  # (T,) int, -1 = unlabelled
    subject: str
    name: str = ""
    rate: float | None = None  # Hz, when sampling is regular
    timestamps: np.ndarray | None = None  # (T,) seconds, when it is not (or when known)
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.signals.ndim != 2 or self.signals.shape[1] != self.layout.n_channels:
            raise ZeroharError(
                f"recording {self.name!r}: signals have shape {self.signals.shape}, "
                f"expected (T, {self.layout.n_channels}) for its layout"
            )
        if self.labels.shape != (self.signals.shape[0],):
            raise ZeroharError(f"recording {self.name!r}: labels length differs from signals length")
        if self.rate is None and self.timestamps is None:
            raise ZeroharError(f"recording {self.name!r}: needs a sampling rate or timestamps")

    @property
    def n_samples(self) -> int:
        return int(self.signals.shape[0])

    def times(self) -> np.ndarray:
        """Sample times in seconds."""
        if self.timestamps is not None:
            return np.asarray(self.timestamps, dtype=np.float64)
        return np.arange(self.n_samples, dtype=np.float64) / float(self.rate)


def window_class_sets(labels: np.ndarray, starts: np.ndarray, length: int, n_classes: int) -> np.ndarray:
    """Which classes occur in each window `labels[s : s + length]`, packed (module docstring).

    Args:
        labels: `(T,)` per-sample class ids, -1 = unlabelled.
        starts: `(N,)` window starts in samples.
        length: window length in samples.
        n_classes: number of classes the labels index.

    Returns:
        `(N, ceil(n_classes / 8)) uint8`: bit `c % 8` of byte `c // 8` is set when the window holds a sample of c.
    """
    labels = np.asarray(labels)
    starts = np.asarray(starts, dtype=np.int64)
    held = np.zeros((len(starts), n_classes), dtype=bool)
    for c in np.unique(labels[labels >= 0]):
        cum = np.concatenate([[0], np.cumsum(labels == c, dtype=np.int64)])  # one class at a time: O(T) memory
        held[:, c] = cum[starts + length] > cum[starts]
    return pack_classes(held)


def pack_classes(held: np.ndarray) -> np.ndarray:
    """`(N, C)` bool -> `(N, ceil(C / 8)) uint8` (the `sample_classes` packing)."""
    held = np.asarray(held, dtype=bool)
    return np.packbits(held, axis=1, bitorder="little").reshape(len(held), -(-held.shape[1] // 8))


def unpack_classes(packed: np.ndarray, n_classes: int) -> np.ndarray:
    """`(N, ceil(C / 8)) uint8` -> `(N, C)` bool (inverse of :func:`pack_classes`)."""
    return np.unpackbits(packed, axis=1, count=n_classes, bitorder="little").astype(bool)


@dataclass
class WindowSet:
    X: np.ndarray  # (N, C, T) float32, canonical units
    y: np.ndarray  # (N,) int64, -1 = no label
    subject: np.ndarray  # (N,) str
    class_names: list[str]
    layout: SensorLayout
    rate: float = 30.0
    recording: np.ndarray | None = None  # (N,) int64
    start: np.ndarray | None = None  # (N,) float64 seconds
    recording_names: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    sample_classes: np.ndarray | None = None  # (N, ceil(C/8)) uint8, classes in any sample; None = not recorded

    def __post_init__(self):
        n = len(self.X)
        if self.recording is None:
            self.recording = np.zeros(n, dtype=np.int64)
        if self.start is None:
            self.start = np.zeros(n, dtype=np.float64)
        self.y = np.asarray(self.y, dtype=np.int64)
        self.subject = np.asarray(self.subject).astype(str)
        for name in ("y", "subject", "recording", "start"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"WindowSet.{name} has length {len(getattr(self, name))}, expected {n}")
        if self.X.ndim != 3 or self.X.shape[1] != self.layout.n_channels:
            raise ValueError(f"WindowSet.X has shape {self.X.shape}, expected (N, {self.layout.n_channels}, T)")
        if self.sample_classes is not None:
            self.sample_classes = np.asarray(self.sample_classes, dtype=np.uint8)
            want = (n, -(-len(self.class_names) // 8))
            if self.sample_classes.shape != want:
                raise ValueError(f"WindowSet.sample_classes has shape {self.sample_classes.shape}, expected {want}")

    def __len__(self) -> int:
        return len(self.X)

    @property
    def window_length(self) -> int:
        return int(self.X.shape[2])

    def subset(self, mask: np.ndarray) -> WindowSet:
        """Windows where `mask` (bool or index array) holds; class names and layout unchanged."""
        return WindowSet(
            self.X[mask], self.y[mask], self.subject[mask], list(self.class_names), self.layout, self.rate,
            self.recording[mask], self.start[mask], list(self.recording_names), dict(self.meta),
            None if self.sample_classes is None else self.sample_classes[mask],
        )

    def holds_samples_of(self, class_ids: list[int]) -> np.ndarray | None:
        """`(N,)` bool: windows with at least one sample of one of `class_ids`; None when not recorded."""
        if self.sample_classes is None:
            return None
        want = np.zeros((1, len(self.class_names)), dtype=bool)
        want[0, list(class_ids)] = True
        return (self.sample_classes & pack_classes(want)).any(axis=1)

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.y[self.y >= 0], minlength=len(self.class_names))
        return {c: int(k) for c, k in zip(self.class_names, counts)}

    def select_classes(self, names: list[str]) -> WindowSet:
        """Windows labelled with one of `names` (class ids keep the full ordering of `class_names`)."""
        unknown = [n for n in names if n not in self.class_names]
        if unknown:
            raise ZeroharError(f"classes {unknown} are not in this data set (it has {self.class_names})")
        ids = [self.class_names.index(n) for n in names]
        return self.subset(np.isin(self.y, ids))

    # ------------------------------------------------------------------ npz
    def save(self, path: str | Path) -> Path:
        """Write atomically (temp file + rename) as .npz with a JSON header; no pickled objects."""
        header = {
            "format": "zerohar.WindowSet/1",
            "class_names": list(self.class_names),
            "layout": self.layout.to_dict(),
            "rate": self.rate,
            "recording_names": list(self.recording_names),
            "meta": self.meta,
        }
        extra = {} if self.sample_classes is None else {"sample_classes": self.sample_classes}
        return atomic_savez(
            path, X=self.X.astype(np.float32, copy=False), y=self.y, subject=self.subject.astype(str),
            recording=self.recording, start=self.start, header=np.array(json.dumps(header)), **extra,
        )

    @classmethod
    def load(cls, path: str | Path) -> WindowSet:
        path = Path(path)
        if not path.is_file():
            raise ZeroharError(f"window set {path} does not exist")
        try:
            with np.load(path, allow_pickle=False) as z:
                header = json.loads(str(z["header"]))
                if header.get("format") != "zerohar.WindowSet/1":
                    raise KeyError("format")
                return cls(
                    X=z["X"], y=z["y"], subject=z["subject"], class_names=header["class_names"],
                    layout=SensorLayout.from_dict(header["layout"], str(path)), rate=header["rate"],
                    recording=z["recording"], start=z["start"], recording_names=header["recording_names"],
                    meta=header.get("meta", {}),
                    sample_classes=z["sample_classes"] if "sample_classes" in z.files else None,  # older: absent
                )
        except ZeroharError:
            raise
        except Exception as e:  # zipfile.BadZipFile, KeyError, ValueError, ...
            raise ZeroharError(
                f"{path} is not a zerohar window set (.npz written by `zerohar prepare`): {e.__class__.__name__}"
            ) from None


def cache_key(**settings) -> str:
    """A short stable hash of JSON-serialisable settings, for cache file names."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]
