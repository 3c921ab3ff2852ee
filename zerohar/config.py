"""Training configuration: dataclasses, strict YAML, per-dataset defaults and command-line overrides.

A :class:`Config` has three sections, `data`, `model` (the model's own :class:`ModelConfig`)
and `train`, plus the stage and the initialisation source. It is resolved in this order, later wins:

1. the dataclass defaults below;
2. `metadata/hyperparameters.yaml`: its `default` entry, then the dataset's entry, each per stage;
3. a user's YAML file (`--config FILE`, the same shape as a run's `config.yaml`);
4. explicit overrides (`--epochs`, `--set train.lr=3e-4`, ...).

Unknown keys are errors naming the key and the file (as nanoGPT's configurator does): a typo must never be
silently ignored. The resolved config is written to every run directory as `config.yaml`, and a run's
`config.yaml` is itself a valid `--config` file.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from zerohar.data.layout import SENSOR_KINDS
from zerohar.errors import ZeroharError
from zerohar.io import atomic_write_yaml, load_yaml
from zerohar.paths import metadata_dir

#: The stages of the training loop. `supervised` is Stage II on every class with a subject-disjoint test split
#: (the upper bound of BENCHMARK.md); it takes Stage II's hyperparameters.
STAGES = ("pretrain", "stage1", "stage2", "supervised")
PRECISIONS = ("auto", "bf16", "fp32")
LABEL_TEXTS = ("descriptions", "names")
LABEL_SAMPLING = ("prototype", "description")
SCHEDULES = ("auto", "wsd", "cosine", "constant")
PRETRAIN_METHODS = ("ssl", "motif-distance", "relcon")
MOTIF_ATTENTIONS = ("sparsemax", "released")
RELCON_BATCHING = ("grouped", "separate")
RELCON_HEADS = ("none", "mlp")


#: Window length in samples (30 Hz) of every HARNet variant.
VARIANTS: dict[str, int] = {"harnet5": 150, "harnet10": 300, "harnet30": 900}

ENCODERS = ("harnet", "original")
FUSIONS = ("add", "concat", "none")
TEXT_PROJECTORS = ("linear", "mlp")
#: Config fields that change the parameters (two configs load each other's weights iff these agree).
ARCH_FIELDS = (
    "encoder", "backbone", "d_text", "embed_dim", "d_model", "context_fusion", "text_proj", "n_layers",
    "n_heads", "orig_d_model", "orig_patch", "orig_layers",
)


@dataclass
class ModelConfig:
    """Architecture and input handling of a :class:`ZeroHARModel`.

    Attributes:
        encoder: "harnet" (HARNet backbone per triad + sensor transformer) or "original" (the paper's encoder).
        backbone: HARNet variant, which fixes the window length (harnet5: 150 samples = 5 s at 30 Hz).
        d_text: size of the sentence embeddings (384 for all-MiniLM-L6-v2).
        embed_dim: joint space size E.
        d_model: width of the sensor tokens and of the sensor transformer.
        context_fusion: how a sensor token combines signal and context: "add", "concat" or "none" (ablation).
        text_proj: the text projector R: "linear" (keeps the geometry of the sentence space, generalises to
            unseen label texts) or "mlp" (Linear-GELU-Linear).
        n_layers, n_heads, dropout: the sensor transformer (and the original encoder's time transformer).
        clip_acc: clip accelerometer triads to +-3 g before the encoder.
        kind_scale: multiplier per sensor kind before the encoder (canonical units g, rad/s, uT).
        init_temperature: initial softmax temperature (logit_scale = log(1 / init_temperature)).
        max_logit_scale: the scale is clamped at this value when used.
        orig_d_model, orig_patch, orig_layers: the original encoder's token width, samples per time token
            and number of layers.
    """

    encoder: str = "harnet"
    backbone: str = "harnet5"
    d_text: int = 384
    embed_dim: int = 256
    d_model: int = 256
    context_fusion: str = "add"
    text_proj: str = "linear"
    n_layers: int = 2
    n_heads: int = 4
    dropout: float = 0.1
    clip_acc: bool = True
    kind_scale: dict[str, float] = field(default_factory=lambda: {"acc": 1.0, "gyro": 1.0, "mag": 0.02})
    init_temperature: float = 0.07
    max_logit_scale: float = 100.0
    orig_d_model: int = 128
    orig_patch: int = 10
    orig_layers: int = 2

    def __post_init__(self):
        def one_of(name: str, allowed: Sequence[str]) -> None:
            if getattr(self, name) not in allowed:
                raise ZeroharError(
                    f"model config: {name} is {getattr(self, name)!r}, expected one of {', '.join(allowed)}"
                )

        one_of("encoder", ENCODERS)
        one_of("backbone", tuple(VARIANTS))
        one_of("context_fusion", FUSIONS)
        one_of("text_proj", TEXT_PROJECTORS)
        for name, width in (("d_model", self.d_model), ("orig_d_model", self.orig_d_model)):
            if width % self.n_heads:
                raise ZeroharError(f"model config: {name} ({width}) must be divisible by n_heads ({self.n_heads})")
        unknown = set(self.kind_scale) - set(SENSOR_KINDS)
        if unknown:
            raise ZeroharError(f"model config: kind_scale has unknown sensor kinds {sorted(unknown)}; "
                               f"expected {', '.join(SENSOR_KINDS)}")

    @property
    def window(self) -> int:
        """Window length in samples (30 Hz) the backbone takes."""
        return VARIANTS[self.backbone]

    def architecture(self) -> dict:
        """The fields that fix the parameter shapes."""
        return {k: getattr(self, k) for k in ARCH_FIELDS}

    def describe(self) -> str:
        """One line naming the architecture, for messages."""
        if self.encoder == "harnet":
            core = f"{self.backbone} encoder, {self.n_layers}-layer sensor transformer (d_model {self.d_model})"
        else:
            core = (f"original encoder ({self.orig_layers} layers, d_model {self.orig_d_model}, "
                    f"patch {self.orig_patch})")
        return f"zerohar {core}, E={self.embed_dim}, d_text={self.d_text}, fusion {self.context_fusion}, " \
               f"text projector {self.text_proj}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, source: str = "model config") -> ModelConfig:
        """Strict: unknown keys are a ZeroharError naming them."""
        if not isinstance(d, dict):
            raise ZeroharError(f"{source}: expected a mapping of model settings, found {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        extra = sorted(set(d) - known)
        if extra:
            raise ZeroharError(f"{source}: unknown model settings {extra}; known: {', '.join(sorted(known))}")
        return cls(**d)


@dataclass
class DataConfig:
    """Where the windows come from, and which classes are unseen."""

    dataset: str | None = "hapt"  # a dataset name (metadata/folds/NAME.yaml); None with `data`
    data: str | None = None  # a window set .npz written by `zerohar prepare` (a user's own data)
    root: str | None = None  # folder of the raw dataset (default: $ZEROHAR_DATA, ../shared/data, embedded HAPT)
    folds: str | None = None  # folds file (default: metadata/folds/<dataset>.yaml)
    descriptions: str | None = None  # label descriptions JSON (default: metadata/labels/<dataset>.json)
    fold: str | None = "fold1"  # whose unseen classes are excluded from training; pretrain: None = all windows
    window_s: float = 5.0  # window length in seconds (5 for harnet5, 10 for harnet10, 30 for harnet30)
    subjects: list[str] | None = None  # restrict to these subjects (smoke tests, small studies); None = all
    #: several datasets / window sets at once (zerohar.data.multi): a list of mappings with the keys dataset or
    #: data, and optionally root, folds, fold, descriptions, subjects; `dataset`, `data` and `fold` above are
    #: then null. Each source keeps its own fold (none: every class is trained on)
    sources: list[dict | str] | None = None
    balance: float = 0.5  # several sources: each one's share of an epoch ~ its training windows ** balance
    #: several sources: a YAML file mapping namespaced classes to a shared label text
    #: (`uschad/walking forward: walking`); classes of one text are one label, positives of each other
    label_map: str | None = None


@dataclass
class TrainConfig:
    """Optimisation, model selection and run behaviour."""

    #: None: adaptive length (optimiser steps, early stopping on the validation subjects; zerohar.train.budget);
    #: N: exactly N passes over the training windows
    epochs: int | None = None
    max_steps: int | None = None  # adaptive: cap on optimiser steps (None: 50 evaluation intervals)
    min_steps: int | None = None  # adaptive: no plateau before this many steps (None: 4 evaluation intervals)
    eval_every: int | None = None  # adaptive: steps between validations (None: clip(steps per epoch, 25, 500))
    patience: int = 5  # adaptive: evaluations without improvement that make a plateau
    min_delta: float = 0.001  # an evaluation improves when it beats the best metric by more than this
    batch_size: int = 64  # global batch: per process = batch_size / world size
    lr: float = 1e-3
    backbone_lr_mult: float = 1.0  # backbone LR = lr * this (below 1 protects pretrained weights)
    freeze_layers: int = 0  # the first N of the backbone's 5 layers are frozen (5 = the whole backbone)
    weight_decay: float = 0.01
    warmup: float = 0.05  # epochs mode: fraction of all optimiser steps with linear warm-up
    warmup_steps: int | None = None  # adaptive: linear warm-up steps (None: one evaluation interval)
    #: auto (adaptive: wsd; epochs: cosine) | wsd (warm-up, stable, decay after the plateau) | cosine | constant
    schedule: str = "auto"
    cooldown: float = 0.2  # wsd: the decay lasts this fraction of the steps trained before it
    grad_clip: float | None = 1.0  # max gradient norm; None = no clipping
    seed: int = 0  # initialisation, subject split, shuffling, augmentation
    precision: str = "auto"  # auto (bf16 autocast where native bf16 measured faster than fp32) | bf16 | fp32
    val_fraction: float = 0.2  # fraction of subjects held out for model selection (0 = keep the last epoch)
    #: fraction of subjects every stage holds out for testing (GZSL seen accuracy, calibration, the demo's
    #: recording, the supervised bound), never trained or selected on; one value for every stage, so the stages
    #: of a seed share their test subjects (zerohar.data.splits). 0.2: HAPT 18 / 6 / 6 subjects
    test_fraction: float = 0.2
    max_minutes: float | None = None  # stop (at a step boundary, then validate) after this long: "time_limit"
    max_steps_per_epoch: int | None = None  # cap on optimiser steps per epoch (smoke tests, quick looks)
    max_val_windows: int | None = None  # cap on validation windows (a fixed, seeded subset)
    num_workers: int = 0  # intra-op threads (0 = torch's default); batches are slices of in-memory arrays
    transductive: bool = False  # Stage II: unseen labels' text as extra negatives (the original paper did this)
    label_text: str = "descriptions"  # descriptions | names (the label name as its only text)
    label_sampling: str = "prototype"  # Stage II text per label: prototype (mean of descriptions) | description
    #: Stage II negatives of each window: batch (the labels of the batch's windows; the original ZeroHAR's) |
    #: all (every trained label at every step)
    negatives: str = "batch"
    augment: bool = True  # random rotation + scaling of each triad during Stage I / II training
    partial_backbone: bool = False  # accept backbone weights that lack some HARNet tensors (else an error)
    #: Stage II: each sensor of a training window is dropped (masked out) with this probability, at least one
    #: kept, when the layout has 2 or more sensors, so the sensor transformer learns the masks inference meets
    sensor_dropout: float = 0.1
    pretrain_sensors: list[str] = field(default_factory=lambda: ["acc"])  # SSL pretext triads (gyro optional)
    pretrain_method: str = "ssl"  # pretrain: ssl (pretext tasks) | motif-distance | relcon (RelCon, ICLR 2025)
    relcon_distance: str | None = None  # relcon: the run directory of a finished motif-distance pretrain run
    #: relcon: grouped = a batch is groups of `relcon_group` non-overlapping windows of one recording, nearby in
    #: time, and every window's candidates are the rest of the batch (its group: within-subject; the others:
    #: between-subject), one encoder pass; separate = RelCon's own: `relcon_within_cands` extra windows per
    #: anchor in a second pass (11x the cost per anchor and 3.6x the memory, `zerohar speed`)
    relcon_batching: str = "grouped"
    relcon_group: int = 8  # relcon grouped: windows per group (so group - 1 within-subject candidates)
    relcon_within_cands: int = 20  # relcon separate: within-subject candidates per anchor (same recording, nearby)
    relcon_within_s: float = 1800.0  # relcon: they start at most this many seconds before / after the anchor
    relcon_temperature: float = 0.1  # relcon: temperature of the cosine similarity in the relative loss
    #: relcon: none = the loss reads the backbone's features (RelCon's); mlp = a projection head (D -> D -> 128,
    #: ReLU), as SimCLR's, that the loss reads and the exported backbone leaves behind
    relcon_head: str = "none"
    #: motif-distance: released (RelCon's code: sparsemax in training, softmax for the distances RelCon ranks
    #: with; the published results used it, and it ranks 1.6x faster on a CPU) | sparsemax (the paper's formula,
    #: both places)
    motif_attention: str = "released"
    motif_embed_dim: int = 64  # motif-distance: width of the query / key / value conv encoders
    motif_kernel: int = 15  # motif-distance: kernel size (samples) of the dilated convolutions


@dataclass
class Config:
    """A resolved training configuration (what `config.yaml` holds)."""

    stage: str = "stage1"
    #: pretrain: a backbone to continue from; stage1: the backbone (released .mdl, a pretrain run, None = random);
    #: stage2 / supervised: a Stage I run (None = Stage II without Stage I, backbone from `backbone_init`).
    init: str | None = None
    backbone_init: str | None = None  # stage2 / supervised without `init`: the backbone source
    #: accept an init that saw this fold's unseen classes or this run's test subjects (stamped into the run)
    allow_transductive_init: bool = False
    text_encoder: str | None = None  # sentence-transformers name or folder; None = all-MiniLM-L6-v2 (offline)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        """A plain mapping (what `config.yaml` holds)."""
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> Path:
        """Write `config.yaml` atomically."""
        return atomic_write_yaml(path, self.to_dict())


# ---------------------------------------------------------------------------------------------- strict parsing
def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))


def _describe(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """`value` checked against the annotation `tp`; ints are accepted for floats, nothing else is converted."""

    def bad() -> ZeroharError:
        return ZeroharError(f"{source}: key {key!r} expects {_describe(tp)}, found {value!r}")

    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise bad()
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key, source)
            except ZeroharError:
                continue
        raise bad()
    if origin is typing.Literal:
        if value in typing.get_args(tp):
            return value
        raise bad()
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise bad()
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        out = [_coerce(v, inner, f"{key}[{i}]", source) for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise bad()
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise bad()
        return from_dict(tp, value, source, prefix=f"{key}.")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad()
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad()
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads `3e-4` (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise bad()
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad()
    return value  # Any, or a type this checker does not know: left to the dataclass


def from_dict(cls: type, d: dict, source: str, prefix: str = "") -> Any:
    """Build dataclass `cls` from a mapping; an unknown key is an error naming it and `source`."""
    if not isinstance(d, dict):
        raise ZeroharError(f"{source}: {prefix.rstrip('.') or 'the top level'} must be a mapping, found {d!r}")
    hints = _type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for k, v in d.items():
        if k not in names:
            raise ZeroharError(
                f"{source}: unknown key {prefix + str(k)!r}; expected one of {', '.join(prefix + n for n in names)}"
            )
        tp = hints[k]
        if prefix == "" and cls is Config and k == "model":
            tp = ModelConfig
        kwargs[k] = _coerce(v, tp, prefix + k, source)
    try:
        return cls(**kwargs)
    except ZeroharError:
        raise
    except (TypeError, ValueError) as e:
        raise ZeroharError(f"{source}: invalid {prefix.rstrip('.') or 'config'}: {e}") from None


def merge_settings(base: dict, update: dict, source: str = "", path: str = "") -> dict:
    """Deep merge of plain mappings (update wins); keys are checked later, by from_dict."""
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge_settings(out[k], v, source, f"{path}{k}.")
        else:
            out[k] = v
    return out


def parse_set(items: list[str] | tuple[str, ...]) -> dict:
    """`["train.epochs=3", "data.fold=fold2"]` -> nested mapping; values are parsed as YAML scalars/lists."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise ZeroharError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.epochs=3")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not p for p in key.split(".")):
            raise ZeroharError(f"--set {item!r}: expected a dotted key such as train.lr")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ZeroharError(f"--set {item!r}: {p!r} is set both as a value and as a section")
        node[parts[-1]] = value
    return out


