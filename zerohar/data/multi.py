"""Several datasets (or window sets) trained at once: one stage's windows from every source, in one layout.

Each source is loaded and split exactly as a single-dataset stage would load it
(:func:`zerohar.data.splits.load_stage_data`: its own fold, subject split and pretraining filter), then the
sources are merged:

- **Layout**: the union of the sources' sensors (a sensor is its kind, placement and device), in order of first
  appearance. A window fills the slots of its own sensors; the others are zeros and marked absent in
  `present`, which the model gets as its sensor mask. Sensor context and kinds are those of the slots, so the
  sensor transformer reads every window with the descriptions of the sensors it really has (the model has no
  slot position: a slot is only a place to put a sensor).
- **Classes** are namespaced (`hapt/walking`), so two datasets' classes are never the same class, but each
  class keeps its label text (:func:`class_text`): two datasets' "walking" are one label text, so Stage II
  treats them as positives of each other and never as negatives. Near-synonyms ("walking forward") stay
  distinct unless a label map (`data.label_map`, :func:`load_label_map`) gives them one text: its classes are then
  one label exactly as equal names are (:meth:`MultiData.class_text`), and the run records the map.
- **Subjects** are namespaced too (`hapt/3`).
- **Sampling** (:meth:`MultiData.epoch_order`): an epoch draws from each source in proportion to its training
  windows to the power `data.balance` (0.5 by default: temperature sampling, as multilingual language models
  do). 1 samples windows uniformly (a large dataset dominates), 0 gives every source the same share. A source
  below its share is drawn with replacement, one above it without.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

import numpy as np

from zerohar.config import Config, check_label_map, check_sources, source_name
from zerohar.data.layout import Sensor, SensorLayout
from zerohar.data.splits import StageData, load_stage_data
from zerohar.data.windows import WindowSet, pack_classes, unpack_classes
from zerohar.errors import ZeroharError

logger = logging.getLogger(__name__)

SEP = "/"


def class_text(name: str) -> str:
    """The label text of a namespaced class (`hapt/walking` -> `walking`)."""
    return name.split(SEP, 1)[1] if SEP in name else name


def is_multi(cfg: Config) -> bool:
    """Whether `cfg` trains through `data.sources` (a list of one source is the same path, with one part)."""
    return bool(cfg.data.sources)


@dataclass
class Part:
    """One source of a multi-source stage."""

    name: str
    key: str  # provenance key (zerohar.train.provenance.data_key)
    data: StageData
    rows: np.ndarray  # rows of the merged set that belong to this source
    slots: list[int]  # the merged layout's slot of each of the source's sensors
    descriptions: str | None = None


@dataclass
class MultiData:
    """What a stage trains on when it has several sources; shaped like :class:`StageData` for the tasks."""

    ws: WindowSet  # merged: union layout, namespaced classes and subjects
    present: np.ndarray  # (N, S) bool: the window's source has this sensor
    parts: list[Part]
    classes: list[str]
    seen: list[str]
    unseen: list[str]
    train_idx: np.ndarray
    val_idx: np.ndarray
    test_idx: np.ndarray
    subjects: dict[str, list[str]]
    balance: float = 0.5
    dataset: str | None = None
    fold: str | None = None
    source: str = ""
    part_of: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # (N,) part index of each row
    label_map: dict[str, str] = field(default_factory=dict)  # data.label_map's entries: class -> label text
    label_map_file: str | None = None

    def class_text(self, name: str) -> str:
        """The label text class `name` trains with: its label map entry, else its label (:func:`class_text`)."""
        return self.label_map.get(name) or class_text(name)

    def text_rows(self, classes: list[str] | None = None) -> tuple[list[str], np.ndarray]:
        """The label texts of `classes` (default: every class) in order of first appearance, and the text row of
        each class: two classes of one row are positives of each other in Stage II, never negatives."""
        classes = self.classes if classes is None else classes
        texts = list(dict.fromkeys(self.class_text(c) for c in classes))
        return texts, np.array([texts.index(self.class_text(c)) for c in classes], np.int64)

    def epoch_order(self, seed: int, epoch: int, n: int, train_idx: np.ndarray | None = None) -> np.ndarray:
        """Positions in `train_idx` (default: :attr:`train_idx`; a task that trains on a subset of it, such as
        RelCon's anchors, passes its own) for one epoch of `n` draws, balanced by :attr:`balance` (module
        docstring)."""
        idx = self.train_idx if train_idx is None else train_idx
        rng = np.random.default_rng([seed, epoch, 0xBA1])
        pos_of = [np.flatnonzero(self.part_of[idx] == i) for i in range(len(self.parts))]
        quota = self.quotas(n, idx)
        picks = []
        for p, q in zip(pos_of, quota):
            if q == 0 or len(p) == 0:
                continue
            picks.append(rng.choice(p, q, replace=q > len(p)))
        order = np.concatenate(picks) if picks else np.zeros(0, np.int64)
        return order[rng.permutation(len(order))]

    def quotas(self, n: int, train_idx: np.ndarray | None = None) -> list[int]:
        """Draws per source in an epoch of `n`: proportional to training windows ** balance (largest remainder)."""
        idx = self.train_idx if train_idx is None else train_idx
        sizes = np.array([int((self.part_of[idx] == i).sum()) for i in range(len(self.parts))], float)
        w = np.where(sizes > 0, sizes ** self.balance, 0.0)
        share = w / w.sum() * n
        q = np.floor(share).astype(int)
        for i in np.argsort(-(share - q))[: n - int(q.sum())]:
            q[i] += 1
        return q.tolist()


def _sub_config(cfg: Config, entry: dict) -> Config:
    d = cfg.data
    sub = dataclasses.replace(
        d, sources=None, dataset=entry.get("dataset"), data=entry.get("data"), root=entry.get("root"),
        folds=entry.get("folds"), fold=entry.get("fold"), descriptions=entry.get("descriptions"),
        subjects=entry.get("subjects"),
    )
    return dataclasses.replace(cfg, data=sub)


def load_multi_stage_data(cfg: Config) -> MultiData:
    """Load every source of `cfg.data.sources` as its own stage data, then merge them (module docstring)."""
    entries = check_sources(cfg.data.sources)
    loaded = []
    for e in entries:
        sd = load_stage_data(_sub_config(cfg, e))
        loaded.append((e, sd))
    if cfg.stage == "pretrain":
        loaded = [(e, _triads_only(sd, cfg.train.pretrain_sensors, source_name(e))) for e, sd in loaded]
    rates = {float(sd.ws.rate) for _, sd in loaded}
    lengths = {sd.ws.window_length for _, sd in loaded}
    if len(rates) > 1 or len(lengths) > 1:
        raise ZeroharError(f"the sources have different rates {sorted(rates)} or window lengths {sorted(lengths)}")
    sensors: list = []
    for _, sd in loaded:
        for s in sd.ws.layout.canonical().sensors:
            if s.key not in {x.key for x in sensors}:
                sensors.append(s)
    layout = SensorLayout(tuple(sensors), name="+".join(source_name(e) for e, _ in loaded))
    keys = [s.key for s in sensors]
    n = sum(len(sd.ws) for _, sd in loaded)
    t = next(iter(lengths))
    X = np.zeros((n, 3 * len(sensors), t), np.float32)
    present = np.zeros((n, len(sensors)), bool)
    y = np.full(n, -1, np.int64)
    subject = np.empty(n, dtype=object)
    recording = np.zeros(n, np.int64)
    start = np.zeros(n, np.float64)
    classes, seen, unseen, parts = [], [], [], []
    train, val, test = [], [], []
    subjects = {"train": [], "val": [], "test": []}
    part_of = np.zeros(n, np.int64)
    n_classes = sum(len(sd.ws.class_names) for _, sd in loaded)
    # per-sample classes, in the namespaced class ids; only when every source records them
    held = np.zeros((n, n_classes), bool) if all(sd.ws.sample_classes is not None for _, sd in loaded) else None
    row = rec_offset = 0
    for i, (e, sd) in enumerate(loaded):
        name = source_name(e)
        ws = sd.ws
        m = len(ws)
        rows = np.arange(row, row + m)
        slots = [keys.index(s.key) for s in ws.layout.canonical().sensors]
        for j, slot in enumerate(slots):
            X[rows, 3 * slot : 3 * slot + 3] = ws.X[:, 3 * j : 3 * j + 3]
        present[np.ix_(rows, slots)] = True
        offset = len(classes)
        classes += [f"{name}{SEP}{c}" for c in sd.classes]
        seen += [f"{name}{SEP}{c}" for c in sd.seen]
        unseen += [f"{name}{SEP}{c}" for c in sd.unseen]
        y[rows] = np.where(ws.y >= 0, ws.y + offset, -1)
        if held is not None:
            held[rows, offset : offset + len(ws.class_names)] = unpack_classes(ws.sample_classes, len(ws.class_names))
        subject[rows] = [f"{name}{SEP}{s}" for s in ws.subject]
        recording[rows] = ws.recording + rec_offset
        rec_offset += int(ws.recording.max()) + 1 if m else 0
        start[rows] = ws.start
        part_of[rows] = i
        train.append(sd.train_idx + row)
        val.append(sd.val_idx + row)
        test.append(sd.test_idx + row)
        for k in subjects:
            subjects[k] += [f"{name}{SEP}{s}" for s in sd.subjects.get(k, [])]
        parts.append(Part(name, str(sd.dataset or e.get("data") or "unknown"), sd, rows, slots, e.get("descriptions")))
        row += m
        sd.ws = _shell(ws)  # the part's windows now live in X; keep its metadata only
    merged = WindowSet(X, y, subject.astype(str), classes, layout, float(next(iter(rates))), recording, start,
                       meta={"sources": [p.name for p in parts]},
                       sample_classes=None if held is None else pack_classes(held))
    names = [p.name for p in parts]
    label_map = {} if cfg.data.label_map is None else load_label_map(cfg.data.label_map, classes, names)
    if label_map:
        merged.meta["label_map"] = dict(label_map)
    logger.info("%d sources, %d windows, %d sensor slots (%s); sampling balance %.2f", len(parts), n,
                len(sensors), ", ".join(f"{p.name}: {len(p.rows)}" for p in parts), cfg.data.balance)
    out = MultiData(
        ws=merged, present=present, parts=parts, classes=classes, seen=seen, unseen=unseen,
        train_idx=np.concatenate(train), val_idx=np.concatenate(val), test_idx=np.concatenate(test),
        subjects=subjects, balance=cfg.data.balance, dataset=layout.name, fold=None,
        source=" + ".join(p.name for p in parts), part_of=part_of, label_map=label_map,
        label_map_file=cfg.data.label_map,
    )
    if cfg.stage == "stage2":
        _warn_shared_unseen(out)
    return out


def load_label_map(path: str, classes: list[str], names: list[str]) -> dict[str, str]:
    """The entries of label map file `path` (:func:`zerohar.config.check_label_map`), checked against the run's
    namespaced `classes` of the sources `names`.

    Raises:
        ZeroharError: a key is not a class of its source, or the map gives two classes of one source the same
            text (a source's own classes stay distinct labels: its validation tells them apart).
    """
    mapping = check_label_map(path, names)
    known = set(classes)
    for key in mapping:
        if key not in known:
            src = key.split(SEP, 1)[0]
            theirs = [class_text(c) for c in classes if c.startswith(src + SEP)]
            raise ZeroharError(f"label map file {path}: key {key!r} is not a class of {src} (its classes: "
                               f"{', '.join(theirs)})")
    for name in names:
        first: dict[str, str] = {}
        for c in (c for c in classes if c.startswith(name + SEP)):
            text = mapping.get(c) or class_text(c)
            if text in first:
                key = c if c in mapping else first[text]
                raise ZeroharError(f"label map file {path}: key {key!r} gives {first[text]!r} and {c!r} the same "
                                   f"text {text!r}, but one source's classes must stay distinct labels")
            first[text] = c
    renamed = [c for c in mapping if mapping[c] != class_text(c)]
    if renamed:
        logger.info("label map %s: %s", path, ", ".join(f"{c} -> {mapping[c]}" for c in renamed))
    return mapping


def _warn_shared_unseen(d: MultiData) -> None:
    """A label text trained through one source but unseen in another's fold is not zero-shot for that one."""
    seen = {d.class_text(c) for c in d.seen}
    shared = sorted(c for c in d.unseen if d.class_text(c) in seen)
    if shared:
        logger.warning("unseen classes %s share their label text with a trained class of another source, so their "
                       "zero-shot accuracy is not zero-shot (give those sources folds that hold the text out in "
                       "both, or no fold)", ", ".join(shared))


def _triads_only(sd: StageData, kinds: list[str], name: str) -> StageData:
    """Pretraining sees triads, not windows: every triad of kind `kinds[0]` becomes its own row, in one
    sensor slot (its placement and device do not matter to a backbone), so sources of any layout pretrain
    together without empty slots. Each triad stream keeps its own recording id (RelCon draws within-subject
    candidates from one stream)."""
    if len(kinds) != 1:
        raise ZeroharError(f"pretraining on several sources takes one sensor kind (train.pretrain_sensors), "
                           f"found {kinds}")
    ws = sd.ws
    slots = [i for i, s in enumerate(ws.layout.canonical().sensors) if s.sensor == kinds[0]]
    if not slots:
        raise ZeroharError(f"{name}: no sensor of kind {kinds[0]} to pretrain on (train.pretrain_sensors)")
    unit = ws.layout.canonical().sensors[slots[0]].unit
    layout = SensorLayout((Sensor(kinds[0], "any placement", "any device", unit),), name=ws.layout.name)
    n_rec = int(ws.recording.max()) + 1 if len(ws) else 0
    X = np.concatenate([ws.X[:, 3 * i : 3 * i + 3] for i in slots])
    rep = len(slots)
    new = WindowSet(X, np.tile(ws.y, rep), np.tile(ws.subject, rep), list(ws.class_names), layout, ws.rate,
                    np.concatenate([ws.recording + j * n_rec for j in range(rep)]), np.tile(ws.start, rep),
                    meta=dict(ws.meta),
                    sample_classes=None if ws.sample_classes is None else np.tile(ws.sample_classes, (rep, 1)))
    n = len(ws)

    def spread(idx: np.ndarray) -> np.ndarray:
        return np.concatenate([idx + j * n for j in range(rep)])

    return dataclasses.replace(sd, ws=new, train_idx=spread(sd.train_idx), val_idx=spread(sd.val_idx),
                               test_idx=spread(sd.test_idx))


def _shell(ws: WindowSet) -> WindowSet:
    """`ws` without its signals (a part keeps its class names, layout and rate for metadata)."""
    return WindowSet(np.zeros((0, ws.X.shape[1], ws.X.shape[2]), np.float32), np.zeros(0, np.int64),
                     np.zeros(0, str), list(ws.class_names), ws.layout, ws.rate, meta=dict(ws.meta))


def load_data(cfg: Config) -> StageData | MultiData:
    """A stage's data: :func:`load_multi_stage_data` for several sources, else :func:`load_stage_data`."""
    return load_multi_stage_data(cfg) if is_multi(cfg) else load_stage_data(cfg)
