"""One training loop for every stage: SSL pretraining, Stage I, Stage II (and its supervised upper bound).

The loop is stage-agnostic; what a stage trains on, its loss and its validation metric live in
:mod:`zerohar.train.registry` (one module per stage). The loop gives every stage the same behaviour:

- a length that adapts to the data (:mod:`zerohar.train.budget`): optimiser steps, validation every
  `eval_every` steps, early stopping on the validation metric (patience, minimum and maximum steps) with a
  warm-up / stable / decay schedule, or exactly `train.epochs` passes; `metrics.json` says why a run stopped
  (`stop_reason`: plateau, max_steps, time_limit, epochs);
- AdamW (no weight decay on biases, norms and the logit scale), gradient-norm clipping, bf16 autocast on CPUs
  with native bf16 (`precision: auto`);
- determinism: the shuffling of epoch `e` is a permutation drawn from `(seed, e)`, every random choice of a
  step from `(seed, e, step)`, and torch's RNG is reseeded at each validation point, so a run killed between
  two validations and resumed from its last checkpoint ends exactly where an uninterrupted run ends;
- model selection on held-out subjects of the seen classes (never unseen classes, never training loss): the
  best validation's model is written as `model.safetensors` + `model.json`;
- `state.pt` after every validation (atomic), `metrics.json` (one `history` row per validation), `log.txt`,
  a tqdm bar that can be switched off;
- `torchrun --nproc_per_node=N`: DistributedDataParallel (gloo on CPU, nccl on CUDA) with *global* batch
  semantics: each process takes its slice of the same global batch, and the features of all processes are
  gathered (with gradient) before the contrastive loss, so 1 and N processes compute the same loss (up to
  BatchNorm statistics, which stay per process).

Programmatic use (the benchmark does this)::

    from zerohar.config import resolve_config
    from zerohar.train.loop import train_stage

    cfg = resolve_config("stage1", overrides={"data": {"dataset": "hapt", "fold": "fold1"}, "train": {"seed": 1}})
    run_dir = train_stage("stage1", cfg, "runs/stage1/hapt-fold1-s1", resume=True)
"""

from __future__ import annotations

import json
import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import nn

from zerohar.config import STAGES, Config, from_dict
from zerohar.errors import ZeroharError
from zerohar.io import AtomicLog, atomic_torch_save, atomic_write_json, load_yaml
from zerohar.model.precision import autocast, resolve_precision
from zerohar.model.pretrained import export_released, load_backbone
from zerohar.train.base import resolve_init, step_rng
from zerohar.train.budget import Progress, plan_budget
from zerohar.train.distributed import Dist, all_gather_with_grad, barrier, broadcast_object, setup_distributed
from zerohar.train.provenance import PROVENANCE_KEYS, provenance_file
from zerohar.train.registry import make_task
from zerohar.train.runs import check_out_dir, clear_run_files, read_run_meta

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- schedule & seeds
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed & 0xFFFFFFFF)
    torch.manual_seed(seed)


def _param_groups(model: nn.Module, lr: float, weight_decay: float, backbone_lr_mult: float) -> list[dict]:
    """AdamW groups: decay only on weight matrices / conv kernels; the backbone may get a smaller LR."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = p.ndim >= 2 and "logit_scale" not in name
        backbone = name.startswith("backbone.") or ".backbone." in name
        groups.setdefault((decay, backbone), []).append(p)
    out = []
    for (decay, backbone), params in sorted(groups.items()):
        out.append(
            {
                "params": params,
                "weight_decay": weight_decay if decay else 0.0,
                "lr": lr * (backbone_lr_mult if backbone else 1.0),
            }
        )
    return out


def _frozen_layers(model: nn.Module, n: int) -> list[nn.Module]:
    """Freeze the first `n` layers of the model's HARNet backbone (requires_grad off); returns them.

    On a CPU most of a training step is the backbone's backward pass, and most of that is in its early,
    long-sequence layers: freezing them makes Stage II several times faster, while the late layers still adapt.
    """
    backbone = getattr(model, "backbone", None)
    if n <= 0:
        return []
    if backbone is None:
        raise ZeroharError(f"train.freeze_layers={n} needs a HARNet backbone; this model has none (model.encoder)")
    layers = [getattr(backbone, f"layer{i}") for i in range(1, n + 1)]
    for layer in layers:
        layer.requires_grad_(False)
    return layers


class _TaskModule(nn.Module):
    """Wraps the model so DDP sees one forward per step: the task's whole forward (signal and text side)."""

    def __init__(self, model: nn.Module, task):
        super().__init__()
        self.model = model
        self._task = task  # a plain attribute: not a submodule

    def forward(self, batch: dict) -> dict:
        return self._task.forward(self.model, batch)