# ---------------------------------------------------------------------------------------------- data sources
#: The keys a `data.sources` entry may have (the single-source `data` settings that differ per source).
SOURCE_KEYS = ("dataset", "data", "root", "folds", "fold", "descriptions", "subjects")


def source_name(entry: dict) -> str:
    """How a source is named in classes, subjects and messages: its dataset, else its window-set file's stem."""
    return str(entry.get("dataset") or Path(str(entry.get("data") or "data")).stem)


def split_sources(value: str | list | None) -> list[str]:
    """`"hapt,shoulder"` or `["hapt", "shoulder"]` -> `["hapt", "shoulder"]` (empty items dropped)."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(x).strip() for x in items if str(x).strip()]


def check_sources(sources: list, where: str = "data.sources") -> list[dict]:
    """Strict checks of a `data.sources` list: mappings of known keys, each with a dataset or a window set,
    no source twice."""
    out, names = [], []
    if not isinstance(sources, list) or not sources:
        raise ZeroharError(f"{where} must be a non-empty list of sources (dataset or data, root, fold, ...)")
    for i, s in enumerate(sources):
        if isinstance(s, str):
            s = {"dataset": s}
        if not isinstance(s, dict):
            raise ZeroharError(f"{where}[{i}] must be a dataset name or a mapping, found {type(s).__name__}")
        bad = sorted(set(s) - set(SOURCE_KEYS))
        if bad:
            raise ZeroharError(f"{where}[{i}] has unknown keys {bad}; known: {', '.join(SOURCE_KEYS)}")
        if (s.get("dataset") is None) == (s.get("data") is None):
            raise ZeroharError(f"{where}[{i}] needs exactly one of 'dataset' (a name) and 'data' (a .npz window set)")
        names.append(source_name(s))
        out.append(dict(s))
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ZeroharError(f"{where} names {', '.join(twice)} more than once")
    return out


def check_label_map(path: str | Path, names: list[str]) -> dict[str, str]:
    """The mapping of a `data.label_map` file, checked against the run's source names `names` (the classes
    themselves are checked when the sources are loaded: :func:`zerohar.data.multi.load_multi_stage_data`).

    The file maps namespaced classes (`source/label`, as the run names them) to a label text; classes that end
    on the same text, by the map or by equal label names, are one label. Bare label names are refused: the same
    name may mean different activities in two datasets, so the map says which dataset's class it means.

    Raises:
        ZeroharError: the file is missing or not a mapping, a key is not `source/label` of one of `names`, or a
            value is not a non-empty string (one sentence naming the file and the key).
    """
    raw = load_yaml(path, "label map file", mapping=True)
    out = {}
    for key, value in raw.items():
        src = key.split("/", 1)[0] if isinstance(key, str) and "/" in key else None
        if src is None or not key.split("/", 1)[1].strip():
            raise ZeroharError(f"label map file {path}: key {key!r} is not a namespaced class; write "
                               "source/label, such as 'uschad/walking forward: walking'")
        if src not in names:
            raise ZeroharError(f"label map file {path}: key {key!r} names the source {src!r}, which this run does "
                               f"not train on (its sources: {', '.join(names)})")
        if not isinstance(value, str) or not value.strip():
            raise ZeroharError(f"label map file {path}: key {key!r} maps to {value!r}, expected a label text "
                               "(a non-empty string such as 'walking')")
        if "/" in value and value.split("/", 1)[0] in names:
            raise ZeroharError(f"label map file {path}: key {key!r} maps to the class {value!r}; write its label "
                               f"text {value.split('/', 1)[1]!r} instead")
        out[key] = value.strip()
    return out


def hyperparameters_file() -> Path:
    return metadata_dir() / "hyperparameters.yaml"


def stage_defaults(stage: str, dataset: str | None, path: str | Path | None = None) -> dict:
    """Defaults of `hyperparameters.yaml` for a stage: the `default` entry, then the dataset's, merged.

    `supervised` takes the `stage2` entries, then its own.
    """
    path = Path(path) if path is not None else hyperparameters_file()
    hp = load_yaml(path, "hyperparameters file", mapping=True)
    out: dict = {}
    stages = ["stage2", "supervised"] if stage == "supervised" else [stage]
    for entry in ("default", dataset):
        if entry is None or entry not in hp:
            continue
        per_stage = hp[entry]
        if not isinstance(per_stage, dict):
            raise ZeroharError(f"{path}: entry {entry!r} must map stages to settings")
        for k in per_stage:
            if k not in STAGES:
                raise ZeroharError(f"{path}: entry {entry!r} has unknown stage {k!r}; expected one of {STAGES}")
        for s in stages:
            sect = per_stage.get(s) or {}
            for k in sect:
                if k in ("stage",):
                    raise ZeroharError(f"{path}: {entry}.{s} must not set 'stage'")
            out = merge_settings(out, sect, str(path))
    return out


def resolve_config(
    stage: str,
    *,
    config_file: str | Path | None = None,
    overrides: dict | None = None,
    hyperparameters: str | Path | None = None,
) -> Config:
    """The resolved config of a run: defaults < hyperparameters.yaml < `config_file` < `overrides`.

    Args:
        stage: One of STAGES.
        config_file: A YAML file shaped like `config.yaml` (sections data / model / train; `stage` optional but,
            when present, it must equal `stage`).
        overrides: Nested mapping of explicit settings, e.g. ``{"train": {"epochs": 3}, "data": {"fold": "fold2"}}``
            (see :func:`parse_set` for `--set KEY=VALUE` lists).
        hyperparameters: Another hyperparameters file (tests); default `metadata/hyperparameters.yaml`.

    Returns:
        The validated :class:`Config`.
    """
    if stage not in STAGES:
        raise ZeroharError(f"unknown stage {stage!r}: expected one of {', '.join(STAGES)}")
    user = load_yaml(config_file, "config file", mapping=True) if config_file is not None else {}
    if "stage" in user and user["stage"] != stage:
        raise ZeroharError(f"config file {config_file}: 'stage' is {user['stage']!r}, but this command trains {stage}")
    overrides = overrides or {}
    # The dataset decides which per-dataset defaults apply, so it is looked up first (later sources win).
    dataset = DataConfig.dataset
    for src in (user, overrides):
        d = src.get("data")
        if isinstance(d, dict):
            if d.get("sources"):
                dataset = None  # several sources: only the `default` entry applies
            elif "dataset" in d:
                dataset = d["dataset"]
            elif d.get("data") is not None:
                dataset = None  # a user's own window set: only the `default` entry applies
    merged = merge_settings({"stage": stage}, stage_defaults(stage, dataset, hyperparameters), "hyperparameters")
    if dataset is None:
        merged.setdefault("data", {})["dataset"] = None
    merged = merge_settings(merged, user, str(config_file))
    merged = merge_settings(merged, overrides, "command line")
    merged["stage"] = stage
    md = merged.get("data")
    if isinstance(md, dict) and md.get("sources"):
        # Several sources name their own datasets and folds: the single-source defaults do not apply, but a
        # fold or dataset the user gave explicitly is kept (and refused by `validate`).
        given = [s.get("data") for s in (user, overrides) if isinstance(s.get("data"), dict)]
        for k in ("dataset", "data", "fold"):
            if not any(k in g and g[k] is not None for g in given):
                md[k] = None
    # A backbone variant sets the window length it was built for, unless the window length was chosen explicitly.
    variant = (merged.get("model") or {}).get("backbone") if isinstance(merged.get("model"), dict) else None
    explicit_window = any(isinstance(s.get("data"), dict) and "window_s" in s["data"] for s in (user, overrides))
    if variant and not explicit_window:
        if variant in VARIANTS:
            merged.setdefault("data", {})["window_s"] = VARIANTS[variant] / 30.0
    source = "command line" if not config_file else f"{config_file} / command line"
    cfg = from_dict(Config, merged, source)
    validate(cfg, source)
    return cfg


def validate(cfg: Config, source: str = "config") -> None:
    """Value checks that types alone cannot express."""
    t, d = cfg.train, cfg.data
    checks = [
        (t.precision in PRECISIONS, "train.precision", f"one of {', '.join(PRECISIONS)}", t.precision),
        (t.label_text in LABEL_TEXTS, "train.label_text", f"one of {', '.join(LABEL_TEXTS)}", t.label_text),
        (t.label_sampling in LABEL_SAMPLING, "train.label_sampling", f"one of {', '.join(LABEL_SAMPLING)}",
         t.label_sampling),
        (t.schedule in SCHEDULES, "train.schedule", f"one of {', '.join(SCHEDULES)}", t.schedule),
        (t.negatives in ("batch", "all"), "train.negatives", "batch or all", t.negatives),
        (t.epochs is None or t.epochs >= 1, "train.epochs", "at least 1 or null (adaptive length)", t.epochs),
        (t.max_steps is None or t.max_steps >= 1, "train.max_steps", "at least 1 or null", t.max_steps),
        (t.min_steps is None or t.min_steps >= 0, "train.min_steps", "0 or more, or null", t.min_steps),
        (t.eval_every is None or t.eval_every >= 1, "train.eval_every", "at least 1 or null", t.eval_every),
        (t.patience >= 1, "train.patience", "at least 1 evaluation", t.patience),
        (t.min_delta >= 0, "train.min_delta", "0 or more", t.min_delta),
        (t.warmup_steps is None or t.warmup_steps >= 0, "train.warmup_steps", "0 or more, or null",
         t.warmup_steps),
        (0 < t.cooldown < 1, "train.cooldown", "a fraction in (0, 1)", t.cooldown),
        (0 <= t.sensor_dropout < 1, "train.sensor_dropout", "a probability in [0, 1)", t.sensor_dropout),
        (t.batch_size >= 2, "train.batch_size", "at least 2 (contrastive losses need negatives)", t.batch_size),
        (t.lr > 0, "train.lr", "a positive number", t.lr),
        (0 <= t.warmup < 1, "train.warmup", "a fraction in [0, 1)", t.warmup),
        (0 <= t.val_fraction < 1, "train.val_fraction", "a fraction in [0, 1)", t.val_fraction),
        (0 < t.test_fraction < 1, "train.test_fraction", "a fraction in (0, 1)", t.test_fraction),
        (t.grad_clip is None or t.grad_clip > 0, "train.grad_clip", "a positive number or null", t.grad_clip),
        (t.max_steps_per_epoch is None or t.max_steps_per_epoch >= 1, "train.max_steps_per_epoch",
         "at least 1 or null", t.max_steps_per_epoch),
        (t.num_workers >= 0, "train.num_workers", "0 or more", t.num_workers),
        (0 <= t.freeze_layers <= 5, "train.freeze_layers", "0 to 5 (HARNet has 5 layers)", t.freeze_layers),
        (t.backbone_lr_mult >= 0, "train.backbone_lr_mult", "0 or more", t.backbone_lr_mult),
        (d.window_s > 0, "data.window_s", "a positive number of seconds", d.window_s),
        (d.dataset is not None or d.data is not None or bool(d.sources), "data.dataset / data.data",
         "a dataset name or a window set file", f"{d.dataset!r} / {d.data!r}"),
        (all(s in ("acc", "gyro", "mag") for s in t.pretrain_sensors) and t.pretrain_sensors,
         "train.pretrain_sensors", "a non-empty list of acc, gyro, mag", t.pretrain_sensors),
        (t.pretrain_method in PRETRAIN_METHODS, "train.pretrain_method", f"one of {', '.join(PRETRAIN_METHODS)}",
         t.pretrain_method),
        (t.relcon_within_cands >= 1, "train.relcon_within_cands", "at least 1", t.relcon_within_cands),
        (t.relcon_head in RELCON_HEADS, "train.relcon_head", f"one of {', '.join(RELCON_HEADS)}", t.relcon_head),
        (t.relcon_batching in RELCON_BATCHING, "train.relcon_batching", f"one of {', '.join(RELCON_BATCHING)}",
         t.relcon_batching),
        (t.relcon_group >= 2, "train.relcon_group", "at least 2 (a window and a within-subject candidate)",
         t.relcon_group),
        (t.relcon_within_s > 0, "train.relcon_within_s", "a positive number of seconds", t.relcon_within_s),
        (t.relcon_temperature > 0, "train.relcon_temperature", "a positive number", t.relcon_temperature),
        (t.motif_attention in MOTIF_ATTENTIONS, "train.motif_attention", f"one of {', '.join(MOTIF_ATTENTIONS)}",
         t.motif_attention),
        (t.motif_embed_dim >= 8 and t.motif_embed_dim % 8 == 0, "train.motif_embed_dim", "a multiple of 8",
         t.motif_embed_dim),
        (t.motif_kernel >= 1 and t.motif_kernel % 2 == 1, "train.motif_kernel", "a positive odd number",
         t.motif_kernel),
        (not (cfg.stage == "pretrain" and t.pretrain_method == "relcon" and t.relcon_distance is None),
         "train.relcon_distance", "a motif-distance run directory when train.pretrain_method is relcon", None),
    ]
    for ok, key, expected, found in checks:
        if not ok:
            raise ZeroharError(f"{source}: {key} must be {expected}, found {found!r}")
    if d.label_map is not None and not d.sources:
        raise ZeroharError(f"{source}: data.label_map merges classes of several sources, so it needs data.sources "
                           f"(found {d.label_map!r} with one dataset)")
    if d.sources:
        entries = check_sources(d.sources, f"{source}: data.sources")
        if d.label_map is not None:
            check_label_map(d.label_map, [source_name(e) for e in entries])
        if d.dataset is not None or d.data is not None or d.fold is not None:
            raise ZeroharError(f"{source}: with data.sources, data.dataset, data.data and data.fold must be null "
                               "(each source names its own dataset and fold)")
        if not 0 <= d.balance <= 1:
            raise ZeroharError(f"{source}: data.balance must be between 0 and 1, found {d.balance!r}")
        return
    if cfg.stage in ("stage1", "stage2", "supervised") and d.fold is None:
        raise ZeroharError(f"{source}: data.fold is required for {cfg.stage} (the fold's unseen classes are held out)")


# ---------------------------------------------------------------------------------------------- command line
def default_out_dir(cfg: Config) -> Path:
    """`runs/<stage>/<dataset or data file stem>-<fold>` (what the scripts use without --out)."""
    if cfg.data.sources:
        name = "+".join(source_name(s) for s in cfg.data.sources)
    else:
        name = cfg.data.dataset or Path(cfg.data.data or "data").stem
    return Path("runs") / cfg.stage / (f"{name}-{cfg.data.fold}" if cfg.data.fold else name)
