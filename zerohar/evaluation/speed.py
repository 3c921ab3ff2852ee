"""Throughput and memory: every figure of BENCHMARK.md's speed list, the fast path next to the plain one.

Each figure runs in its own Python process (`python -m zerohar.evaluation.speed FIGURE`), so its peak resident memory
(`ru_maxrss` of that process, read with `os.wait4`) is its own and peaks of different figures never mix. Inside
the process, the optimised path and the plain fp32 eager run of the same model are timed alternately, a few
rounds each, and the best round of each is kept (on a shared machine the best round is the one least
disturbed by other processes). The peak memory of a figure is that of its whole process: both paths, plus
Python and torch (about 300-400 MB before any work).

Read against the machine: :func:`ceiling` (its own process, first) measures a 2048 x 2048 fp32 matrix product
on torch's threads, and divides its GFLOP/s by each backbone's GFLOP per window (:func:`backbone_gflop`,
harnet5 0.234) into the windows/s the machine allows; the inference figures give their share of it. `zerohar
speed` fails (exit 1, one line) when a default path is slower than plain by more than noise: a ratio below
:data:`MIN_RATIO` after `repeats` tries of that figure, the best try kept (:func:`run_speed`).

Figures (names as in BENCHMARK.md):

- `harnet5_inference`, `harnet10_inference`: the backbone alone, batches of 256 triads:
  :func:`zerohar.inference.embed.embed_backbone` (the default path: the :mod:`~zerohar.inference.plan` of this
  CPU) vs `backbone(x)` in fp32 under `torch.no_grad()`; the note gives the alternatives timed in the same
  rounds (fused fp32, on native-bf16 CPUs fused and fused-all bf16 and bf16 autocast, and with the `onnx` extra
  the ONNX Runtime backbone in fp32 and int8).
- `model_inference`: a ZeroHAR model on 2-sensor windows (accelerometer + gyroscope, as HAPT), all sensors of a
  window + label search in a 12-label index: :func:`zerohar.inference.embed.embed_windows` vs
  `model.encode_windows` in fp32, both followed by the same search. The default backbone path alone on the
  same triads gives the backbone-bound limit (its triads/s / 2 sensors) and the share of it reached.
- `model_inference_int8` (not in BENCHMARK.md; needs the `onnx` extra): the same with `precision="int8"`, the
  "less work per window" option (the backbone in int8 on ONNX Runtime, calibrated on 256 of the figure's
  triads: the weights are random, so speed is what it measures, not agreement) vs the same plain fp32 run.
- `model_inference_distilled` (not in BENCHMARK.md): the same with the distilled backbone
  (:class:`~zerohar.model.harnet.DistilledHARNet` at the default width of `zerohar distill`, random weights:
  speed does not depend on them) in place of the model's, on the default path, vs the plain fp32 run of the
  model with its own backbone: what `--distilled` buys per window. The note gives the default path of the model
  with its own backbone, timed in the same rounds.
- `classify_7day`: `zerohar classify` as a separate process on a synthetic 7-day 30 Hz wrist recording
  (:mod:`zerohar.data.synthetic`, 18,144,000 rows of CSV), end to end including reading the file and loading the
  model and text encoder; the baseline is the same command with `--precision fp32`. Each command runs twice
  (once with `--quick`) and the faster run is kept; the note adds CPU seconds, which other processes on a
  shared machine disturb less than wall time. The recording and a random-weight Stage II run directory are
  written once under `cache_dir()/speed` (about 640 MB; never part of the repository). Model weights are
  random: speed does not depend on them. `classify_7day_step5` (not in BENCHMARK.md) is the same with
  `--step 5`: windows that do not overlap, half the windows of the default 2.5 s step; `classify_7day_int8` (not in
  BENCHMARK.md; the `onnx` extra) the same with `--precision int8` (calibrated on the recording's own windows);
  `classify_7day_distilled` (not in BENCHMARK.md) the same with `--distilled` against the fp32 command without it.
  Its run needs a distilled backbone: a random-weight student saved in the format `zerohar distill` writes
  (:func:`random_distilled`); no distillation is needed for timing. `classify_7day_cascade` (not in
  BENCHMARK.md) the same with `--cascade` (the student, and the run's own backbone again on the windows its error
  could change): its cost depends on how many windows a *trained* student is unsure of, so it needs a trained
  run with a distilled backbone (`zerohar speed --run RUN`; every classify figure then uses that run); the note
  gives the share checked again (`info.json`).
- `stage1_train`, `stage2_train`: optimiser steps per second x batch size (64 windows) of the Stage I / Stage
  II objective (forward, contrastive loss, backward, gradient clipping, AdamW) with bf16 autocast vs fp32.
  Only the model step: data loading is not included. Without native bf16 the fast path is the plain one,
  timed once and reported as both.
- `index_10`, `index_1000`, `index_100000`: a LabelIndex of that many labels (random prototypes): its
  faiss search for 1,000 windows vs the same search in numpy (normalised queries, matrix product, the k best
  labels best first, their names), windows/s = 1,000 / query time; the note gives the build time. (A baseline
  without the normalisation and the ordering would time less work than the search does.)
- `pretrain_ssl_train`, `motif_distance_train`, `relcon_train`, `relcon_train_separate` (pretraining,
  `zerohar pretrain --method ssl | motif-distance | relcon`): windows/s of one optimiser step (the training
  loop's: forward under bf16 autocast or fp32, loss, backward, gradient clipping at 1, AdamW) on a batch of 64
  random windows of one accelerometer triad each, through the tasks' own `forward` / `loss` and models (random
  weights). The pretext transforms and the motif-distance augmentations are drawn once, outside the timing
  (data preparation). RelCon's step includes its ranking, as `make_batch` does it. `relcon_train` is the
  default `train.relcon_batching: grouped` (every window an anchor, its candidates the other 63 windows of the
  batch, one encoder pass); `relcon_train_separate` is RelCon's own batching
  (:func:`zerohar.train.relcon.rank_candidates`: `train.relcon_within_cands` within-subject windows per anchor
  plus the batch's other 63 anchors, and the encoder pass over the anchors and their 64 x K within-subject
  windows); both in anchors/s. `relcon_ranking` is the grouped ranking alone, in motif-distance pairs/s
  (anchor x candidate). Where the fast path is the plain fp32 one (no native bf16; RelCon's ranking always
  runs in fp32, outside autocast), it is timed once and reported as both.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from zerohar.config import Config
from zerohar.data.layout import AXES, Channel, SensorLayout
from zerohar.data.relcon_augment import relcon_augment
from zerohar.data.synthetic import write_csv, write_geneactiv
from zerohar.errors import ZeroharError
from zerohar.inference.embed import embed_backbone, embed_windows, plan_backbone
from zerohar.inference.index import LabelIndex, numpy_search_pays, search_speeds
from zerohar.inference.plan import inference_plan, machine_has_bf16_convolutions, machine_speeds
from zerohar.io import atomic_write_json, load_json
from zerohar.losses.contrastive import ContrastiveLoss
from zerohar.losses.pretext import pretext_batch
from zerohar.model.cpu import cpu_model
from zerohar.model.fused import FUSED_IMPLEMENTATIONS, FusedHARNet, check_windows
from zerohar.model.harnet import CircularConv1d, DistilledHARNet, Downsample, HARNet
from zerohar.model.motif import MotifConfig, MotifDistance
from zerohar.model.onnx_backend import onnx_available, onnx_backbone
from zerohar.model.precision import SPEED_FLAGS, cpu_flags, resolve_precision
from zerohar.model.pretrained import load_backbone
from zerohar.model.zerohar import ModelConfig, ZeroHARModel
from zerohar.paths import cache_dir
from zerohar.train.distill import DEFAULT_WIDTH
from zerohar.train.loop import _param_groups
from zerohar.train.motif_distance import MotifDistanceTask
from zerohar.train.pretrain_ssl import PretrainModel, PretrainTask
from zerohar.train.relcon import RelConModel, RelConTask, rank_batch, rank_candidates
from zerohar.train.runs import load_run, save_distilled

logger = logging.getLogger(__name__)

FIGURES = (
    "harnet5_inference", "harnet10_inference", "model_inference", "model_inference_int8",
    "model_inference_distilled", "classify_7day", "classify_7day_step5", "classify_7day_int8",
    "classify_7day_distilled", "classify_7day_cascade", "classify_7day_csv",
    "stage1_train", "stage2_train", "index_10", "index_1000", "index_100000",
    "pretrain_ssl_train", "motif_distance_train", "relcon_ranking", "relcon_train", "relcon_train_separate",
)
#: A default path slower than plain by more than this (fast / plain below it after `repeats` tries) fails the run:
#: best-of-rounds timings on a shared 2-core machine differ by up to about 3% between identical paths.
MIN_RATIO = 0.97
#: The note of a training figure where "auto" is fp32 (no native bf16, or bf16 measured no faster here).
FP32_TRAIN_NOTE = "fp32 (auto: no native bf16, or bf16 not measured faster here; the fast path is the plain one)"
#: The figures read against the matmul ceiling: backbone variant and triads per window of each.
CEILING_FIGURES = {"harnet5_inference": ("harnet5", 1), "harnet10_inference": ("harnet10", 1),
                   "model_inference": ("harnet5", 2), "model_inference_int8": ("harnet5", 2)}
#: Figures of the optional ONNX Runtime backbone (the `onnx` extra), left out unless it is installed: precision of
#: each.
ONNX_FIGURES = {"model_inference_int8": "int8", "classify_7day_int8": "int8"}
#: Figures that `--quick` leaves out unless named.
SLOW_FIGURES = ("classify_7day", "classify_7day_step5", "classify_7day_int8", "classify_7day_distilled",
                "classify_7day_cascade", "classify_7day_csv", "relcon_train_separate")
#: Pretraining figures: `train.pretrain_method` of each.
PRETRAIN_FIGURES = {"pretrain_ssl_train": "ssl", "motif_distance_train": "motif-distance",
                    "relcon_ranking": "relcon", "relcon_train": "relcon", "relcon_train_separate": "relcon"}
#: `--step` of the classify figures (None = classify's default, half a window).
CLASSIFY_STEPS = {"classify_7day": None, "classify_7day_step5": 5.0, "classify_7day_int8": None,
                  "classify_7day_distilled": None, "classify_7day_cascade": None, "classify_7day_csv": None}
#: The input of the classify figures: the week as a device file (GENEActiv .bin through actipy: calibration,
#: non-wear detection) into `--out-dir` study outputs, or as a CSV into a window table (the figure before the
#: device path existed).
CLASSIFY_INPUT = {"classify_7day": "device", "classify_7day_step5": "device", "classify_7day_int8": "device",
                  "classify_7day_distilled": "device", "classify_7day_cascade": "device",
                  "classify_7day_csv": "csv"}
#: `--precision` of the fast command of the classify figures (default "auto"; the baseline is always fp32).
CLASSIFY_PRECISION = {"classify_7day_int8": "int8"}
#: Classify figures whose fast command runs the run's distilled backbone (`--distilled`).
CLASSIFY_DISTILLED = ("classify_7day_distilled",)
#: Classify figures whose fast command runs `--cascade`; they need a trained run (`zerohar speed --run`).
CLASSIFY_CASCADE = ("classify_7day_cascade",)
CLASSIFY_LABELS = ("sleeping", "sitting", "standing", "walking", "running", "cycling", "household chores",
                   "lying down")
PLACEMENT, DEVICE = "left wrist", "smartwatch"


# ---------------------------------------------------------------------------------------------- timing
def _settings(quick: bool) -> dict:
    return {"rounds": 2, "min_s": 1.0} if quick else {"rounds": 3, "min_s": 3.0}


def _rate(fn: Callable[[], object], n: int, min_s: float) -> float:
    """Items per second of `fn` (which handles `n` items per call), over at least `min_s` seconds."""
    k, t0 = 0, time.perf_counter()
    while True:
        fn()
        k += 1
        dt = time.perf_counter() - t0
        if dt >= min_s:
            return k * n / dt


def compare(fast: Callable[[], object], plain: Callable[[], object], n: int, quick: bool,
            others: dict[str, Callable[[], object]] | None = None) -> tuple[float, float, dict[str, float]]:
    """Best items/s of `fast`, of `plain` (and of any `others`) over alternating rounds, each warmed up first.

    Returns:
        `(fast items/s, plain items/s, {other name: items/s})`.
    """
    s = _settings(quick)
    fns = {"fast": fast, "plain": plain, **(others or {})}
    for fn in fns.values():
        fn()
    best = dict.fromkeys(fns, 0.0)
    for _ in range(s["rounds"]):
        for name, fn in fns.items():
            best[name] = max(best[name], _rate(fn, n, s["min_s"]))
    return best.pop("fast"), best.pop("plain"), best


def _result(fast: float, plain: float, note: str = "") -> dict:
    return {"windows_per_s": round(fast, 1), "baseline_windows_per_s": round(plain, 1),
            "ratio": round(fast / plain, 2) if plain else None, "peak_rss_mb": None, "note": note}


# ---------------------------------------------------------------------------------------------- figures (in a worker)
def _backbone_figure(variant: str, quick: bool) -> dict:
    """The default backbone path (:func:`embed_backbone`, as planned for this CPU) vs the plain module in fp32;
    the note gives the alternatives the plan chose between (fused fp32, and on bf16 CPUs fused bf16, fused-all
    bf16 and autocast), timed in the same rounds."""
    torch.manual_seed(0)
    net = HARNet(variant).eval()
    x = torch.randn(256, 3, net.window)  # (256, 3, T)
    xn = x.numpy()
    plan = inference_plan("auto")

    def plain():
        with torch.no_grad():
            return net(x)

    def autocast():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            return net(x)

    others: dict[str, Callable[[], object]] = {}
    bf16_kind = machine_has_bf16_convolutions()  # the alternatives the plan timed
    for name in ("fp32 fused", "bf16 fused", "bf16 fused-all") if bf16_kind else ("fp32 fused",):
        prec, impl = name.split()
        fused = FusedHARNet(net, torch.float32 if prec == "fp32" else torch.bfloat16,
                            fp32_layers=FUSED_IMPLEMENTATIONS[impl])
        others[f"{impl} {prec}"] = lambda fused=fused: _no_grad(fused, x)
    if bf16_kind:
        others["plain under bf16 autocast"] = autocast
    if onnx_available():  # the optional ONNX Runtime backbone (the `onnx` extra), fp32 and int8
        for prec in ("fp32", "int8"):
            run = onnx_backbone(net, prec, check_windows(256, net.window).numpy() if prec == "int8" else None)
            others[f"onnx {prec}"] = lambda run=run: _no_grad(run, x)
    fast, base, other = compare(lambda: embed_backbone(net, xn, batch_size=256), plain, 256, quick, others)
    note = f"default: {plan.describe()} ({plan.reason}); " + ", ".join(f"{k} {v:.0f}/s" for k, v in other.items())
    return _result(fast, base, note)


def _no_grad(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return module(x)


def _hapt_like(model_cfg=None):
    """A random ZeroHAR model, 2-sensor (acc + gyro) context and kinds, like HAPT's layout."""
    torch.manual_seed(0)
    model = ZeroHARModel(model_cfg or ModelConfig())
    ctx = torch.randn(2, model.cfg.d_text, generator=torch.Generator().manual_seed(1))  # (S, d_text)
    return model, ctx, ["acc", "gyro"]