# ---------------------------------------------------------------------------------------------- logging
class _RunLog:
    """While a run trains: `log.txt` in the run directory (main process, written atomically by
    :class:`zerohar.io.AtomicLog`: in place when the run ends or fails, never torn), and the zerohar loggers at
    INFO. A run that fails before it has anything to resume from (`keep_on_error()` false) leaves no log."""

    def __init__(self, path: Path | None, keep_on_error=lambda: True):
        self.path = path
        self.keep_on_error = keep_on_error
        self.handler = None
        self.logger = logging.getLogger("zerohar")
        self.level = self.logger.level

    def __enter__(self):
        if self.logger.level == logging.NOTSET or self.logger.level > logging.INFO:
            self.logger.setLevel(logging.INFO)
        if self.path is not None:
            self.handler = AtomicLog(self.path)
            self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            self.handler.setLevel(logging.INFO)
            self.logger.addHandler(self.handler)
        return self

    def __exit__(self, exc_type, *exc):
        if self.handler is not None:
            self.logger.removeHandler(self.handler)
            if exc_type is not None and not self.keep_on_error():
                self.handler.abort()
            self.handler.close()
        self.logger.setLevel(self.level)
        return False


# ---------------------------------------------------------------------------------------------- the loop
def train_stage(
    stage: str,
    cfg: Config,
    out_dir: str | Path,
    *,
    force: bool = False,
    resume: bool = False,
    progress: bool = True,
) -> Path:
    """Train one stage into `out_dir` and return it.

    Args:
        stage: "pretrain", "stage1", "stage2" or "supervised" (Stage II on every class, subject-disjoint).
        cfg: The resolved config (:func:`zerohar.config.resolve_config`); its `stage` must equal `stage`.
        out_dir: The run directory (created).
        force: Start over even if `out_dir` holds a run (only the run's own files are removed).
        resume: Continue an unfinished run from its last checkpoint; a finished run is returned as is.
        progress: Show a tqdm progress bar (main process only).

    Returns:
        `out_dir` as a Path, holding a finished run.

    Raises:
        ZeroharError: bad config, data, init checkpoint or output directory (one sentence each).
    """
    if stage not in STAGES:
        raise ZeroharError(f"unknown stage {stage!r}: expected one of {', '.join(STAGES)}")
    if cfg.stage != stage:
        raise ZeroharError(f"the config is for {cfg.stage!r}, but train_stage was asked to train {stage!r}")
    out = Path(out_dir)
    cfg = resolve_init(cfg)
    dist = setup_distributed()
    mode = check_out_dir(out, force=force, resume=resume)
    if mode == "finished":
        logger.info("%s already holds a finished %s run; nothing to do", out, stage)
        return out
    barrier(dist)  # every process has looked at the directory before the main one changes it
    created_dir = not out.exists()
    if dist.is_main:
        if force:
            clear_run_files(out)
        out.mkdir(parents=True, exist_ok=True)
    barrier(dist)
    state = None
    if mode == "resume":
        cfg = _resume_config(cfg, out)
        state = _load_state(out / "state.pt")
    def resumable() -> bool:
        return mode != "fresh" or (out / "state.pt").exists()

    try:
        with _RunLog(out / "log.txt" if dist.is_main else None, keep_on_error=resumable):
            _Trainer(cfg, out, dist, progress=progress, state=state).fit()
    except BaseException:
        # Bad input, Ctrl-C or SIGTERM before the first checkpoint: leave no half-made run behind.
        if dist.is_main and not resumable():
            clear_run_files(out)
            if created_dir and not any(out.iterdir()):
                out.rmdir()
        raise
    barrier(dist)
    return out


