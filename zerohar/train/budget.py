"""How long a run trains: its step budget, when it validates, when it stops, and its learning-rate schedule.

Every stage (pretraining of any method, Stage I, Stage II, the supervised bound) trains in one of two modes:

- **adaptive** (the default, `train.epochs` unset): training length is counted in optimiser steps and ends
  when the validation metric of the held-out subjects of the seen classes stops improving. The run validates
  every `eval_every` steps; an evaluation *improves* when its metric beats the best so far by more than
  `train.min_delta`; after `train.patience` evaluations without improvement, and not before `min_steps`, the
  run has reached its **plateau**. With the default `wsd` schedule (warm-up, stable, decay) the learning rate
  then anneals to 0 over a cool-down of `train.cooldown` times the steps trained so far (at least one
  evaluation interval), validating as before, and the run ends: `stop_reason` "plateau". A run that reaches no
  plateau cools down so that it ends exactly at `max_steps`: `stop_reason` "max_steps". The model kept is the
  best evaluation's, cool-down included.
- **epochs** (`train.epochs: N`, `--epochs N`): exactly N passes, a validation after each, cosine decay over
  the N epochs; `stop_reason` "epochs".

`train.max_minutes` ends either mode at a step boundary, after one last validation: `stop_reason` "time_limit".

**The rule for data never seen** (each value may be set explicitly in `train`): with `steps_per_epoch` =
training windows // batch size (capped by `train.max_steps_per_epoch`),

- ``eval_every = clip(steps_per_epoch, 25, 500)``: once per epoch, but at least every 500 steps on large data
  (100,000 windows at batch 64 = 1,562 steps per epoch: three evaluations per epoch) and at most every 25
  steps on small data (500 windows = 7 steps per epoch: an evaluation every ~3.5 epochs, so that a noisy
  validation set of a few subjects is not read after every handful of steps);
- ``min_steps = 4 * eval_every`` (no plateau is declared before four evaluations);
- ``max_steps = 50 * eval_every`` (a cap that a healthy run does not reach: 1,250 steps = 180 epochs of a
  500-window set, 25,000 steps = 16 epochs of a 100,000-window set);
- warm-up: ``warmup_steps = eval_every`` (the first evaluation sees the peak learning rate); in epochs mode
  the fraction `train.warmup` of all steps;
- ``patience = 5`` evaluations, ``min_delta = 0.001``, ``cooldown = 0.2``.

So a 500-window set validates every 25 steps and stops after at least 100, a 100,000-window set every 500
steps and after at least 2,000; both stop when their own validation curve flattens.

The state of early stopping (:class:`Progress`) is saved in `state.pt`, so a resumed run makes the same
decisions as an uninterrupted one.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

#: Why a run stopped (`metrics.json` "stop_reason").
STOP_REASONS = ("plateau", "max_steps", "time_limit", "epochs")
#: The rule's bounds on the evaluation interval (steps), and the budget in evaluation intervals.
EVAL_EVERY_MIN, EVAL_EVERY_MAX = 25, 500
MIN_EVALS, MAX_EVALS = 4, 50


@dataclass(frozen=True)
class Budget:
    """The resolved length of a run (what `metrics.json` records under "budget").

    Attributes:
        mode: "steps" (adaptive, early stopping) or "epochs" (a fixed number of passes).
        steps_per_epoch: optimiser steps per pass over the training windows.
        eval_every: steps between validations (epochs mode: `steps_per_epoch`).
        min_steps, max_steps: no plateau before `min_steps`; the run ends by `max_steps` (epochs mode: both the
            total).
        patience: evaluations without improvement that make a plateau.
        min_delta: an evaluation improves when it beats the best by more than this.
        warmup_steps: linear warm-up length.
        schedule: "wsd" (warm-up, stable, decay after the plateau), "cosine" (over `max_steps`) or "constant".
        cooldown: wsd: the decay lasts this fraction of the steps trained when it starts.
    """

    mode: str
    steps_per_epoch: int
    eval_every: int
    min_steps: int
    max_steps: int
    patience: int
    min_delta: float
    warmup_steps: int
    schedule: str
    cooldown: float

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """One line for the log."""
        if self.mode == "epochs":
            return (f"{self.max_steps // self.steps_per_epoch} epochs of {self.steps_per_epoch} steps, "
                    f"{self.schedule} schedule")
        return (f"adaptive length: validate every {self.eval_every} steps, plateau after {self.patience} "
                f"evaluations without improvement (at least {self.min_steps}, at most {self.max_steps} steps), "
                f"{self.schedule} schedule")


def plan_budget(steps_per_epoch: int, train) -> Budget:
    """The budget of a run from its steps per epoch and its `TrainConfig` (the rule of the module docstring).

    Args:
        steps_per_epoch: optimiser steps per pass over the training windows (at least 1).
        train: the run's :class:`~zerohar.config.TrainConfig`.
    """
    spe = max(1, int(steps_per_epoch))
    schedule = train.schedule
    if train.epochs is not None:
        total = spe * train.epochs
        return Budget("epochs", spe, spe, total, total, train.patience, train.min_delta,
                      int(round(train.warmup * total)), "cosine" if schedule == "auto" else schedule, train.cooldown)
    every = train.eval_every or min(max(spe, EVAL_EVERY_MIN), EVAL_EVERY_MAX)
    max_steps = train.max_steps or MAX_EVALS * every
    min_steps = min(train.min_steps if train.min_steps is not None else MIN_EVALS * every, max_steps)
    warm = train.warmup_steps if train.warmup_steps is not None else every
    return Budget("steps", spe, every, min_steps, max_steps, train.patience, train.min_delta,
                  min(warm, max_steps), "wsd" if schedule == "auto" else schedule, train.cooldown)


def lr_factor(step: int, total_steps: int, warmup_frac: float, schedule: str) -> float:
    """LR multiplier at optimiser step `step` (0-based): linear warm-up, then cosine to 0 (or constant)."""
    return _factor(step, int(round(warmup_frac * total_steps)), total_steps, schedule, None)


def _factor(step: int, warm: int, total: int, schedule: str, decay: tuple[int, int] | None) -> float:
    if warm > 0 and step < warm:
        return (step + 1) / warm
    if schedule == "constant":
        return 1.0
    if schedule == "wsd":
        if decay is None:
            return 1.0
        start, length = decay
        progress = (step - start) / max(1, length)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, progress))))
    progress = (step - warm) / max(1, total - warm)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class Progress:
    """Early stopping and the learning-rate factor of one run; `state_dict` goes into `state.pt`.

    The loop asks :meth:`lr_factor` before each step, :meth:`should_validate` after it, reports each
    validation to :meth:`observe`, and stops when :meth:`stop_reason` says why.
    """

    def __init__(self, budget: Budget):
        self.budget = budget
        self.best: float | None = None  # the best validation metric so far
        self.bad_evals = 0  # evaluations since the last improvement (by more than min_delta)
        self.decay: tuple[int, int] | None = None  # wsd: (first step of the cool-down, its length)
        self.reason: str | None = None  # why the run is ending (set when the cool-down starts or the run ends)
        if budget.mode == "epochs" and budget.schedule == "wsd":  # a fixed length: the cool-down ends it
            length = max(1, int(round(budget.cooldown * budget.max_steps)))
            self.decay = (budget.max_steps - length, length)

    @property
    def end_step(self) -> int:
        """The step the run ends at, as far as is known now."""
        b = self.budget
        if self.decay is not None:
            return min(b.max_steps, self.decay[0] + self.decay[1])
        return b.max_steps

    def lr_factor(self, step: int) -> float:
        """LR multiplier for optimiser step `step` (0-based)."""
        b = self.budget
        return _factor(step, b.warmup_steps, b.max_steps, b.schedule, self.decay)

    def should_validate(self, step: int) -> bool:
        """Validate after `step` completed steps?"""
        return step % self.budget.eval_every == 0 or step >= self.end_step

    def observe(self, step: int, score: float | None) -> bool:
        """Take the validation metric after `step` steps (None: no validation). True if it is the best so far
        (the caller keeps that model)."""
        b = self.budget
        is_best = score is None or self.best is None or score > self.best
        if score is not None:
            if self.best is None or score > self.best + b.min_delta:
                self.bad_evals = 0
            else:
                self.bad_evals += 1
            if is_best:
                self.best = score
        if b.mode == "epochs" or self.reason is not None:
            return is_best
        plateau = score is not None and step >= b.min_steps and self.bad_evals >= b.patience
        if b.schedule == "wsd":
            length = max(b.eval_every, int(round(b.cooldown * step)))
            if plateau:
                self.decay, self.reason = (step, length), "plateau"
            elif step + length >= b.max_steps:
                self.decay, self.reason = (step, max(1, b.max_steps - step)), "max_steps"
        elif plateau:
            self.reason = "plateau"
        return is_best

    def stop_reason(self, step: int) -> str | None:
        """Why the run stops after `step` steps, or None to go on."""
        b = self.budget
        if step >= self.end_step:
            return "epochs" if b.mode == "epochs" else (self.reason or "max_steps")
        if b.schedule != "wsd" and self.reason == "plateau":
            return "plateau"
        return None

    def state_dict(self) -> dict:
        return {"best": self.best, "bad_evals": self.bad_evals,
                "decay": list(self.decay) if self.decay is not None else None, "reason": self.reason}

    def load_state_dict(self, s: dict) -> None:
        self.best, self.bad_evals, self.reason = s["best"], int(s["bad_evals"]), s["reason"]
        self.decay = tuple(int(x) for x in s["decay"]) if s["decay"] is not None else None
