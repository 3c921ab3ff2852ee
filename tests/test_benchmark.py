"""Benchmark: table aggregation, chance, method plans; a tiny end-to-end benchmark (slow)."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from zerohar.benchmark import (
    COLUMNS,
    METHODS,
    aggregate,
    chance_metrics,
    method_steps,
    results_csv,
    results_markdown,
)
from zerohar.errors import ZeroharError


def _rows(rng):
    rows = []
    for m in ("zerohar", "no_stage1"):
        for f in ("fold1", "fold2"):
            for s in range(3):
                rows.append({"method": m, "fold": f, "seed": s, **{c: float(rng.uniform()) for c in COLUMNS}})
    return rows


def test_aggregate_is_mean_and_sample_std_over_folds_and_seeds():
    rng = np.random.default_rng(0)
    rows = _rows(rng)
    rows[0]["gzsl_h"] = None  # a run without GZSL seen windows: left out of that column only
    agg = aggregate(rows, ["zerohar", "no_stage1", "supervised"])
    assert [a["method"] for a in agg] == ["zerohar", "no_stage1", "supervised"]
    for a in agg[:2]:
        mine = [r for r in rows if r["method"] == a["method"]]
        assert a["n_runs"] == 6
        for c in COLUMNS:
            vals = [r[c] for r in mine if r[c] is not None]
            assert a[f"{c}_mean"] == pytest.approx(np.mean(vals))
            assert a[f"{c}_std"] == pytest.approx(np.std(vals, ddof=1))
    assert agg[2]["n_runs"] == 0 and agg[2]["accuracy_mean"] is None


def test_one_run_has_zero_std():
    agg = aggregate([{"method": "zerohar", **{c: 0.5 for c in COLUMNS}}], ["zerohar"])
    assert agg[0]["accuracy_std"] == 0.0


def test_results_files_have_a_row_per_method():
    rng = np.random.default_rng(1)
    agg = aggregate(_rows(rng), ["zerohar", "no_stage1"])
    header = {"dataset": "hapt", "folds": ["fold1", "fold2"], "seeds": [0, 1, 2], "command": "zerohar benchmark",
              "n_runs_per_method": 6, "date": "today", "wall_time_s": 60.0, "notes": []}
    md = results_markdown(agg, header)
    for m in ("zerohar", "no_stage1"):
        row = next(line for line in md.splitlines() if line.startswith(f"| {METHODS[m]} |"))
        a = next(x for x in agg if x["method"] == m)
        assert f"{a['macro_f1_mean']:.3f} ± {a['macro_f1_std']:.3f}" in row
    table = list(csv.DictReader(io.StringIO(results_csv(agg))))
    assert [r["method"] for r in table] == ["zerohar", "no_stage1"]
    assert float(table[0]["accuracy_mean"]) == pytest.approx(agg[0]["accuracy_mean"], abs=1e-6)


def test_chance_is_one_over_candidates_and_uniform_guessing_f1():
    y = np.array([0] * 30 + [1] * 10)
    c = chance_metrics(y, 2, 12)
    assert c["accuracy"] == 0.5 and c["top2_accuracy"] == 1.0 and c["gzsl_h"] == pytest.approx(1 / 12)
    # Simulated uniform guessing agrees with the closed form.
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    sims = [f1_score(y, rng.integers(0, 2, len(y)), average="macro", zero_division=0) for _ in range(800)]
    assert c["macro_f1"] == pytest.approx(np.mean(sims), abs=0.01)


def test_method_plans():
    assert [s.stage for s in method_steps("zerohar", "fold1", None)] == ["stage1", "stage2"]
    assert [s.stage for s in method_steps("no_stage1", "fold1", None)] == ["stage2"]
    ssl = method_steps("ssl_backbone", "fold2", None)
    assert [s.stage for s in ssl] == ["pretrain", "stage1", "stage2"]
    assert ssl[0].overrides["data"]["fold"] == "fold2"  # pretraining never sees the fold's unseen classes
    assert method_steps("label_names", "fold1", None)[1].overrides == {"train": {"label_text": "names"}}
    assert method_steps("supervised", "fold1", None)[-1].stage == "supervised"
    with pytest.raises(ZeroharError, match="unknown method 'magic'"):
        method_steps("magic", "fold1", None)