def _model_figure(quick: bool, precision: str = "auto", distilled: bool = False) -> dict:
    """The default path (:func:`embed_windows` + label search) vs `encode_windows` in fp32 + the same search; the
    default backbone path alone on the same triads gives the backbone-bound limit (its windows/s / 2 sensors).
    With `precision="int8"` the "fast" path is the int8 option instead (`model_inference_int8`); with `distilled`
    the default path of the model with a random distilled backbone of the default width
    (`model_inference_distilled`), against the same plain run of the model with its own."""
    if precision == "int8" and not onnx_available():
        raise ZeroharError("model_inference_int8 needs onnxruntime: pip install 'zerohar[onnx]'")
    model, ctx, kinds = _hapt_like()
    model.eval()
    runner = model
    if distilled:  # random weights, BatchNorm at its initial statistics: speed does not depend on them
        student = DistilledHARNet(model.cfg.backbone, DEFAULT_WIDTH, model.backbone.out_dim).eval()
        runner = model.with_backbone(student)
    rng = np.random.default_rng(0)
    index = LabelIndex.from_embeddings(
        {f"label {i}": rng.normal(size=(10, model.cfg.embed_dim)).astype(np.float32) for i in range(12)}
    )
    n, sensors = 512, len(kinds)
    X = rng.normal(size=(n, 3 * sensors, model.cfg.window)).astype(np.float32)  # (n, C, T)
    xt = torch.from_numpy(X)
    ctx_np = ctx.numpy()
    plan = inference_plan(precision)
    with torch.no_grad():
        triads = model._triads(xt, kinds).reshape(n * sensors, 3, -1)  # (n S, 3, T): the backbone's input
    cal = triads[:256].numpy() if precision == "int8" else None  # random weights: speed does not need real data
    backbone, autocast = plan_backbone(runner.backbone, plan, torch.device("cpu"), cal)

    def plain():
        with torch.no_grad():
            z = torch.cat([model.encode_windows(xt[a : a + 256], ctx, kinds=kinds) for a in range(0, n, 256)])
        return index.search(z.numpy(), k=3)

    def default(m):
        return index.search(embed_windows(m, X, ctx_np, kinds=kinds, batch_size=512, precision=precision), k=3)

    def backbone_only():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            return backbone(triads)

    others = {"backbone": backbone_only, **({"own backbone": lambda: default(model)} if distilled else {})}
    f, b, other = compare(lambda: default(runner), plain, n, quick, others)
    bound = other["backbone"]  # windows/s the backbone alone allows: one call is the n * S triads of n windows
    what = "default" if precision == "auto" else f"--precision {precision}"
    if distilled:
        what = (f"--distilled (width {DEFAULT_WIDTH:g}, random weights), {what}; the model's own backbone on the "
                f"default path {other['own backbone']:.0f} windows/s")
    res = _result(f, b, f"{what}: {plan.describe()} ({plan.reason}); {n} windows of {sensors} sensors (acc + "
                        f"gyro) per call, then the top 3 of 12 labels; backbone-bound limit {bound:.0f} windows/s "
                        f"(backbone {bound * sensors:.0f} triads/s / {sensors} sensors): fast at "
                        f"{f / bound:.0%}, plain at {b / bound:.0%}")
    res["backbone_bound_windows_per_s"] = round(bound, 1)
    res["share_of_bound"] = round(f / bound, 3)
    return res