def run_pretrain(cfg: Config, out_dir: str | Path, **kwargs) -> Path:
    """SSL pretraining of the backbone (see :func:`train_stage` for the arguments)."""
    return train_stage("pretrain", cfg, out_dir, **kwargs)


def run_stage1(cfg: Config, out_dir: str | Path, **kwargs) -> Path:
    """Stage I: channel embeddings <-> sensor-axis descriptions (see :func:`train_stage`)."""
    return train_stage("stage1", cfg, out_dir, **kwargs)


def run_stage2(cfg: Config, out_dir: str | Path, **kwargs) -> Path:
    """Stage II: window embeddings <-> label descriptions of the seen classes (see :func:`train_stage`)."""
    return train_stage("stage2", cfg, out_dir, **kwargs)


def run_supervised(cfg: Config, out_dir: str | Path, **kwargs) -> Path:
    """Stage II on every class with a subject-disjoint test split: the upper bound (see :func:`train_stage`)."""
    return train_stage("supervised", cfg, out_dir, **kwargs)


def _resume_config(cfg: Config, out: Path) -> Config:
    """The saved config of the run being resumed; a differing requested config is an error naming the keys."""
    saved = from_dict(Config, load_yaml(out / "config.yaml", "run config", mapping=True), str(out / "config.yaml"))
    diff = _diff(saved.to_dict(), cfg.to_dict())
    # Thread counts and time limits do not change what is computed; everything else must match.
    diff = [k for k in diff if k not in ("train.num_workers", "train.max_minutes")]
    if diff:
        raise ZeroharError(
            f"cannot resume {out}: the requested config differs from its config.yaml in {', '.join(diff)}; "
            "resume with the same settings or start over with --force"
        )
    return saved


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            keys += _diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            keys.append(prefix + k)
    return keys


