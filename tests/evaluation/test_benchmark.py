"""Benchmark: table aggregation, chance, method plans; a tiny end-to-end benchmark (slow)."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from zerohar.cli import main
from zerohar.config import resolve_config
from zerohar.data.folds import load_folds
from zerohar.data.splits import load_stage_data
from zerohar.errors import ZeroharError
from zerohar.evaluation.benchmark import (
    COLUMNS,
    METHODS,
    TEST_SUBJECTS_NOTE,
    TRANSDUCTIVE_MARK,
    Step,
    _chance_rows,
    _check_finished,
    _Runner,
    aggregate,
    chance_metrics,
    evaluation_is_current,
    method_steps,
    per_fold,
    results_csv,
    results_markdown,
    run_benchmark,
    runs_csv,
)
from zerohar.evaluation.evaluate import EVAL_VERSION


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
    rows = _rows(np.random.default_rng(1))
    folds_md = results_markdown(agg, header, per_fold(rows, ["zerohar", "no_stage1"], ["fold1", "fold2"]))
    line = next(x for x in folds_md.splitlines()[::-1] if x.startswith(f"| {METHODS['zerohar']} |"))
    f2 = [r["macro_f1"] for r in rows if r["method"] == "zerohar" and r["fold"] == "fold2"]
    assert line.endswith(f"| {np.mean(f2):.3f} ± {np.std(f2, ddof=1):.3f} |")
    table = list(csv.DictReader(io.StringIO(results_csv(agg))))
    assert [r["method"] for r in table] == ["zerohar", "no_stage1"]
    assert float(table[0]["accuracy_mean"]) == pytest.approx(agg[0]["accuracy_mean"], abs=1e-6)


def test_transductive_inits_are_marked_in_every_table():
    rows = _rows(np.random.default_rng(2))
    header = {"dataset": "hapt", "folds": ["fold1", "fold2"], "seeds": [0, 1, 2], "command": "zerohar benchmark",
              "n_runs_per_method": 6, "date": "today", "wall_time_s": 60.0, "notes": []}
    clean = results_markdown(aggregate(rows, ["zerohar", "no_stage1"]), header)
    assert TRANSDUCTIVE_MARK not in clean and "No run started from weights that saw" in clean
    rows[0]["transductive_init"] = "--stage1 s1 was trained on hapt's classes ['walking'], unseen in this fold"
    agg = aggregate(rows, ["zerohar", "no_stage1"])
    assert [a["transductive_init_runs"] for a in agg] == [1, 0]
    md = results_markdown(agg, header, per_fold(rows, ["zerohar", "no_stage1"], ["fold1", "fold2"]))
    marked = [line for line in md.splitlines() if line.startswith(f"| {METHODS['zerohar']}{TRANSDUCTIVE_MARK} |")]
    assert len(marked) == 2  # the main table and the per-fold table
    assert not any(line.startswith(f"| {METHODS['no_stage1']}{TRANSDUCTIVE_MARK}") for line in md.splitlines())
    assert f"1 of 6 {METHODS['zerohar']} runs started from weights that saw" in md
    table = list(csv.DictReader(io.StringIO(results_csv(agg))))
    assert [r["transductive_init_runs"] for r in table] == ["1", "0"]
    per_run = list(csv.DictReader(io.StringIO(runs_csv(rows))))
    assert per_run[0]["transductive_init"].startswith("--stage1 s1") and per_run[1]["transductive_init"] == ""


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
    sup = method_steps("supervised", "fold1", "hb.mdl")
    assert [s.stage for s in sup] == ["stage1", "supervised"]
    # the bound's Stage I is zerohar's: same config, so it holds out the same test subjects and is trained once
    assert sup[0] == method_steps("zerohar", "fold1", "hb.mdl")[0] and sup[1].init == "stage1"
    with pytest.raises(ZeroharError, match="unknown method 'magic'"):
        method_steps("magic", "fold1", None)


def test_a_stage_named_set_overrides_that_stage_only_after_the_epochs_scale(tmp_path):
    sets = {"train": {"max_steps_per_epoch": 20, "epochs": 3}, "stage1": {"train": {"epochs": 2}}}
    r = _Runner(tmp_path, "hapt", None, sets, 0.5, None, False)
    s1 = r.config(Step("stage1", "stage1"), "fold1", 0, None)
    s2 = r.config(Step("stage2", "stage2"), "fold1", 0, None)
    assert (s1.train.epochs, s1.train.max_steps_per_epoch) == (2, 20)
    assert (s2.train.epochs, s2.train.max_steps_per_epoch) == (2, 20)  # round(3 * 0.5)
    steps = _Runner(tmp_path, "hapt", None, {"train": {"max_steps": 300}}, 0.5, None, False)
    assert steps.config(Step("stage2", "stage2"), "fold1", 0, None).train.max_steps == 150
    adaptive = _Runner(tmp_path, "hapt", None, {}, 0.5, None, False)
    with pytest.raises(ZeroharError, match=r"--epochs-scale scales a length, but stage2's length adapts to the data"):
        adaptive.config(Step("stage2", "stage2"), "fold1", 0, None)
    full = _Runner(tmp_path, "hapt", None, {}, 1.0, None, False).config(Step("stage2", "stage2"), "fold1", 0, None)
    assert full.train.epochs is None  # by default the length adapts


@pytest.mark.slow
def test_tiny_benchmark_has_every_method_row_and_reuses_finished_runs(tmp_path):
    """1 fold, 1 seed, a few methods, one optimiser step per stage, 4 subjects of the embedded HAPT data."""
    methods = ["chance", "zerohar", "no_stage1", "label_names", "supervised"]
    sets = {"data": {"subjects": ["01", "02", "03", "04", "05"]},
            "train": {"epochs": 1, "max_steps_per_epoch": 1, "batch_size": 16, "max_val_windows": 32,
                      "val_fraction": 0.2, "test_fraction": 0.2}}
    kw = {"folds": ["fold1"], "seeds": 1, "methods": methods, "epochs_scale": 0.01, "sets": sets,
          "progress": False}
    agg = run_benchmark("hapt", tmp_path, **kw)
    assert [a["method"] for a in agg] == methods
    table = list(csv.DictReader(io.StringIO((tmp_path / "results.csv").read_text())))
    assert [r["method"] for r in table] == methods
    md = (tmp_path / "results.md").read_text()
    for m in methods:
        assert f"| {METHODS[m]} |" in md
    # label_names and supervised reuse zerohar's Stage I run, which never saw the bound's test subjects.
    assert not (tmp_path / "runs" / "label_names" / "fold1" / "seed0" / "stage1").exists()
    assert not (tmp_path / "runs" / "supervised" / "fold1" / "seed0" / "stage1").exists()
    per_run = list(csv.DictReader(io.StringIO((tmp_path / "runs.csv").read_text())))
    bound = next(r for r in per_run if r["method"] == "supervised")
    assert bound["test_subjects"] and bound["test_macro_f1"] == bound["macro_f1"]
    assert all(r["test_subjects"] == bound["test_subjects"] for r in per_run if r["method"] != "chance")
    assert all(r["test_macro_f1"] for r in per_run)
    assert "the two 'test subjects' columns score every row on exactly" in md
    assert (tmp_path / "runs" / "zerohar" / "fold1" / "seed0" / "stage2" / "eval" / "metrics.json").is_file()
    models = sorted(tmp_path.glob("runs/*/fold1/seed0/*/model.safetensors"))
    stamps = [p.stat().st_mtime_ns for p in models]
    log_lines = len((tmp_path / "benchmark.log").read_text().splitlines())
    again = run_benchmark("hapt", tmp_path, **kw)
    assert [p.stat().st_mtime_ns for p in models] == stamps  # nothing retrained
    new_log = (tmp_path / "benchmark.log").read_text().splitlines()[log_lines:]
    assert any("reused finished run" in line for line in new_log)
    assert not any(": trained " in line or ": evaluated:" in line for line in new_log)
    assert [a["accuracy_mean"] for a in again] == [a["accuracy_mean"] for a in agg]


def test_the_bound_test_subjects_are_every_stages_test_subjects(tmp_path):
    """The subjects of the test-subject columns: the supervised bound's test group of the fold and seed, which is
    also the test group of every zero-shot stage of that seed (nothing is trained to know it)."""
    sets = {"data": {"subjects": ["01", "02", "03", "04", "05", "06"]}, "train": {"epochs": 1}}
    r = _Runner(tmp_path, "hapt", None, sets, 0.5, None, False)  # --epochs-scale does not touch the split
    for seed in (0, 1):
        bound = r.bound_test_subjects("fold1", seed)
        assert len(bound) == 1  # round(0.2 * 6)
        for stage in ("stage1", "stage2"):
            assert load_stage_data(r.config(Step(stage, stage), "fold1", seed, None)).subjects["test"] == bound
    few = _Runner(tmp_path, "hapt", None, {"data": {"subjects": ["01", "02"]}, "train": {"val_fraction": 0.5}},
                  1.0, None, False)
    assert few.bound_test_subjects("fold1", 0) is None  # too few subjects for the bound: the columns are n/a


def test_test_subject_columns_chance_and_notes():
    folds = load_folds("hapt")
    ref = {"run": {"fold": "fold1", "stage": "stage2"}, "class_order": ["a", "b", "c", "d"],
           "per_class": {c: {"support": 10} for c in "abcd"}}
    tests = {("fold1", 0): {"a": 30, "b": 10, "c": 0, "d": 0}}
    rows = _chance_rows({"r": ref}, ["fold1"], 2, folds, "hapt", None, {}, tests)
    assert [r["seed"] for r in rows] == [0, 1]
    assert rows[0]["test_accuracy"] == 0.25 and rows[0]["test_macro_f1"] == pytest.approx(
        chance_metrics(np.array([0] * 30 + [1] * 10), 4, 12)["macro_f1"])
    assert rows[1]["test_accuracy"] is None  # no run of seed 1 measured its test subjects
    header = {"dataset": "hapt", "folds": ["fold1"], "seeds": [0], "command": "zerohar benchmark",
              "n_runs_per_method": 1, "date": "today", "wall_time_s": 1.0, "notes": [TEST_SUBJECTS_NOTE]}
    md = results_markdown(aggregate(rows, ["chance"]), header)
    assert "| unseen acc, test subjects | unseen macro-F1, test subjects |" in md and TEST_SUBJECTS_NOTE in md


def test_an_evaluation_on_other_test_subjects_is_not_current(tmp_path):
    import json

    model = tmp_path / "model.safetensors"
    model.write_text("x")
    result = tmp_path / "metrics.json"
    result.write_text(json.dumps({"eval_version": EVAL_VERSION, "test_subjects": {"subjects": ["03", "07"]}}))
    assert evaluation_is_current(result, model) and evaluation_is_current(result, model, ["07", "03"])
    assert not evaluation_is_current(result, model, ["03"])
    result.write_text(json.dumps({"eval_version": EVAL_VERSION - 1, "test_subjects": {"subjects": ["03"]}}))
    assert not evaluation_is_current(result, model, ["03"])  # older evaluations (GZSL on validation) are redone


def test_a_finished_run_of_other_settings_is_not_reused_silently(tmp_path):
    import json

    over = {"data": {"dataset": "hapt", "fold": "fold1"}, "train": {"seed": 1}}
    cfg = resolve_config("stage2", overrides=over)
    run = tmp_path / "stage2"
    assert _check_finished(run, cfg) is False  # nothing there yet
    run.mkdir()
    cfg.save(run / "config.yaml")
    for f in ("model.safetensors", "model.json"):
        (run / f).write_text("{}")
    (run / "metrics.json").write_text(json.dumps({"finished": True}))
    assert _check_finished(run, cfg) is True
    other = resolve_config("stage2", overrides={**over, "train": {"seed": 1, "epochs": 4}})
    with pytest.raises(ZeroharError, match=r"stage2 holds a finished run with other settings \(train.epochs\)"):
        _check_finished(run, other)


def test_benchmark_command_rejects_bad_input_before_training(tmp_path, capsys):
    base = ["benchmark", "--dataset", "hapt", "--out", str(tmp_path / "b"), "--no-progress"]
    assert main(base + ["--folds", "fold1,fold9"]) == 2
    assert "unknown fold 'fold9'" in capsys.readouterr().err
    assert main(base + ["--methods", "zerohar,magic"]) == 2
    assert "unknown methods ['magic']" in capsys.readouterr().err
    assert main(base + ["--seeds", "0"]) == 2
    assert "--seeds must be at least 1, found 0" in capsys.readouterr().err
    assert main(["benchmark", "--dataset", "nosuch", "--out", str(tmp_path / "c")]) == 2
    assert "unknown dataset 'nosuch'" in capsys.readouterr().err
    assert not (tmp_path / "b" / "runs").exists()