def _train_figure(stage: str, quick: bool) -> dict:
    batch = 64
    bf16 = resolve_precision("auto") == "bf16"
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 6, 150, generator=g)  # (B, C, T)
    axis_text = torch.randn(6, 384, generator=g)  # one description per channel
    label_desc = torch.randn(8, 10, 384, generator=g)  # (L, K, d_text)
    y = torch.randint(0, 8, (batch,), generator=g)
    loss_fn = ContrastiveLoss()

    def make_step(use_bf16: bool):
        model, ctx, kinds = _hapt_like()
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step():
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
                if stage == "stage1":
                    feats = model.encode_channels(x, kinds=kinds)  # (B, C, E)
                    text = model.encode_text(axis_text)  # (C, E)
                else:
                    feats = model.encode_windows(x, ctx, kinds=kinds)  # (B, E)
                    text = model.label_prototypes(label_desc)  # (L, E)
            if stage == "stage1":
                loss = loss_fn(feats.float().reshape(-1, feats.shape[-1]), text.float(),
                               torch.arange(6).repeat(batch), model.logit_scale)
            else:
                loss = loss_fn(feats.float(), text.float(), y, model.logit_scale)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()

        return step

    f, p = _compare_same(make_step(bf16), make_step(False), batch, quick, not bf16)
    what = "channel embeddings" if stage == "stage1" else "window embeddings + label prototypes"
    return _result(f, p, f"{'bf16 autocast' if bf16 else FP32_TRAIN_NOTE}; "
                         f"batch {batch} windows of "
                         f"2 sensors, {what}, AdamW step; model step only, no data loading")