def _load_state(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise ZeroharError(
            f"checkpoint {path} could not be read ({e.__class__.__name__}); it is damaged: start over with --force"
        ) from None


class _Trainer:
    """One run of the loop; the stage-specific parts come from a task of :mod:`zerohar.train.registry`, how long
    it trains from :mod:`zerohar.train.budget`."""

    def __init__(self, cfg: Config, out: Path, dist: Dist, *, progress: bool, state: dict | None):
        self.cfg, self.out, self.dist, self.progress = cfg, out, dist, progress
        t = cfg.train
        seed_everything(t.seed)  # identical initialisation on every process
        self.bf16 = resolve_precision(t.precision, dist.device) == "bf16"
        self.task = make_task(cfg, dist)
        self.model = self.task.model.to(dist.device)
        self.frozen = _frozen_layers(self.model, t.freeze_layers)
        self.n_train = self.task.n_train
        world = dist.world
        bs = t.batch_size
        if bs % world:
            raise ZeroharError(
                f"train.batch_size {bs} must be divisible by the number of processes ({world}): it is the global batch"
            )
        if self.n_train < world * 2:
            raise ZeroharError(f"only {self.n_train} training windows: too few to train {cfg.stage}")
        self.batch_size = min(bs, self.n_train - self.n_train % world)
        steps = max(1, self.n_train // self.batch_size)
        if t.max_steps_per_epoch is not None:
            steps = min(steps, t.max_steps_per_epoch)
        self.steps_per_epoch = steps
        self.budget = plan_budget(steps, t)
        self.plan = Progress(self.budget)
        self.optimizer = torch.optim.AdamW(
            _param_groups(self.model, t.lr, t.weight_decay, t.backbone_lr_mult), lr=t.lr, betas=(0.9, 0.999)
        )
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        self.net: nn.Module = _TaskModule(self.model, self.task)
        if dist.enabled:
            # Stage I leaves the Stage II transformer unused (and vice versa): find_unused_parameters.
            self.net = nn.parallel.DistributedDataParallel(
                self.net, device_ids=[dist.device.index] if dist.device.type == "cuda" else None,
                find_unused_parameters=True,
            )
        self.step = 0  # completed optimiser steps
        self.history: list[dict] = []  # one row per validation
        self.best: dict | None = None
        self.elapsed_before = 0.0  # seconds trained by earlier (killed) segments of this run
        self.train_time = 0.0
        self.train_windows = 0
        self._orders: dict[int, np.ndarray] = {}
        if state is not None:
            self._restore(state)

    # ------------------------------------------------------------------ state
    def _restore(self, state: dict) -> None:
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.plan.load_state_dict(state["progress"])
            self.step = int(state["step"])
            self.history = list(state["history"])
            self.best = state["best"]
            self.elapsed_before = float(state["elapsed_s"])
            self.train_time = float(state["train_time_s"])
            self.train_windows = int(state["train_windows"])
            random.setstate(_to_python_state(state["rng"]["python"]))
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            raise ZeroharError(
                f"{self.out / 'state.pt'} does not match this run ({e.__class__.__name__}); start over with --force"
            ) from None
        logger.info("resuming %s after step %d", self.out, self.step)

    def _state(self, elapsed: float) -> dict:
        return {
            "format": "zerohar.train_state/2",
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "progress": self.plan.state_dict(),
            "step": self.step,
            "history": self.history,
            "best": self.best,
            "elapsed_s": elapsed,
            "train_time_s": self.train_time,
            "train_windows": self.train_windows,
            "rng": {"python": _from_python_state(random.getstate())},
        }

    # ------------------------------------------------------------------ loop
    def fit(self) -> None:
        """Train segment by segment (a segment ends at a validation), until the budget says why to stop."""
        from tqdm.auto import tqdm

        cfg, t, dist = self.cfg, self.cfg.train, self.dist
        start = time.perf_counter()
        if dist.is_main and self.step == 0:
            cfg.save(self.out / "config.yaml")
        logger.info(
            "%s: %d training windows, global batch %d, %d steps/epoch; %s; %s, %d process(es)",
            cfg.stage, self.n_train, self.batch_size, self.steps_per_epoch, self.budget.describe(),
            "bf16 autocast" if self.bf16 else "fp32", dist.world,
        )
        if self.budget.mode == "steps" and not self.task.has_validation:
            logger.warning("%s: no validation subjects, so no plateau can be detected: training runs to "
                           "max_steps (%d)", cfg.stage, self.budget.max_steps)
        pool = ThreadPoolExecutor(max_workers=t.num_workers) if t.num_workers > 0 else None
        bar = tqdm(total=self.budget.max_steps, initial=self.step, desc=cfg.stage, unit="step",
                   disable=not (self.progress and dist.is_main), leave=False, dynamic_ncols=True)
        reason = None
        try:
            while reason is None:
                timed_out = self._train_segment(start, pool, bar)
                val = self.task.validate(self.model, self.bf16) if self.task.has_validation else {}
                val = broadcast_object(val, dist)  # one process decides: every process stops at the same step
                self._validated(val, time.perf_counter() - start)
                reason = "time_limit" if timed_out else self.plan.stop_reason(self.step)
        finally:
            bar.close()
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        self._finish(time.perf_counter() - start, reason)

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            self._orders = {epoch: self.task.epoch_order(self.cfg.train.seed, epoch, self.n_train)}
        return self._orders[epoch]

    def _train_segment(self, start: float, pool, bar) -> bool:
        """Steps until the next validation point; True if `train.max_minutes` ended the segment early."""
        t, dist, bs, spe = self.cfg.train, self.dist, self.batch_size, self.steps_per_epoch
        # Dropout etc.: a function of (seed, step) at every segment start, so a resumed run draws what an
        # uninterrupted one draws. Batches and augmentation: of (seed, epoch, step in epoch).
        torch.manual_seed(hash((t.seed, self.step, dist.rank)) & 0x7FFFFFFF)
        lo_hi = self._local_slice()

        def make(step: int):
            e, k = divmod(step, spe)
            idx = self._order(e)[k * bs : (k + 1) * bs]
            return self.task.make_batch(idx, lo_hi, step_rng(t.seed, e, k), dist.device)

        self.net.train()
        for layer in self.frozen:
            layer.eval()  # frozen layers keep their BatchNorm statistics
        losses = []
        t0 = time.perf_counter()
        pending = pool.submit(make, self.step) if pool is not None else None
        timed_out = False
        while True:
            batch = pending.result() if pool is not None else make(self.step)
            last = self.plan.should_validate(self.step + 1)
            if pool is not None and not last:
                pending = pool.submit(make, self.step + 1)
            for g, base in zip(self.optimizer.param_groups, self.base_lrs):
                g["lr"] = base * self.plan.lr_factor(self.step)
            loss = self._train_step(batch)
            losses.append(loss)
            self.train_windows += bs
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", lr=f"{self.optimizer.param_groups[0]['lr']:.2e}")
            if t.max_minutes is not None:
                timed_out = broadcast_object(
                    self.elapsed_before + time.perf_counter() - start > 60.0 * t.max_minutes, dist)
                if timed_out:
                    logger.info("train.max_minutes (%.1f) reached at step %d", t.max_minutes, self.step)
                    break
            if last:
                break
        dt = time.perf_counter() - t0
        self.train_time += dt
        self._segment = {"train_loss": float(np.mean(losses)), "train_windows_per_s": len(losses) * bs / dt,
                         "train_s": dt}
        return timed_out

    def _local_slice(self) -> tuple[int, int]:
        per = self.batch_size // self.dist.world
        return self.dist.rank * per, (self.dist.rank + 1) * per

    def _train_step(self, batch: dict) -> float:
        """Forward (bf16 autocast), gather, loss (fp32), backward, clip, AdamW; the loss value."""
        t, dist = self.cfg.train, self.dist
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.bf16, dist.device):
            out = self.net(batch)
        out = {k: (all_gather_with_grad(v, dist) if k in self.task.gather_keys else v) for k, v in out.items()}
        loss = self.task.loss(out, batch)
        if not torch.isfinite(loss):
            raise ZeroharError(
                f"{self.cfg.stage}: the training loss became {loss.item()} at step {self.step + 1}; "
                "lower train.lr or use train.precision=fp32"
            )
        loss.backward()
        if t.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
        self.optimizer.step()
        self.task.after_step(self.model)
        self.step += 1
        return float(loss.detach())

    def _validated(self, val: dict, elapsed_here: float) -> None:
        """Record a validation, keep the model if it is the best, checkpoint."""
        metric = self.task.metric
        epoch = round(self.step / self.steps_per_epoch, 3)
        row = {"step": self.step, "epoch": epoch, "lr": self.optimizer.param_groups[0]["lr"], **self._segment,
               "val": val}
        self.history.append(row)
        score = val.get(metric) if val else None
        improved = self.plan.observe(self.step, score)
        msg = ", ".join(f"{k} {v:.4f}" for k, v in val.items() if isinstance(v, float) and "/" not in k)
        logger.info(
            "step %d/%d (epoch %g): train loss %.4f, %.0f windows/s%s%s%s", self.step, self.plan.end_step, epoch,
            row["train_loss"], row["train_windows_per_s"], f"; val {msg}" if msg else "",
            " (best)" if improved and score is not None else "",
            ("; cool-down" if self.plan.decay is not None and self.plan.decay[0] < self.step else
             f"; {self.plan.bad_evals}/{self.budget.patience} without improvement" if self.plan.bad_evals else "")
            if self.budget.mode == "steps" and score is not None else "",
        )
        if self.plan.decay is not None and self.plan.decay[0] == self.step and self.budget.mode == "steps":
            logger.info("%s at step %d: the learning rate decays to 0 over %d steps", self.plan.reason,
                        self.step, self.plan.decay[1])
        if improved:
            self.best = {"step": self.step, "epoch": epoch, "metric": score, "val": val}  # no validation: the last
            if self.dist.is_main:
                self.task.save_model(self.model, self.out, {"step": self.step, "epoch": epoch,
                                                            "selection_metric": metric, "selection_value": score})
        if self.dist.is_main:
            elapsed = self.elapsed_before + elapsed_here
            atomic_torch_save(self._state(elapsed), self.out / "state.pt")
            atomic_write_json(self.out / "metrics.json", self._metrics(elapsed, finished=False))
        barrier(self.dist)

    def _metrics(self, elapsed: float, finished: bool, stop_reason: str | None = None) -> dict:
        best = dict(self.best) if self.best else None
        return {
            "stage": self.cfg.stage,
            "finished": finished,
            "stop_reason": stop_reason,
            "selection_metric": self.task.metric,
            "best": best,
            "steps": self.step,
            "budget": self.budget.to_dict(),
            "transductive_init": self.task.transductive_init,
            "history": self.history,
            "timing": {
                "wall_time_s": elapsed,
                "train_time_s": self.train_time,
                "train_windows": self.train_windows,
                "train_windows_per_s": self.train_windows / self.train_time if self.train_time else None,
                "processes": self.dist.world,
                "precision": "bf16" if self.bf16 else "fp32",
            },
            "data": self.task.summary(),
        }

    def _finish(self, elapsed_here: float, reason: str) -> None:
        if self.dist.is_main:
            elapsed = self.elapsed_before + elapsed_here
            atomic_write_json(self.out / "metrics.json", self._metrics(elapsed, finished=True, stop_reason=reason))
            b = self.best or {}
            logger.info(
                "%s finished in %.1f s after %d steps (%s): best at step %s, %s %s -> %s", self.cfg.stage, elapsed,
                self.step, reason, b.get("step"), self.task.metric, _fmt(b.get("metric")), self.out,
            )


def _fmt(x) -> str:
    return f"{x:.4f}" if isinstance(x, float) else str(x)


def _from_python_state(s: tuple) -> list:
    # random.getstate() is (version, tuple of 625 ints, gauss); lists/ints pass torch's weights_only loader.
    return [s[0], list(s[1]), s[2]]


def _to_python_state(s: list) -> tuple:
    return (s[0], tuple(s[1]), s[2])


def summary_line(run_dir: str | Path) -> str:
    """One line about a finished run: stage, time, why it stopped, best validation, where it is."""
    m = json.loads((Path(run_dir) / "metrics.json").read_text())
    best = m.get("best") or {}
    t = m.get("timing", {})
    val = best.get("val") or {}
    shown = ", ".join(f"{k} {v:.3f}" for k, v in val.items() if isinstance(v, float) and "/" not in k)
    wps = t.get("train_windows_per_s")
    about = [f"{wps:.0f} training windows/s"] if wps else []
    if m.get("stop_reason"):
        about.append(f"{m.get('steps')} steps, stopped: {m['stop_reason']}")
    return (
        f"{m.get('stage')} finished in {t.get('wall_time_s', 0):.0f} s"
        + (f" ({', '.join(about)})" if about else "")
        + (f"; best at step {best.get('step')}: {shown}" if shown else "")
        + f" -> {run_dir}"
    )


def export_backbone(run_dir: str | Path, path: str | Path, force: bool = False) -> Path:
    """Write the backbone of a finished run (pretrain, or the backbone of a Stage I / II run) in the released
    HARNet format (`module.feature_extractor.*`, torch.save), loadable wherever the released files are.

    The released format has no room for metadata, so what the backbone saw goes beside it, in `FILE.mdl.json`
    (:mod:`zerohar.train.provenance` reads it when the file is used as an init)."""
    meta = read_run_meta(run_dir)
    variant = meta.get("backbone") or None
    out = export_released(load_backbone(Path(run_dir), variant), path, force=force)
    atomic_write_json(provenance_file(out), {"format": "zerohar-backbone-provenance", "run": str(run_dir),
                                             "extra": {k: meta.get(k) for k in PROVENANCE_KEYS}})
    return out
