"""Distillation: a smaller backbone trained to give a finished run's backbone features, for long recordings.

The backbone is more than 97% of the work per window (:mod:`zerohar.inference.plan`). The student, a
:class:`~zerohar.model.harnet.DistilledHARNet` (HARNet with every layer's channels scaled by `width`, then a
linear map to the teacher's feature size), learns to reproduce the frozen teacher backbone's feature of every
triad; the rest of the model (sensor tokens, sensor transformer, heads, text projector, label prototypes) is
left exactly as trained and reads the student's features instead (`zerohar classify --distilled`, `zerohar eval
--distilled`). No label is read: the student learns the teacher's map, not the labels, so it changes the labels
of some windows, as far as it does not match the teacher.

**Data** (unlabelled triads: every sensor triad of each window, after the model's own per-kind scaling and
accelerometer clipping, :meth:`~zerohar.model.zerohar.ZeroHARModel._triads`):

- by default the teacher run's own data and subject split, loaded by :func:`zerohar.data.multi.load_data` from
  the run's config (so the split is the one its `model.json` records; checked), with the pretraining filter of
  :func:`zerohar.data.splits.load_stage_data`: every window of the training subjects that holds no sample of the
  fold's unseen classes, labelled or not (a run of several sources: its own training windows, as pretraining on
  several sources keeps one sensor kind). The student then sees nothing the teacher did not see, and a zero-shot
  number of the distilled model has no unseen-class window and no test subject behind it. Validation: the
  triads of the run's validation subjects.
- `data=` (a window set) or `dataset=` (a dataset): every window of it, validation on a seeded fifth of its
  subjects (one subject: its last tenth of windows). If it holds samples of the teacher's fold's unseen classes
  or windows of its test subjects, it is refused (:func:`zerohar.train.provenance.refuse_leaks`, the rule every
  init follows) unless `allow_transductive_init`, which `student.json` then records.

**Loss**: with `t` the teacher's feature of a triad, `s` the student's and `sigma` the teacher's per-dimension
standard deviation over the training triads, `mean(((s - t) / sigma) ** 2) + mean(1 - cos(s, t))`
(:func:`distill_loss`). Standardising gives every feature dimension the weight of its own spread (a plain MSE
is ruled by the few dimensions with a large range), and the cosine term is the direction that the sensor
tokens and everything after them read. The teacher's features are computed once, in fp32 on the fast path
(:func:`zerohar.inference.embed.embed_backbone`), so a step costs the student alone.

**Start**: random by default; `init="teacher"` (:func:`pruned_student`) begins as the teacher with its least read
channels removed. Each channel of every layer's residual stream and of every residual block is scored by how much
the convolutions after it read of it on a seeded sample of the training triads (:func:`channel_importance`: the
mean square of its activation where a convolution reads it, times the squared norm of that convolution's weights
on it); the top `width` share of each is kept with the teacher's own weights
(:func:`zerohar.model.harnet.narrowed`), the BN statistics are recalibrated on the sample, and the output map is
the ridge least-squares map of the narrower network's features to the teacher's. At width 0.5 that start has a
validation cosine of 0.73-0.76 before any step (a random one 0.42-0.48), but it ends at the same plateau (0.988
/ 0.989 vs 0.990 / 0.990) after more steps (2,192 / 2,789 vs 1,670 / 2,092) and agrees no better: HAPT fold2
95.4% (random 95.0%), USC-HAD fold1 94.1% (random 95.4%). So it is not the default. Training keeps the best of
the start and every validation, so a good start is never traded for a worse first step.

**Augmentation, on by default** (`augment_copies` = 2): that many copies of the training windows, each window
turned to a uniformly random orientation (any rotation: `augment_deg` 180) and scaled by up to 30%
(`augment_scale`), optionally played at another tempo and intensity (`augment_tempo`, `augment_intensity`;
:func:`zerohar.data.augment.broad_augment`), each copy with its own teacher features; validation then holds one
augmented copy of the validation windows too. A fold's unseen activities are by construction absent from the
student's windows, and feature matching says nothing about inputs the student never saw: USC-HAD's fold1 students
without augmentation kept only 42.5% of the teacher's labels of its `sleeping` windows (the only lying posture)
and 64-65% of `jumping` and `walking forward`. Turning the windows every way covers every posture.

**Length**: the adaptive budget of :mod:`zerohar.train.budget` (validation = mean cosine of student and teacher
features on the validation triads; plateau, cool-down, `stop_reason`), with AdamW; the student of the best
validation is kept. **Output**: `RUN/distilled/` (:func:`zerohar.train.runs.save_distilled`), whole or not at all:
`model.safetensors` and `student.json` (teacher identity, width, data and provenance, steps, stop reason,
validation cosine, wall time).

**Measured** (`scripts/less_work.py`, results in `eval/results/less-work/`; AVX2 CPU, one thread; fold1 Stage II
runs of seed 0, 300 steps; "agreement" = the same top-1 label as the run's own backbone among all the dataset's
classes, on every labelled window):

- no augmentation: HAPT (6,480 windows) 97.8% agreement, 98.8% of the zero-shot decisions, zero-shot macro-F1
  0.590 (the run's 0.589); USC-HAD (10,139 windows) 83.5%, 86.8%, 0.796 (the run's 0.695); 396 / 680 steps,
  16-17 min;
- 1 copy with Stage II's light augmentation (10 degrees, 10%): HAPT 98.3%, 99.4%, 0.580; 792 steps, 20 min;
- **2 copies, any rotation, 30% scale (the default)**: HAPT **99.1%, 99.4%, 0.575**; USC-HAD **95.4%, 92.2%,
  0.722**; 1,944 / 2,092 steps, 57-61 min;
- the same plus tempo 1.5 and intensity 2 (`augment_tempo`, `augment_intensity`), USC-HAD: 92.6%, 91.1%, 0.758
  (jumping 73.4%, sleeping 83.8%); its noisier validation stopped it at 1,096 steps, 33 min. Not the default.

- the default plus mixup of half of each copy's windows (`augment_mix` 0.5): HAPT fold2 (from the teacher's
  channels) 94.3% (95.4% without mixup from the same start), walking upstairs 70.3%; USC-HAD fold1 92.5% (95.4%),
  jumping 73.1%, sleeping 78.5%; 1,879 / 1,295 steps. Not the default.

Fold2 runs with the default: HAPT 95.0% agreement, 98.0% of the zero-shot decisions, macro-F1 0.628 (the run's
0.614); USC-HAD 98.2%, 95.0%, 0.429 (0.376). What the default still misses is unseen fast movement (HAPT fold2's
walking upstairs 73.8%, USC-HAD fold1's jumping 80.7%), not unseen posture.

With the default, HAPT: 23,070 training and 5,004 validation triads, validation cosine 0.449 at the start, 0.994
at the plateau; USC-HAD: 21,252 and 5,320, 0.418 to 0.990. The USC-HAD student's agreement per class: sleeping
95.5% (42.5% without augmentation), jumping 80.7% (64.4%), walking forward 85.0% (64.8%), walking upstairs 94.1%,
every seen class 97.8-99.7%. A student's agreement is a property of the data: measure it (`zerohar eval --run RUN
--distilled`).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from zerohar import __version__
from zerohar.config import TrainConfig
from zerohar.data.augment import augment, broad_augment
from zerohar.data.multi import MultiData, load_data
from zerohar.data.prepare import load_windowset
from zerohar.data.splits import holds_classes, split_subjects
from zerohar.errors import ZeroharError
from zerohar.inference.embed import embed_backbone  # the floor above: see the note below the imports
from zerohar.io import check_writable
from zerohar.model.harnet import DistilledHARNet, HARNet, ResBlock, check_width, layer_channels, narrowed
from zerohar.model.precision import autocast, resolve_precision
from zerohar.train.base import epoch_permutation
from zerohar.train.budget import Progress, plan_budget
from zerohar.train.provenance import data_key, find_leaks, merge_saw, refuse_leaks
from zerohar.train.runs import distilled_dir, load_run, save_distilled, use_distilled

# `embed_backbone` is the one import from the floor above: the teacher's features are inference of a frozen backbone
# on the plan's fast path; zerohar.inference.embed imports nothing from zerohar.train, so there is no circle.

logger = logging.getLogger(__name__)

#: The student's channel factor by default: a quarter of the convolution work per triad.
DEFAULT_WIDTH = 0.5
#: Triads per optimiser step, learning rate and weight decay of AdamW.
BATCH_SIZE = 256
LR = 2e-3
WEIGHT_DECAY = 0.01
#: At most this many training / validation triads (a seeded subset of the windows beyond it): the triads and
#: their teacher features of 60,000 triads of harnet5 hold about 230 MB.
MAX_TRAIN_TRIADS = 60_000
MAX_VAL_TRIADS = 4_096
#: Explicit data: the share of its subjects held out for validation.
VAL_FRACTION = 0.2
#: Augmented copies of the training windows by default, and their rotation (degrees; 180 = any orientation) and
#: amplitude scale (module docstring, "Augmentation").
AUG_COPIES = 2
AUG_DEG, AUG_SCALE = 180.0, 0.3
#: Windows per call when the model's triads are made (its own scaling and clipping).
CHUNK = 1024
#: How a student starts: "random" (the default) or "teacher" (the teacher's most read channels, module docstring
#: "Start").
INITS = ("random", "teacher")
#: Training triads (a seeded subset) that rank the teacher's channels, recalibrate the student's BN statistics
#: and fit its output map, when it starts from the teacher.
INIT_TRIADS = 4096


@dataclass
class DistillData:
    """The windows a student learns from (no labels), split into training and validation windows.

    Attributes:
        X: `(N, C, T)` windows; kinds: their sensor layout (the model's scaling and clipping per kind).
        train, val: window indices into `X`.
        present: `(N, S)` bool, the sensors each window has (several sources), else None.
        record: what `student.json` records about the data ("data" and its provenance).
    """

    X: np.ndarray
    kinds: object
    train: np.ndarray
    val: np.ndarray
    present: np.ndarray | None
    record: dict


# ---------------------------------------------------------------------------------------------- the loss
def distill_loss(student: torch.Tensor, teacher: torch.Tensor, inv_std: torch.Tensor) -> torch.Tensor:
    """`mean(((s - t) * inv_std) ** 2) + mean(1 - cos(s, t))` of features `(B, D)` (see the module docstring).

    Args:
        student, teacher: `(B, D)` features; inv_std: `(D,)` 1 / the teacher's per-dimension standard deviation.
    """
    mse = ((student - teacher) * inv_std).pow(2).mean()
    return mse + (1.0 - F.cosine_similarity(student, teacher, dim=1)).mean()


def inverse_std(features: np.ndarray) -> torch.Tensor:
    """`(D,)` 1 / per-dimension std of teacher features `(N, D)`, a dimension that barely varies (a ReLU that is
    almost never on) floored at 1% of the mean std, so it cannot dominate the loss."""
    std = torch.from_numpy(features.std(0, dtype=np.float64).astype(np.float32))  # (D,)
    floor = max(float(std.mean()) * 1e-2, 1e-6)
    return 1.0 / std.clamp(min=floor)


# ---------------------------------------------------------------------------------------------- the data
def window_triads(model, X: np.ndarray, rows: np.ndarray, kinds, present: np.ndarray | None = None) -> np.ndarray:
    """`(M, 3, T)` float32: the backbone's input triads of windows `X[rows]` (the model's per-kind scaling and
    accelerometer clipping), the present ones only when `present` `(N, S)` is given."""
    out = []
    with torch.no_grad():
        for a in range(0, len(rows), CHUNK):
            r = rows[a : a + CHUNK]
            tri = model._triads(torch.from_numpy(np.ascontiguousarray(X[r], dtype=np.float32)), kinds)  # (b, S, 3, T)
            if present is not None:
                tri = tri[torch.from_numpy(present[r])]  # (m, 3, T)
            out.append(tri.reshape(-1, 3, tri.shape[-1]).numpy())
    t = int(X.shape[-1])
    return np.concatenate(out) if out else np.zeros((0, 3, t), np.float32)


def teacher_sources(meta: dict) -> list[tuple[str, list[str], list[str]]]:
    """`(data key, unseen classes, test subjects)` of each source a run trained on (its `model.json` metadata)."""
    supervised = meta.get("stage") == "supervised"  # the upper bound trains on every class: no class leaks
    if meta.get("sources"):
        return [(s["key"], [] if supervised else list(s.get("unseen") or []),
                 list((s.get("subjects") or {}).get("test", []))) for s in meta["sources"]]
    return [(data_key(meta.get("dataset"), meta.get("data")), [] if supervised else list(meta.get("unseen") or []),
             list((meta.get("subjects") or {}).get("test", [])))]


def run_data(run, root: str | None = None) -> DistillData:
    """The default data: the teacher run's training and validation subjects, every window holding no sample of
    its fold's unseen classes (module docstring)."""
    cfg = run.config
    if root is not None:
        if cfg.data.sources:
            raise ZeroharError(f"run {run.path} trained on several sources; --root names one dataset's folder (give "
                               "--data or --dataset instead)")
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=str(root)))
    multi = bool(cfg.data.sources)
    # One source: the pretraining filter (unlabelled windows welcome, no sample of an unseen class). Several: the
    # run's own windows, as pretraining on several sources keeps one sensor kind only (zerohar.data.multi).
    d = load_data(cfg if multi else dataclasses.replace(cfg, stage="pretrain"))
    recorded = (run.meta.get("subjects") or {}).get("train")
    if recorded and sorted(map(str, recorded)) != sorted(map(str, d.subjects["train"])):
        raise ZeroharError(f"the data of run {run.path} splits into other training subjects now than the run "
                           f"recorded ({len(d.subjects['train'])} vs {len(recorded)}); distil on --data or --dataset")
    present = d.present if isinstance(d, MultiData) else None
    rule = ("the run's own training windows (its seen classes), labels not read" if multi else "every window of "
            "the training subjects holding no sample of the fold's unseen classes, labelled or not (labels not read)")
    record = {"source": "run", "dataset": d.dataset, "fold": d.fold, "filter": rule,
              "subjects": {k: d.subjects[k] for k in ("train", "val")}}
    return DistillData(d.ws.X, d.ws.layout, d.train_idx, d.val_idx, present, record)