def _index_figure(n_labels: int, quick: bool) -> dict:
    rng = np.random.default_rng(0)
    dim, k_desc = 256, (10 if n_labels <= 1000 else 1)
    vecs = rng.normal(size=(n_labels, k_desc, dim)).astype(np.float32)
    t0 = time.perf_counter()
    index = LabelIndex.from_embeddings({f"label {i}": vecs[i] for i in range(n_labels)})
    build_s = time.perf_counter() - t0
    del vecs
    q = rng.normal(size=(1000, dim)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    k = min(5, n_labels)
    protos = index.prototypes

    def plain():  # what `search` returns, in numpy: normalised queries, the k best labels best first
        x = q / np.linalg.norm(q, axis=1, keepdims=True)
        sims = x @ protos.T  # (1000, L)
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < n_labels else np.argsort(-sims, axis=1)
        scores = np.take_along_axis(sims, top, axis=1)  # (1000, k)
        order = np.argsort(-scores, axis=1)
        return np.take_along_axis(scores, order, axis=1), names[np.take_along_axis(top, order, axis=1)]

    names = np.asarray(index.labels, dtype=str)
    f, p, _ = compare(lambda: index.search(q, k=k), plain, 1000, quick)
    impl = "numpy" if numpy_search_pays(n_labels) else "faiss"
    return _result(f, p, f"search in {impl} (measured faster here); "
                         f"build {build_s:.2f} s ({k_desc} description(s) per label); query of 1,000 windows "
                         f"{1000 / f:.4f} s (top-{k}); baseline = the same search in numpy (normalise, matrix "
                         "product, top-k best first, label names)")


def _bare_task(cls, **attrs):
    """A task object without data (no `__init__`), for calling its `forward` / `loss` on synthetic batches."""
    task = cls.__new__(cls)
    task.cfg = Config(stage="pretrain")
    for k, v in attrs.items():
        setattr(task, k, v)
    return task


def _compare_same(fast: Callable[[], object], plain: Callable[[], object], n: int, quick: bool,
                  same: bool) -> tuple[float, float]:
    """:func:`compare`, or, when `same` (the fast path is the plain one), one timing reported as both."""
    if not same:
        return compare(fast, plain, n, quick)[:2]
    s = _settings(quick)
    plain()
    rate = max(_rate(plain, n, s["min_s"]) for _ in range(s["rounds"]))
    return rate, rate


def _pretrain_figure(name: str, quick: bool, batch: int = 64, within: int | None = None) -> dict:
    """One of the pretraining figures (see the module docstring); `batch` and `within` shrink it for tests."""
    t = Config(stage="pretrain").train
    k = t.relcon_within_cands if within is None else within
    bf16 = resolve_precision("auto") == "bf16"
    prec = "bf16 autocast" if bf16 else FP32_TRAIN_NOTE
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(batch, 3, 150, generator=g) * 0.5).clamp(-3, 3)  # (B, 3, T): one accelerometer triad each
    cpu = torch.device("cpu")
    torch.manual_seed(0)
    motif = MotifDistance(MotifConfig(attention=t.motif_attention)).eval().requires_grad_(False)  # frozen

    def rank_grouped():
        return rank_batch(motif, x, cpu)

    if name == "relcon_ranking":
        pairs = batch * (batch - 1)
        f, _ = _compare_same(rank_grouped, rank_grouped, pairs, quick, True)
        res = _result(f, f, f"motif-distance pairs/s of RelCon's grouped ranking (batch {batch}: every window "
                            f"against the other {batch - 1}) = {pairs} pairs per step, {pairs / f:.2f} s per step, "
                            f"{f / (batch - 1):.1f} anchors/s; fp32 under inference_mode (the ranking runs outside "
                            f"autocast); motif attention {t.motif_attention}")
        res["unit"] = "pairs/s"
        return res

    if name == "pretrain_ssl_train":
        xt, labels = pretext_batch(x, torch.Generator().manual_seed(1))
        batch_d = {"x": xt, "labels": labels}
        task = _bare_task(PretrainTask)
        new_model = lambda: PretrainModel(load_backbone(None, "harnet5"))  # noqa: E731
        what = "SSL pretext multi-task (arrow of time, permutation, time warp) on harnet5"
    elif name == "motif_distance_train":
        batch_d = {"x": x, "x_aug": torch.from_numpy(relcon_augment(x.numpy(), np.random.default_rng(1)))}
        task = _bare_task(MotifDistanceTask)
        new_model = lambda: MotifDistance()  # noqa: E731
        what = "motif distance network (window rebuilt from an augmented copy)"
    elif name == "relcon_train":
        task = _bare_task(RelConTask, k=t.relcon_group - 1, motif=motif)
        new_model = lambda: RelConModel(load_backbone(None, "harnet5"))  # noqa: E731
        what = (f"RelCon on harnet5, grouped batching: ranking of every window against the other {batch - 1} "
                f"included, one encoder pass over the {batch} windows (each an anchor)")
    elif name == "relcon_train_separate":
        xw = (torch.randn(batch, k, 3, 150, generator=g) * 0.5).clamp(-3, 3)
        task = _bare_task(RelConTask, k=k, motif=motif)
        new_model = lambda: RelConModel(load_backbone(None, "harnet5"))  # noqa: E731
        what = (f"RelCon on harnet5: ranking of {batch - 1 + k} candidates per anchor ({k} within-subject + "
                f"{batch - 1} other anchors) included, encoder pass over the {batch} anchors and their {batch * k} "
                "within-subject windows")
    else:
        raise ZeroharError(f"unknown pretraining figure {name!r}")

    def make_step(use_bf16: bool):
        torch.manual_seed(0)
        model = new_model().train()
        opt = torch.optim.AdamW(_param_groups(model, t.lr, t.weight_decay, t.backbone_lr_mult), lr=t.lr)

        def step():
            if name == "relcon_train":
                b = {"x": x, "dist": rank_grouped()}
            elif name == "relcon_train_separate":
                b = {"x": x, "x_within": xw.flatten(0, 1), "dist": rank_candidates(motif, x, xw, cpu)}
            else:
                b = batch_d
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
                out = task.forward(model, b)
            loss = task.loss(out, b)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
            opt.step()

        return step

    f, p = _compare_same(make_step(bf16), make_step(False), batch, quick, not bf16)
    return _result(f, p, f"{prec}; batch {batch} windows of one accelerometer triad, {what}; AdamW step; "
                         "model step only, no data loading")


