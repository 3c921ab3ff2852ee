"""How long a run trains: the budget rule, early stopping, the wsd schedule, and the loop that follows them."""

from __future__ import annotations

import json

import pytest
from helpers import scripted_validation, tiny_cfg

from zerohar.config import TrainConfig
from zerohar.train import loop as train_mod
from zerohar.train.budget import Progress, plan_budget
from zerohar.train.loop import train_stage


def _run(budget, scores):
    """Feed `scores` to a Progress at its validation points; (steps validated, stop reason, lr factors)."""
    p = Progress(budget)
    step, points, lrs, scores = 0, [], [], iter(scores)
    while True:
        lrs.append(p.lr_factor(step))
        step += 1
        if p.should_validate(step):
            points.append(step)
            p.observe(step, next(scores))
            reason = p.stop_reason(step)
            if reason:
                return points, reason, lrs


def test_the_rule_fits_small_and_large_data():
    t = TrainConfig()
    small = plan_budget(500 // 64, t)  # ~500 windows: 7 steps per epoch
    assert (small.mode, small.eval_every, small.min_steps, small.max_steps) == ("steps", 25, 100, 1250)
    large = plan_budget(100_000 // 64, t)  # 1,562 steps per epoch: validate 3x per epoch
    assert (large.eval_every, large.min_steps, large.max_steps) == (500, 2000, 25000)
    assert large.max_steps / large.steps_per_epoch > 15 and small.max_steps / small.steps_per_epoch > 100
    mid = plan_budget(55, t)  # HAPT: once per epoch
    assert (mid.eval_every, mid.warmup_steps, mid.schedule, mid.patience) == (55, 55, "wsd", 5)
    explicit = plan_budget(55, TrainConfig(eval_every=10, min_steps=0, max_steps=30, warmup_steps=0))
    assert (explicit.eval_every, explicit.min_steps, explicit.max_steps, explicit.warmup_steps) == (10, 0, 30, 0)
    epochs = plan_budget(55, TrainConfig(epochs=3))
    assert (epochs.mode, epochs.eval_every, epochs.max_steps, epochs.schedule) == ("epochs", 55, 165, "cosine")


def test_plateau_starts_a_cooldown_then_stops():
    b = plan_budget(10, TrainConfig(eval_every=10, min_steps=20, max_steps=1000, patience=2, warmup_steps=5))
    # improves until step 40, then flat: plateau declared at step 60 (2 evaluations without improvement)
    points, reason, lrs = _run(b, [0.1, 0.2, 0.3, 0.4, 0.4, 0.4] + [0.45] * 10)
    assert reason == "plateau"
    assert points[:6] == [10, 20, 30, 40, 50, 60]
    assert points[-1] == 72  # cool-down: max(10, 0.2 * 60) = 12 steps, validated at 70 and at its end
    assert lrs[0] == pytest.approx(0.2) and lrs[4] == 1.0 and lrs[59] == 1.0  # warm-up, then stable
    assert lrs[60] == pytest.approx(1.0) and lrs[66] == pytest.approx(0.5) and lrs[71] < 0.02  # the decay


def test_no_plateau_before_min_steps_and_max_steps_ends_with_a_cooldown():
    b = plan_budget(10, TrainConfig(eval_every=10, min_steps=50, max_steps=100, patience=1))
    points, reason, _ = _run(b, [0.5] * 20)
    assert reason == "plateau" and points[4] == 50  # flat from the start, but not stopped before step 50
    points, reason, lrs = _run(b, [i / 100 for i in range(20)])  # always improving
    assert reason == "max_steps" and points[-1] == 100 and lrs[-1] < 0.05
    const = plan_budget(10, TrainConfig(eval_every=10, max_steps=100, patience=1, schedule="constant"))
    _, reason, lrs = _run(const, [i / 100 for i in range(20)])
    assert reason == "max_steps" and lrs == pytest.approx([0.1 * (i + 1) for i in range(10)] + [1.0] * 90)
    assert _run(const, [0.5] * 20)[:2] == ([10, 20, 30, 40], "plateau")  # min_steps 40: stops at once


def test_min_delta_and_no_validation():
    b = plan_budget(10, TrainConfig(eval_every=10, min_steps=0, max_steps=1000, patience=2, min_delta=0.01,
                                    schedule="constant"))
    assert _run(b, [0.5, 0.505, 0.509, 0.6])[:2] == ([10, 20, 30], "plateau")  # +0.005 is no improvement
    p = Progress(b)
    assert p.observe(10, None) and p.observe(20, None) and p.stop_reason(20) is None  # no plateau without scores


def test_progress_state_round_trips():
    b = plan_budget(10, TrainConfig(eval_every=10, min_steps=0, patience=1))
    p = Progress(b)
    for step, s in ((10, 0.5), (20, 0.4)):
        p.observe(step, s)
    q = Progress(b)
    q.load_state_dict(json.loads(json.dumps(p.state_dict())))
    assert (q.best, q.bad_evals, q.decay, q.reason) == (p.best, p.bad_evals, p.decay, p.reason) == (
        0.5, 1, (20, 10), "plateau")


# ---------------------------------------------------------------------------------------------- the loop
def _adaptive(**train):
    over = {"epochs": None, "max_steps_per_epoch": None, "eval_every": 2, "min_steps": 2, "max_steps": 40,
            "patience": 2, "warmup_steps": 1, **train}
    return tiny_cfg("stage1", **over)


def test_adaptive_run_stops_on_its_plateau_and_keeps_the_best(tmp_path, monkeypatch):
    scripted_validation(monkeypatch, [0.5, 0.9, 0.8, 0.85, 0.95, 0.7])
    out = train_stage("stage1", _adaptive(), tmp_path / "a", progress=False)
    m = json.loads((out / "metrics.json").read_text())
    # plateau at step 8 (2 evaluations without improvement), cool-down of 2 steps: validated at step 10
    assert m["stop_reason"] == "plateau" and m["steps"] == 10
    assert [h["step"] for h in m["history"]] == [2, 4, 6, 8, 10]
    assert m["best"]["step"] == 10 and m["best"]["metric"] == 0.95  # the cool-down's evaluation was the best
    assert json.loads((out / "model.json").read_text())["extra"]["step"] == 10
    assert m["budget"]["mode"] == "steps" and m["history"][-1]["lr"] < m["history"][0]["lr"]
    assert m["transductive_init"] == []  # the init leaks found (--allow-transductive-init), none here
    assert "(plateau): best at step 10" in (out / "log.txt").read_text()


def test_adaptive_run_resumed_between_validations_matches(tmp_path, monkeypatch):
    def cfg():
        return _adaptive(max_steps=8, patience=5)

    straight = train_stage("stage1", cfg(), tmp_path / "straight", progress=False)
    original, calls = train_mod._Trainer._train_step, {"n": 0}

    def killing_step(self, batch):
        calls["n"] += 1
        if calls["n"] == 5:  # between the validations at steps 4 and 6
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(train_mod._Trainer, "_train_step", killing_step)
    with pytest.raises(KeyboardInterrupt):
        train_stage("stage1", cfg(), tmp_path / "killed", progress=False)
    monkeypatch.setattr(train_mod._Trainer, "_train_step", original)
    resumed = train_stage("stage1", cfg(), tmp_path / "killed", resume=True, progress=False)
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (straight, resumed))
    assert a["stop_reason"] == b["stop_reason"] == "max_steps" and a["steps"] == b["steps"] == 8
    assert [h["val"] for h in a["history"]] == [h["val"] for h in b["history"]]
    assert [h["train_loss"] for h in a["history"]] == pytest.approx([h["train_loss"] for h in b["history"]],
                                                                   rel=1e-6)


def test_tiny_configs_stop_quickly_by_default():
    """tests/helpers.tiny_cfg trains one epoch of two steps: the adaptive default must not make tests slow."""
    cfg = tiny_cfg("stage2")
    assert cfg.train.epochs == 1 and plan_budget(2, cfg.train).max_steps == 2