def given_data(run, *, data: str | None, dataset: str | None, root: str | None, allow: bool, seed: int
               ) -> DistillData:
    """Explicit data (a window set or a dataset), refused if it leaks into the teacher's fold (module docstring)."""
    ws = load_windowset(dataset if data is None else None, root=root, data=data, window_s=run.window_s)
    key = data_key(ws.meta.get("dataset") if data is not None else dataset, data)
    subjects = sorted(set(map(str, ws.subject.tolist())))
    classes = list(ws.class_names)
    labelled = {classes[i] for i in np.unique(ws.y[ws.y >= 0])}
    leaks: list[str] = []
    what = f"--{'data' if data is not None else 'dataset'} {data or dataset} would train the student on"
    for k, unseen, test in teacher_sources(run.meta):
        if k != key:
            continue
        held = [c for c in unseen if c in classes and holds_classes(ws, [classes.index(c)], key).any()]
        saw = {key: {"classes": sorted(labelled | set(held)), "subjects": subjects}}
        leaks += find_leaks(what, saw, key, unseen, test)
    refuse_leaks(leaks, allow, instead="distil on the run's own windows (no --data / --dataset) or on data without "
                 "them", marked="the student")
    if len(subjects) >= 2:
        train_s, val_s, _ = split_subjects(subjects, VAL_FRACTION, 0.0, seed)
        subj = ws.subject.astype(str)
        train, val = np.flatnonzero(np.isin(subj, train_s)), np.flatnonzero(np.isin(subj, val_s))
    else:  # one subject: its last tenth of windows validates
        cut = max(1, len(ws) - max(1, len(ws) // 10))
        train, val, train_s, val_s = np.arange(cut), np.arange(cut, len(ws)), subjects, subjects
    if len(train) == 0 or len(val) == 0:
        raise ZeroharError(f"{data or dataset}: {len(ws)} windows are too few to distil on (training and validation "
                           "windows are needed)")
    record = {"source": str(data) if data is not None else dataset, "key": key, "subjects": {"train": train_s,
              "val": val_s}, "transductive_init": leaks,
              "saw": {key: {"classes": sorted(labelled), "subjects": subjects}}}
    return DistillData(ws.X, ws.layout, train, val, None, record)


def _cap(rows: np.ndarray, sensors: int, limit: int, seed: int, tag: int) -> np.ndarray:
    """`rows`, or a seeded sorted subset of them whose triads (`sensors` per window) fit in `limit`."""
    most = max(1, limit // max(1, sensors))
    if len(rows) <= most:
        return rows
    return np.sort(np.random.default_rng([seed, tag]).choice(rows, most, replace=False))


# ---------------------------------------------------------------------------------------------- the start
def channel_importance(net: HARNet, x: np.ndarray, batch: int = 512) -> dict[str, torch.Tensor]:
    """Per channel of every residual stream (`"layer{i}"`) and residual block (`"layer{i}.{b}"`) of `net`, how much
    the layers after it read of it on triads `x` `(N, 3, T)`: the mean square of the channel's activation where a
    convolution reads it (after its BN and ReLU, `net` in eval mode), times the squared norm of that
    convolution's weights on it, summed over its readers. A layer's stream is read by each block's first
    convolution and by the next layer's first convolution; the last layer's by the feature itself (weight 1).
    """
    energy: dict[str, torch.Tensor] = {}
    hooks = []

    def keep(name):
        def hook(_m, _inp, out):
            e = F.relu(out).float().pow(2).mean(dim=tuple(d for d in range(out.ndim) if d != 1))  # (C,)
            energy[name] = energy.get(name, 0) + e * len(out)
        return hook

    layers = [getattr(net, f"layer{i}") for i in range(1, 6)]
    for i, layer in enumerate(layers, start=1):
        blocks = [m for m in layer if isinstance(m, ResBlock)]
        for b, blk in enumerate(blocks, start=1):
            hooks += [blk.bn1.register_forward_hook(keep(f"layer{i}.{b}.in")),
                      blk.bn2.register_forward_hook(keep(f"layer{i}.{b}"))]
        hooks.append(layer[len(blocks) + 1].register_forward_hook(keep(f"layer{i}.out")))
    try:
        _forward(net, x, batch, training=False)
    finally:
        for h in hooks:
            h.remove()
    n = max(1, len(x))

    def norm2(conv) -> torch.Tensor:  # squared weight norm per input channel
        return conv.weight.detach().float().pow(2).sum(dim=(0, 2))  # (C_in,)

    scores: dict[str, torch.Tensor] = {}
    for i, layer in enumerate(layers, start=1):
        blocks = [m for m in layer if isinstance(m, ResBlock)]
        reader = norm2(layers[i][0]) if i < 5 else 1.0
        stream = energy[f"layer{i}.out"] / n * reader
        for b, blk in enumerate(blocks, start=1):
            stream = stream + energy[f"layer{i}.{b}.in"] / n * norm2(blk.conv1)
            scores[f"layer{i}.{b}"] = energy[f"layer{i}.{b}"] / n * norm2(blk.conv2)
        scores[f"layer{i}"] = stream
    return scores


def _recalibrate_bn(net: torch.nn.Module, x: np.ndarray, batch: int = 512) -> None:
    """Replace every BN's running statistics by those of triads `x` (a cumulative average over batches)."""
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch weighs the same
    try:
        _forward(net, x, batch, training=True)
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom


def _forward(net: torch.nn.Module, x: np.ndarray, batch: int = 512, *, training: bool = False) -> torch.Tensor:
    """`net`'s outputs on triads `x` `(N, 3, T)` in batches, without gradients, in training or eval mode (the
    mode `net` had is restored)."""
    was = net.training
    net.train(training)
    try:
        with torch.no_grad():
            return torch.cat([net(torch.from_numpy(np.ascontiguousarray(x[a : a + batch])))
                              for a in range(0, len(x), batch)])
    finally:
        net.train(was)


def pruned_student(teacher: HARNet, width: float, x: np.ndarray, t: np.ndarray) -> DistilledHARNet:
    """A student that starts as the teacher with its least read channels removed (module docstring, "Start").

    The channels of each layer's stream and of each residual block that :func:`channel_importance` ranks highest
    on triads `x` are kept (:func:`zerohar.model.harnet.narrowed`), the narrower network's BN statistics are
    recalibrated on `x`, and its output map is the least-squares (ridge) map of its features on `x` to the
    teacher's `t` `(N, D)`.
    """
    scores = channel_importance(teacher, x)
    counts = layer_channels(teacher.variant, width)
    keep = {}
    for name, sc in scores.items():
        c = counts[int(name.split(".")[0][len("layer"):]) - 1]
        keep[name] = torch.sort(torch.topk(sc, c).indices).values
    net = narrowed(teacher, width, keep)
    _recalibrate_bn(net, x)
    student = DistilledHARNet(teacher.variant, width, teacher.out_dim)
    student.net.load_state_dict(net.state_dict())
    f = _forward(student.net, x).double()  # (N, d)
    tt = torch.from_numpy(t).double()  # (N, D)
    mf, mt = f.mean(0), tt.mean(0)
    fc, tc = f - mf, tt - mt
    gram = fc.T @ fc  # (d, d)
    ridge = 1e-3 * float(gram.diagonal().mean()) + 1e-12
    w = torch.linalg.solve(gram + ridge * torch.eye(len(gram), dtype=gram.dtype), fc.T @ tc)  # (d, D)
    with torch.no_grad():
        student.proj.weight.copy_(w.T.float())
        student.proj.bias.copy_((mt - mf @ w).float())
    return student.train()


# ---------------------------------------------------------------------------------------------- training
def with_distilled(run):
    """The run's model with its distilled backbone (`RUN/distilled/`) in place of its own: a view sharing every
    other module (:attr:`zerohar.train.runs.Run.window_model`); `run.model` is unchanged.

    Raises:
        ZeroharError: the run has no distilled backbone (the message says to run `zerohar distill --run RUN`).
    """
    if run.student is None:
        use_distilled(run)
    return run.window_model


def check_teacher(run) -> HARNet:
    """The teacher backbone of a loaded run (one-sentence ZeroharError for a run that has none to distil)."""
    if run.model is None:
        raise ZeroharError(f"run {run.path} is a {run.stage} run without a zero-shot model; distil the backbone of a "
                           "finished Stage II (or supervised) run")
    if run.model.cfg.encoder != "harnet" or not isinstance(getattr(run.model, "backbone", None), HARNet):
        raise ZeroharError(f"run {run.path} has no HARNet backbone to distil (its encoder is "
                           f"{run.model.cfg.encoder!r})")
    return run.model.backbone


def distill_run(
    run_dir: str | Path,
    *,
    width: float = DEFAULT_WIDTH,
    data: str | None = None,
    dataset: str | None = None,
    root: str | None = None,
    max_steps: int | None = None,
    batch_size: int = BATCH_SIZE,
    lr: float = LR,
    augment_copies: int = AUG_COPIES,
    augment_deg: float = AUG_DEG,
    augment_scale: float = AUG_SCALE,
    augment_intensity: float = 1.0,
    augment_tempo: float = 1.0,
    augment_mix: float = 0.0,
    init: str = INITS[0],
    seed: int = 0,
    allow_transductive_init: bool = False,
    force: bool = False,
    progress: bool = True,
    max_train_triads: int = MAX_TRAIN_TRIADS,
) -> Path:
    """Distil the backbone of a finished run into `RUN/distilled/` (see the module docstring).

    Args:
        run_dir: a finished Stage II (or supervised) run with a HARNet backbone (the teacher, frozen).
        width: the student's channel factor in (0, 1].
        data / dataset (+ root): distil on these windows instead of the run's own; at most one of them.
        root: the raw folder of `dataset`, or of the run's own dataset.
        max_steps: cap on optimiser steps (default: the adaptive budget's, 50 validation intervals).
        batch_size, lr: triads per step and AdamW's learning rate.
        augment_copies: augmented copies of the training windows (with their own teacher features); 0: none.
        augment_deg, augment_scale: the copies' largest rotation (degrees) and amplitude scale.
        augment_intensity, augment_tempo: factors (>= 1; 1 = off) of :func:`zerohar.data.augment.broad_augment`.
        augment_mix: the share of each copy's windows mixed with another window (`broad_augment`'s mixup).
        init: "random" or "teacher" (start as the teacher's most read channels, :func:`pruned_student`).
        seed: student initialisation, batches, augmentation, subsets.
        allow_transductive_init: accept data holding the teacher's unseen classes or test subjects (recorded).
        force: replace an existing `RUN/distilled/`.
        progress: progress bars.
        max_train_triads: at most this many training triads per copy (a seeded subset of windows beyond it).

    Returns:
        The `RUN/distilled` folder.

    Raises:
        ZeroharError: a bad run or data, an existing output without `force`, bad settings.
    """
    t_start = time.perf_counter()
    out = distilled_dir(run_dir)
    if data is not None and dataset is not None:
        raise ZeroharError("give the windows to distil on one way: --data FILE.npz or --dataset NAME")
    if out.exists() and not force:
        raise ZeroharError(f"{out} already exists; pass --force to replace it")
    if batch_size < 2 or lr <= 0 or augment_copies < 0 or (max_steps is not None and max_steps < 1):
        raise ZeroharError(f"distillation needs a batch size of at least 2, a positive learning rate, at least one "
                           f"step and no negative number of copies (found batch {batch_size}, lr {lr:g}, "
                           f"max steps {max_steps}, copies {augment_copies})")
    if not (0 <= augment_deg <= 180 and 0 <= augment_scale < 1 and 1 <= augment_intensity <= 4
            and 1 <= augment_tempo <= 2 and 0 <= augment_mix <= 1):
        raise ZeroharError(f"the augmentation takes a rotation of 0-180 degrees, a scale in [0, 1), an intensity "
                           f"factor in [1, 4], a tempo factor in [1, 2] and a mixed share in [0, 1] (found "
                           f"{augment_deg:g} degrees, scale {augment_scale:g}, intensity {augment_intensity:g}, "
                           f"tempo {augment_tempo:g}, mix {augment_mix:g})")
    if init not in INITS:
        raise ZeroharError(f"a student starts from one of {', '.join(INITS)}, not {init!r}")
    check_writable(out / "student.json", "distilled backbone")
    width = check_width(width)
    run = load_run(run_dir)
    teacher = check_teacher(run).eval()
    model = run.model

    if data is None and dataset is None:
        dd = run_data(run, root)
    else:
        dd = given_data(run, data=data, dataset=dataset, root=root, allow=allow_transductive_init, seed=seed)
    sensors = int(dd.X.shape[1] // 3)
    train_rows = _cap(dd.train, sensors, max_train_triads, seed, 0xD15)
    val_rows = _cap(dd.val, sensors, MAX_VAL_TRIADS, seed, 0x7A1)
    rng = np.random.default_rng([seed, 0xA06])
    train_x = [window_triads(model, dd.X, train_rows, dd.kinds, dd.present)]
    settings = {"deg": augment_deg, "scale": augment_scale, "intensity": augment_intensity, "tempo": augment_tempo,
                "mix": augment_mix}
    for _ in range(augment_copies):
        train_x.append(_augmented_triads(model, dd, train_rows, rng, **settings))
    x_train = np.concatenate(train_x)  # (N, 3, T)
    val_x = [window_triads(model, dd.X, val_rows, dd.kinds, dd.present)]
    if augment_copies:  # validation on what training sees: the windows and one augmented copy of them
        val_x.append(_augmented_triads(model, dd, val_rows, np.random.default_rng([seed, 0xA07]), **settings))
    x_val = np.concatenate(val_x)  # (M, 3, T)
    if len(x_train) < 2 or len(x_val) == 0:
        raise ZeroharError(f"run {run.path}: {len(x_train)} training and {len(x_val)} validation triads are too few "
                           "to distil on")
    logger.info("distilling %s (width 1) into width %g on %d training triads (%d windows, %d augmented copies) and "
                "%d validation triads", teacher.variant, width, len(x_train), len(train_rows),
                augment_copies, len(x_val))

    t0 = time.perf_counter()
    t_train = embed_backbone(teacher, x_train, precision="fp32", progress=progress)  # (N, D) fp32, fast path
    t_val = embed_backbone(teacher, x_val, precision="fp32", progress=progress)  # (M, D)
    teacher_s = time.perf_counter() - t0
    inv_std = inverse_std(t_train)

    torch.manual_seed(seed)
    if init == "teacher":
        sample = _cap(np.arange(len(x_train)), 1, INIT_TRIADS, seed, 0x1A1)
        student = pruned_student(teacher, width, x_train[sample], t_train[sample])
    else:
        student = DistilledHARNet(teacher.variant, width, teacher.out_dim)
        with torch.no_grad():  # start at the teacher's mean feature: the first steps learn the variation
            student.proj.bias.copy_(torch.from_numpy(t_train.mean(0)))
    fit = _fit(student, x_train, t_train, x_val, t_val, inv_std, batch_size=min(batch_size, len(x_train)), lr=lr,
               max_steps=max_steps, seed=seed, progress=progress)

    teacher_params = sum(p.numel() for p in teacher.parameters())
    record = {
        "format": "zerohar-distilled",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "zerohar_version": __version__,
        "teacher": {"run": str(Path(run.path).resolve()), "identity": (model.metadata or {}).get("identity"),
                    "backbone": teacher.variant, "out_dim": teacher.out_dim, "n_parameters": teacher_params},
        "variant": student.variant, "width": student.width, "out_dim": student.out_dim,
        "init": {"from": init, "rank_triads": int(len(sample))} if init == "teacher" else {"from": init},
        "n_parameters": sum(p.numel() for p in fit.student.parameters()),
        "data": {**{k: v for k, v in dd.record.items() if k not in ("saw", "transductive_init")},
                 "train_windows": int(len(train_rows)), "val_windows": int(len(val_rows)),
                 "train_triads": int(len(x_train)), "val_triads": int(len(x_val)), "augment_copies": augment_copies,
                 "augment": {"max_deg": augment_deg, "scale": augment_scale, "intensity": augment_intensity,
                             "tempo": augment_tempo, "mix": augment_mix} if augment_copies else None,
                 "labels_read": False},
        "saw": merge_saw(run.meta.get("saw") or {}, dd.record.get("saw")),
        "transductive_init": list(run.meta.get("transductive_init") or []) + dd.record.get("transductive_init", []),
        "loss": "mean(((s - t) / teacher std) ** 2) + mean(1 - cos(s, t))",
        "optimizer": {"name": "AdamW", "lr": lr, "weight_decay": WEIGHT_DECAY, "batch_size": fit.batch_size},
        "budget": fit.budget, "steps": fit.steps, "stop_reason": fit.stop_reason,
        "val_cosine": fit.best_cosine, "best_step": fit.best_step, "val_cosine_start": fit.start_cosine,
        "history": fit.history,
        "seconds": {"teacher_features": round(teacher_s, 1), "train": round(fit.seconds, 1),
                    "wall": round(time.perf_counter() - t_start, 1)},
        "seed": seed,
    }
    save_distilled(run.path, fit.student, record, force=force)
    logger.info("distilled backbone of %s: validation cosine %.4f after %d steps (%s) -> %s", run.path,
                fit.best_cosine, fit.steps, fit.stop_reason, out)
    return out


def _augmented_triads(model, dd: DistillData, rows: np.ndarray, rng: np.random.Generator, *, deg: float,
                      scale: float, intensity: float, tempo: float, mix: float) -> np.ndarray:
    """The triads `(N, 3, T)` of one augmented copy of windows `rows`: tempo, intensity and mixup
    (:func:`zerohar.data.augment.broad_augment`; windows are mixed within one sensor layout), then rotation and
    amplitude scale (:func:`zerohar.data.augment.augment`)."""
    present = None if dd.present is None else dd.present[rows]
    groups = None if present is None else np.unique(present, axis=0, return_inverse=True)[1].reshape(-1)
    aug = augment(broad_augment(dd.X[rows], rng, intensity, tempo, mix, groups), rng, deg, scale)
    return window_triads(model, aug, np.arange(len(aug)), dd.kinds, present)


@dataclass
class Fit:
    """What :func:`_fit` returns: the best student and how training went."""

    student: DistilledHARNet
    steps: int
    stop_reason: str
    best_cosine: float
    best_step: int
    start_cosine: float
    history: list
    budget: dict
    batch_size: int
    seconds: float


def val_cosine(student: torch.nn.Module, x: np.ndarray, target: np.ndarray, batch: int = 512) -> float:
    """Mean cosine similarity of the student's features (eval mode, restored after) and the teacher's `target`."""
    was = student.training
    student.eval()
    cos = []
    try:
        with torch.inference_mode():
            for a in range(0, len(x), batch):
                s = student(torch.from_numpy(x[a : a + batch]))
                cos.append(F.cosine_similarity(s, torch.from_numpy(target[a : a + batch]), dim=1))
    finally:
        student.train(was)
    return float(torch.cat(cos).mean())


def _fit(student: DistilledHARNet, x: np.ndarray, t: np.ndarray, x_val: np.ndarray, t_val: np.ndarray,
         inv_std: torch.Tensor, *, batch_size: int, lr: float, max_steps: int | None, seed: int,
         progress: bool) -> Fit:
    """AdamW on :func:`distill_loss` for the adaptive budget (module docstring); the best validation's student."""
    n = len(x)
    spe = max(1, n // batch_size)
    budget = plan_budget(spe, TrainConfig(max_steps=max_steps, batch_size=batch_size, lr=lr))
    plan = Progress(budget)
    device = torch.device("cpu")
    bf16 = resolve_precision("auto", device) == "bf16"
    opt = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=WEIGHT_DECAY)
    start = val_cosine(student, x_val, t_val)
    best_state, best_step, best, history = copy.deepcopy(student.state_dict()), 0, start, []
    step, losses, reason = 0, [], None
    logger.info("distillation budget: %s", budget.describe())
    t0 = time.perf_counter()
    bar = tqdm(total=plan.end_step, desc="distilling", unit="step", disable=not progress)
    orders: dict[int, np.ndarray] = {}
    student.train()
    try:
        while reason is None:
            e, k = divmod(step, spe)
            if e not in orders:
                orders.clear()
                orders[e] = epoch_permutation(seed, e, n)
            idx = np.sort(orders[e][k * batch_size : (k + 1) * batch_size])
            xb, tb = torch.from_numpy(x[idx]), torch.from_numpy(t[idx])  # (B, 3, T), (B, D)
            for g in opt.param_groups:
                g["lr"] = lr * plan.lr_factor(step)
            opt.zero_grad(set_to_none=True)
            with autocast(bf16, device):
                s = student(xb)
            loss = distill_loss(s.float(), tb, inv_std)
            if not torch.isfinite(loss):
                raise ZeroharError(f"the distillation loss became {loss.item()} at step {step + 1}; lower the "
                                   "learning rate")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
            opt.step()
            step += 1
            losses.append(float(loss.detach()))
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
            if plan.should_validate(step):
                cos = val_cosine(student, x_val, t_val)
                history.append({"step": step, "lr": opt.param_groups[0]["lr"], "train_loss": float(np.mean(losses)),
                                "val_cosine": cos})
                logger.info("step %d: train loss %.4f, validation cosine %.4f", step, history[-1]["train_loss"], cos)
                losses = []
                plan.observe(step, cos)
                if cos > best:  # the best of the start and every validation (a start from the teacher is good)
                    best_state, best_step, best = copy.deepcopy(student.state_dict()), step, cos
                bar.total = plan.end_step
                bar.refresh()
            reason = plan.stop_reason(step)
    finally:
        bar.close()
    student.load_state_dict(best_state)
    return Fit(student.eval(), step, reason, best, best_step, start, history, budget.to_dict(), batch_size,
               time.perf_counter() - t0)