# ---------------------------------------------------------------------------------------------- ceiling
def backbone_gflop(variant: str) -> float:
    """GFLOP of one window through HARNet `variant`: 2 per multiply-add of every convolution (harnet5: 0.234).

    Counted from a forward pass with hooks on the convolutions and the downsampling filters, so it follows the
    architecture as built.
    """
    net = HARNet(variant).eval()
    flops = 0

    def count(mod, _inputs, out):
        nonlocal flops
        w = mod.weight if isinstance(mod, CircularConv1d) else mod.kernel  # (C_out, C_in / groups, K)
        flops += 2 * out.numel() * w.shape[1] * w.shape[-1]

    hooks = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, (CircularConv1d, Downsample))]
    try:
        with torch.no_grad():
            net(torch.zeros(1, 3, net.window))
    finally:
        for h in hooks:
            h.remove()
    return flops / 1e9


def matmul_gflops(quick: bool = False, n: int = 2048) -> float:
    """GFLOP/s of an `n` x `n` fp32 matrix product on torch's threads: the best of many short rounds (the least
    disturbed on a shared machine)."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    a @ b
    rate = max(_rate(lambda: a @ b, 1, 0.25) for _ in range(4 if quick else 12))
    return rate * 2 * n**3 / 1e9


def ceiling(quick: bool = False) -> dict:
    """The machine's ceiling: matmul GFLOP/s and the backbone windows/s it allows (GFLOP/s / GFLOP per window)."""
    gflops = matmul_gflops(quick)
    per = {v: backbone_gflop(v) for v in ("harnet5", "harnet10")}
    return {"matmul_gflops": round(gflops, 1), "threads": torch.get_num_threads(),
            "backbones": {v: {"gflop_per_window": round(g, 4), "windows_per_s": round(gflops / g, 1)}
                          for v, g in per.items()}}


def ceiling_line(c: dict) -> str:
    """`Ceiling: 2048x2048 fp32 matmul 170 GFLOP/s on 2 threads -> harnet5 (0.234 GFLOP/window) <= 727 windows/s`."""
    parts = [f"{v} ({b['gflop_per_window']:.3f} GFLOP/window) <= {b['windows_per_s']:,.0f} windows/s"
             for v, b in c["backbones"].items()]
    return f"Ceiling: 2048x2048 fp32 matmul {c['matmul_gflops']:.0f} GFLOP/s on {c['threads']} threads -> " + \
        ", ".join(parts)


def add_ceiling_shares(results: dict[str, dict], c: dict) -> None:
    """Give every figure of :data:`CEILING_FIGURES` its ceiling (windows/s) and the share of it that it reached."""
    for name, (variant, triads) in CEILING_FIGURES.items():
        r = results.get(name)
        if r is None or "error" in r:
            continue
        limit = c["backbones"][variant]["windows_per_s"] / triads
        r["ceiling_windows_per_s"] = round(limit, 1)
        r["ceiling_share"] = round(r["windows_per_s"] / limit, 3)


def slow_default_paths(results: dict[str, dict], min_ratio: float = MIN_RATIO) -> dict[str, float]:
    """`{figure: ratio}` of the figures whose default path is slower than plain by more than noise."""
    return {name: r["ratio"] for name, r in results.items()
            if "error" not in r and r.get("ratio") is not None and r["ratio"] < min_ratio}


def run_figure(name: str, quick: bool = False) -> dict:
    """One figure in this process (see the module docstring); `classify_7day` runs via :func:`run_classify`."""
    if name == "harnet5_inference":
        return _backbone_figure("harnet5", quick)
    if name == "harnet10_inference":
        return _backbone_figure("harnet10", quick)
    if name == "model_inference":
        return _model_figure(quick)
    if name == "model_inference_int8":
        return _model_figure(quick, "int8")
    if name == "model_inference_distilled":
        return _model_figure(quick, distilled=True)
    if name in ("stage1_train", "stage2_train"):
        return _train_figure(name.split("_")[0], quick)
    if name.startswith("index_"):
        return _index_figure(int(name.split("_")[1]), quick)
    if name in PRETRAIN_FIGURES:
        return _pretrain_figure(name, quick)
    if name == "ceiling":
        return ceiling(quick)
    raise ZeroharError(f"unknown speed figure {name!r}: expected one of {', '.join(FIGURES)}")


# ---------------------------------------------------------------------------------------------- subprocesses
def run_child(cmd: Sequence[str], env: dict | None = None) -> tuple[str, float, float, int, str, float]:
    """Run `cmd`; return (stdout, wall s, peak RSS MB of that process, exit status, stderr tail, CPU s).

    CPU seconds (user + system) are less sensitive than wall time to other processes on a shared machine.

    The peak comes from `os.wait4` for this child alone (its `ru_maxrss`), not from RUSAGE_CHILDREN, which
    would be the maximum over every child so far.
    """
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=err, env=env)
        out = p.stdout.read().decode("utf-8", "replace")
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        tail = err.read().decode("utf-8", "replace")[-2000:]
    rss_mb = usage.ru_maxrss / 1024 if sys.platform != "darwin" else usage.ru_maxrss / 2**20
    return out, wall, rss_mb, p.returncode, tail, usage.ru_utime + usage.ru_stime


def _worker(name: str, quick: bool) -> dict:
    cmd = [sys.executable, "-m", "zerohar.evaluation.speed", name] + (["--quick"] if quick else [])
    out, _, rss, code, err, _ = run_child(cmd)
    if code != 0:
        raise ZeroharError(f"speed figure {name} failed (exit {code}): {err.strip().splitlines()[-1] if err else ''}")
    res = json.loads(out.strip().splitlines()[-1])
    if name != "ceiling":
        res["peak_rss_mb"] = round(rss, 1)
    return res


def measure_ceiling(quick: bool = False) -> dict:
    """:func:`ceiling` in its own process, like every figure."""
    return _worker("ceiling", quick)


# ---------------------------------------------------------------------------------------------- classify_7day
def speed_dir() -> Path:
    """Where the speed benchmark keeps its synthetic recording and model: `cache_dir()/speed`."""
    d = cache_dir() / "speed"
    d.mkdir(parents=True, exist_ok=True)
    return d


def synthetic_recording(days: float = 7.0, path: str | Path | None = None, progress: bool = False,
                        kind: str = "csv") -> Path:
    """The synthetic wrist recording, as CSV (`kind="csv"`, about 640 MB for 7 days) or as a GENEActiv `.bin`
    device file (`"device"`, about 230 MB); written once, then reused."""
    suffix = {"csv": ".csv", "device": ".bin"}[kind]
    path = Path(path) if path else speed_dir() / f"synthetic-wrist-{days:g}d-seed0{suffix}"
    if not path.exists():
        logger.info("writing the synthetic %g-day recording to %s (once)", days, path)
        (write_csv if kind == "csv" else write_geneactiv)(path, days=days, seed=0, progress=progress)
    return path


def random_run(path: str | Path | None = None) -> Path:
    """A finished Stage II run directory with random weights and a wrist accelerometer layout (for timing only)."""
    d = Path(path) if path else speed_dir() / "random-stage2-run"
    if (d / "metrics.json").exists():
        try:
            load_run(d, load_model=False)
            return d
        except ZeroharError:
            pass

    torch.manual_seed(0)
    layout = SensorLayout.from_channels(
        [Channel("acc", a, PLACEMENT, DEVICE, "g", f"acc_{a}") for a in AXES], "wrist", "speed benchmark"
    )
    meta = {
        "stage": "stage2", "dataset": None, "fold": None, "classes": [], "seen": [], "unseen": [],
        "layout": layout.to_dict(), "window_s": 5.0, "text_encoder": None, "text_encoder_name": None,
        "subjects": {}, "note": "random weights: for zerohar speed only",
    }
    ZeroHARModel(ModelConfig()).save_pretrained(d, extra=meta)
    Config(stage="stage2").save(d / "config.yaml")
    atomic_write_json(d / "metrics.json", {"finished": True, "note": "random weights: for zerohar speed only"})
    load_run(d)  # fails here, not in the timed run, if the fixture no longer matches the run format
    return d


def random_distilled(run_dir: Path) -> Path:
    """`run_dir/distilled/` with a random-weight student of the default width, in the format `zerohar distill`
    writes (:func:`zerohar.train.runs.save_distilled`; for timing only: no distillation is needed), once."""
    try:
        load_run(run_dir, distilled=True)
        return run_dir
    except ZeroharError:
        pass
    run = load_run(run_dir)
    torch.manual_seed(0)
    student = DistilledHARNet(run.model.cfg.backbone, DEFAULT_WIDTH, run.model.backbone.out_dim).eval()
    record = {"teacher": {"run": str(run_dir), "identity": run.model.metadata.get("identity"),
                          "backbone": run.model.cfg.backbone}, "width": DEFAULT_WIDTH, "variant": student.variant,
              "out_dim": student.out_dim, "note": "random weights: for zerohar speed only"}
    save_distilled(run_dir, student, record, force=True)
    load_run(run_dir, distilled=True)  # fails here, not in the timed run, if the format no longer matches
    return run_dir


def run_classify(csv_path: Path, run_dir: Path, precision: str, out: Path,
                 step: float | None = None, distilled: bool = False, cascade: bool = False
                 ) -> tuple[int, float, float, float]:
    """`zerohar classify` in a subprocess: (windows, wall seconds, peak RSS MB, CPU seconds). An `out` without a
    suffix is an `--out-dir` (the study outputs: window, minute and day tables, info.json and the figure)."""
    dest = ["--out", str(out)] if out.suffix else ["--out-dir", str(out)]
    cmd = [sys.executable, "-m", "zerohar.cli", "classify", "--run", str(run_dir), "--input", str(csv_path),
           "--labels", *CLASSIFY_LABELS, "--placement", PLACEMENT, "--device", DEVICE, *dest,
           "--precision", precision, "--force", "--no-progress"] + ([] if step is None else ["--step", f"{step:g}"])
    cmd += ["--distilled"] if distilled else []
    cmd += ["--cascade"] if cascade else []
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    stdout, wall, rss, code, err, cpu = run_child(cmd, env)
    if code != 0:
        raise ZeroharError(f"zerohar classify failed (exit {code}): {err.strip()[-400:]}")
    first = stdout.strip().splitlines()[0] if stdout.strip() else ""
    try:
        n = int(first.split()[0])
    except (IndexError, ValueError):
        raise ZeroharError(f"zerohar classify printed {first!r}; expected the number of windows first") from None
    return n, wall, rss, cpu


def classify_figure(quick: bool, days: float = 7.0, progress: bool = False, step: float | None = None,
                    kind: str = "device", fast: str = "auto", distilled: bool = False, cascade: bool = False,
                    run: str | Path | None = None) -> dict:
    """`classify_7day`: the classify command end to end, fast path vs `--precision fp32` (each run once in
    quick mode, twice otherwise; best of each). Where `auto` is fp32 (no native bf16) the two are one command,
    run once per round and reported as both.

    Args:
        kind: "device": the week as a GENEActiv `.bin` into `--out-dir` (reading through actipy, calibration,
            non-wear detection, inference, the minute and day tables, info.json and the timeline figure);
            "csv": the week as CSV into a window table.
        fast: `--precision` of the fast command ("auto", or "int8": `classify_7day_int8`, which calibrates on
            the recording's own first windows, included in its time).
        distilled: the fast command also runs `--distilled` (`classify_7day_distilled`; the run gets a random
            distilled backbone, :func:`random_distilled`); the baseline is `--precision fp32` without it.
        cascade: the fast command runs `--cascade` (`classify_7day_cascade`); needs `run`.
        run: a trained Stage II run to time instead of random weights (with a distilled backbone for `distilled`
            and `cascade`).
    """
    if cascade and run is None:
        raise ZeroharError("classify_7day_cascade needs a trained run with a distilled backbone (zerohar speed --run "
                           "RUN): how many windows the cascade checks again depends on trained weights")
    if run is not None:
        load_run(run, distilled=distilled or cascade)  # a missing student: said before the week
        run_dir = Path(run)
    else:
        run_dir = random_distilled(random_run()) if distilled else random_run()
    rec_path = synthetic_recording(days, progress=progress, kind=kind)
    rounds = 1 if quick else 2
    if fast == "int8" and not onnx_available():
        raise ZeroharError("classify_7day_int8 needs onnxruntime: pip install 'zerohar[onnx]'")
    flags = {"distilled": distilled, "cascade": cascade}  # of the fast command
    same = fast == "auto" and resolve_precision("auto") == "fp32" and not any(flags.values())
    commands = {"fp32": ("fp32", {})} if same else {"fp32": ("fp32", {}), "fast": (fast, flags)}
    checked = None
    best: dict[str, tuple] = {}
    with tempfile.TemporaryDirectory(dir=speed_dir()) as tmp:
        for _ in range(rounds):
            for key, (prec, opts) in commands.items():
                out = Path(tmp) / (f"study-{key}" if kind == "device" else f"labels-{key}.csv")
                got = run_classify(rec_path, run_dir, prec, out, step, **opts)
                if opts.get("cascade"):  # the share the run's own backbone checked again
                    checked = load_json(next(out.glob("*/info.json")), "classify info")["cascade"]["checked_share"]
                logger.info("classify --precision %s%s: %d windows in %.1f s (%.1f CPU s), peak %.0f MB", prec,
                            "".join(f" --{k}" for k, on in opts.items() if on), got[0], got[1], got[3], got[2])
                if key not in best or got[1] < best[key][1]:
                    best[key] = got
        agree = None if len(commands) == 1 or run is None else same_labels(
            *(Path(tmp) / (f"study-{key}" if kind == "device" else f"labels-{key}.csv") for key in ("fast", "fp32")))
    best.setdefault("fast", best["fp32"])
    (n, wall, rss, cpu), (_, wall0, rss0, cpu0) = best["fast"], best["fp32"]
    precisions = tuple(commands)
    what = (f"{days:g}-day GENEActiv .bin ({os.path.getsize(rec_path) / 1e6:.0f} MB) into --out-dir"
            if kind == "device" else f"{days:g}-day CSV ({os.path.getsize(rec_path) / 1e6:.0f} MB) into --out")
    res = _result(n / wall, n / wall0,
                  f"{what}, {n} windows (step {'2.5' if step is None else f'{step:g}'} s, --precision {fast}"
                  f"{' --distilled' if distilled else ''}{' --cascade' if cascade else ''}"
                  f"{', random weights' if run is None else f', run {run}'}"
                  f"{'' if checked is None else f', {checked:.1%} of the windows checked again'}"
                  f"{'' if agree is None else f', {agree:.2%} of its labels the same as fp32'}); "
                  f"wall {wall:.1f} s, "
                  f"CPU {cpu:.0f} s (fp32: wall {wall0:.1f} s, CPU {cpu0:.0f} s, peak {rss0:.0f} MB); includes "
                  "process start, reading, model and text encoder loading"
                  + ("; auto is fp32 on this CPU: one command, timed once a round" if len(precisions) == 1 else ""))
    res["peak_rss_mb"] = round(rss, 1)
    res["seconds"] = round(wall, 1)
    if checked is not None:
        res["checked_share"] = checked
    if agree is not None:
        res["same_labels_as_fp32"] = agree
    return res


def same_labels(out: Path, ref: Path) -> float:
    """The share of windows with the same `label` in two classify outputs (window tables, or `--out-dir` folders
    holding one recording's `windows.csv`), row by row."""
    def labels(p: Path) -> list[str]:
        table = p if p.suffix else next(p.glob("*/windows.csv"))
        with open(table, newline="", encoding="utf-8") as f:
            return [row["label"] for row in csv.DictReader(f)]

    a, b = labels(out), labels(ref)
    if len(a) != len(b) or not a:
        raise ZeroharError(f"{out} and {ref} hold {len(a)} and {len(b)} windows; expected the same windows")
    return float(np.mean(np.asarray(a, dtype=object) == np.asarray(b, dtype=object)))


# ---------------------------------------------------------------------------------------------- driver
def run_speed(
    figures: Sequence[str] | None = None, *, quick: bool = False, days: float = 7.0, progress: bool = False,
    repeats: int = 1, min_ratio: float = MIN_RATIO, run: str | Path | None = None,
) -> dict[str, dict]:
    """Measure `figures` (default: all; with `quick`, all but the slow ones; :data:`ONNX_FIGURES` only where
    onnxruntime is installed, :data:`CLASSIFY_CASCADE` only with a `run`), each in its own process. `run`: a
    trained Stage II run the classify figures time instead of random weights.

    A figure whose default path measures slower than plain (ratio below `min_ratio`) is measured again, up to
    `repeats` times in all, and the try with the best ratio is kept: one disturbed round on a shared machine
    does not fail the run, a path that is really slower does (:func:`slow_default_paths`).

    Returns:
        `{figure: {"windows_per_s", "baseline_windows_per_s", "ratio", "peak_rss_mb", "note"}}`; a figure that
        failed has `"error"` instead of numbers.
    """
    if figures:
        unknown = [f for f in figures if f not in FIGURES]
        if unknown:
            raise ZeroharError(f"unknown speed figures {unknown}: expected some of {', '.join(FIGURES)}")
        names = list(figures)
    else:
        names = [f for f in FIGURES
                 if not (quick and f in SLOW_FIGURES) and (f not in ONNX_FIGURES or onnx_available())
                 and (f not in CLASSIFY_CASCADE or run is not None)]
    # The plan's one-off timing of this CPU, measured afresh: every figure's worker reads this one (the default
    # path of each figure is what classify would run now, not what an older or disturbed timing chose).
    machine_speeds(refresh=True)
    search_speeds(refresh=True)
    results: dict[str, dict] = {}
    for name in names:
        for attempt in range(1, max(1, repeats) + 1):
            logger.info("measuring %s%s", name, f" (try {attempt} of {repeats})" if attempt > 1 else "")
            try:
                got = (classify_figure(quick, days, progress, step=CLASSIFY_STEPS[name], kind=CLASSIFY_INPUT[name],
                                       fast=CLASSIFY_PRECISION.get(name, "auto"),
                                       distilled=name in CLASSIFY_DISTILLED, cascade=name in CLASSIFY_CASCADE,
                                       run=run)
                       if name in CLASSIFY_STEPS else _worker(name, quick))
            except ZeroharError as e:
                logger.error("%s", e)
                got = {"error": str(e)}
            if attempt > 1:
                got["tries"] = attempt
            prev = results.get(name)
            if prev is None or "error" in prev or (got.get("ratio") or 0) > (prev.get("ratio") or 0):
                results[name] = got
            if not slow_default_paths({name: results[name]}, min_ratio):
                break
        results[name]["cpu_flags"] = cpu_flags()  # every figure says what it ran on
        results[name]["precision"] = ONNX_FIGURES.get(name) or resolve_precision("auto")
    return results


def machine_summary() -> str:
    """CPU, threads, precision and load: what the numbers depend on."""
    model = cpu_model() or "unknown CPU"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    flags = " ".join(cpu_flags()) or "none of " + "/".join(SPEED_FLAGS)
    plan = inference_plan("auto")
    return (f"{model}, {os.cpu_count()} CPUs (flags: {flags}), torch {torch.__version__} with "
            f"{torch.get_num_threads()} threads, fast path precision {resolve_precision('auto')} "
            f"({plan.describe()}; {plan.reason}), load average {load:.2f}")


def format_table(results: dict[str, dict]) -> str:
    """A Markdown table of the results."""
    lines = ["| figure | fast (windows/s) | plain fp32 (windows/s) | ratio | of ceiling | peak RSS (MB) | note |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"| {name} | failed | | | | | {r['error']} |")
            continue
        ratio = f"{r['ratio']:.2f}x" if r.get("ratio") else ""
        rss = f"{r['peak_rss_mb']:.0f}" if r.get("peak_rss_mb") is not None else ""
        share = (f"{r['ceiling_share']:.0%} of {r['ceiling_windows_per_s']:,.0f}" if r.get("ceiling_share") is not None
                 else "")
        lines.append(f"| {name} | {r['windows_per_s']:,.0f} | {r['baseline_windows_per_s']:,.0f} | {ratio} | {share} "
                     f"| {rss} | {r.get('note', '')} |")
    return "\n".join(lines)


def write_json(results: dict, path: str | Path, force: bool = False) -> Path:
    """Write the results as JSON atomically; an existing file needs `force`."""
    return atomic_write_json(path, results, force=force)


def main(argv: Sequence[str] | None = None) -> int:
    """Worker entry point: `python -m zerohar.evaluation.speed FIGURE [--quick]` prints the figure as one JSON line."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m zerohar.evaluation.speed", description="measure one speed figure")
    p.add_argument("figure", choices=[f for f in FIGURES if f not in CLASSIFY_STEPS] + ["ceiling"])
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(run_figure(args.figure, args.quick)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
