"""`zerohar speed`: the harness runs and reports consistent figures (the numbers themselves are benchmarks)."""

from __future__ import annotations

import json

import pytest

from zerohar.cli import main
from zerohar.evaluation import speed
from zerohar.evaluation.speed import (
    CLASSIFY_CASCADE,
    CLASSIFY_DISTILLED,
    FIGURES,
    PRETRAIN_FIGURES,
    SLOW_FIGURES,
    _pretrain_figure,
    add_ceiling_shares,
    backbone_gflop,
    ceiling_line,
    classify_figure,
    format_table,
    random_distilled,
    random_run,
)
from zerohar.model.harnet import DistilledHARNet
from zerohar.model.precision import cpu_flags, resolve_precision
from zerohar.train.distill import DEFAULT_WIDTH
from zerohar.train.runs import load_run


def test_speed_command_measures_a_figure_and_writes_json(tmp_path, capsys):
    out = tmp_path / "speed.json"
    # --min-ratio 0: this test checks the harness; whether a path is fast enough is the benchmark's business
    assert main(["speed", "--quick", "--figures", "index_10", "--json", str(out), "--min-ratio", "0"]) == 0
    printed = capsys.readouterr().out
    assert "| index_10 |" in printed and "Machine:" in printed and "Ceiling: 2048x2048 fp32 matmul" in printed
    r = json.loads(out.read_text())["index_10"]
    assert set(r) >= {"windows_per_s", "baseline_windows_per_s", "ratio", "peak_rss_mb"}
    assert r["windows_per_s"] > 0 and r["baseline_windows_per_s"] > 0
    assert r["ratio"] == pytest.approx(r["windows_per_s"] / r["baseline_windows_per_s"], abs=0.006)  # 2 decimals
    assert r["peak_rss_mb"] > 50  # the worker process's own peak, not zero
    assert r["matmul_gflops"] > 0
    assert r["cpu_flags"] == cpu_flags() and r["precision"] == resolve_precision("auto")  # what it ran on
    assert "flags:" in printed
    assert main(["speed", "--quick", "--figures", "index_10", "--json", str(out)]) == 2
    assert "already exists; pass --force to overwrite it" in capsys.readouterr().err


def test_classify_figures_count_the_windows_of_their_step(tmp_path):
    """The end-to-end figure on a 0.01-day device file (86 whole GENEActiv pages of 300 samples: 860 s): default
    step 2.5 s, and --step 5 (half the windows)."""
    seconds = 86 * 300 / 30
    half = classify_figure(quick=True, days=0.01, step=None)
    whole = classify_figure(quick=True, days=0.01, step=5.0)
    n_half = int(half["note"].split(" windows")[0].split()[-1])
    n_whole = int(whole["note"].split(" windows")[0].split()[-1])
    assert n_half == pytest.approx(seconds / 2.5, abs=2) and n_whole == pytest.approx(seconds / 5, abs=2)
    for r in (half, whole):
        assert r["windows_per_s"] > 0 and r["peak_rss_mb"] > 50


def test_pretraining_figures_run_on_tiny_batches():
    """The pretraining figures (SSL, motif distance, RelCon ranking and step) in quick mode, batch 4, K = 2."""
    assert set(PRETRAIN_FIGURES) <= set(FIGURES) and "relcon_train_separate" in SLOW_FIGURES
    notes = {}
    for name in PRETRAIN_FIGURES:
        r = _pretrain_figure(name, quick=True, batch=4, within=2)
        assert set(r) >= {"windows_per_s", "baseline_windows_per_s", "ratio", "peak_rss_mb", "note"}
        assert r["windows_per_s"] > 0 and r["baseline_windows_per_s"] > 0 and "batch 4" in r["note"]
        notes[name] = r["note"]
    assert notes["relcon_train_separate"].count("2 within-subject + 3 other anchors") == 1
    assert "grouped batching: ranking of every window against the other 3" in notes["relcon_train"]
    assert "= 12 pairs per step" in notes["relcon_ranking"]


def test_distilled_figures_are_listed_and_their_run_gets_a_random_student(tmp_path):
    """`classify_7day_distilled` needs a run with a distilled backbone: a random-weight one in distill's format."""
    assert {"model_inference_distilled", *CLASSIFY_DISTILLED} <= set(FIGURES)
    assert "model_inference_distilled" not in SLOW_FIGURES  # needs nothing optional: in the default and quick sets
    run_dir = random_distilled(random_run(tmp_path / "run"))
    run = load_run(run_dir, distilled=True)
    assert isinstance(run.student, DistilledHARNet) and run.student.width == DEFAULT_WIDTH
    assert random_distilled(run_dir) == run_dir  # written once, then reused


def test_cascade_figure_needs_a_run_and_reports_the_share_checked_again(tmp_path, monkeypatch):
    """`classify_7day_cascade` times `--cascade` on a given run (here a random one: the harness, not its speed) and
    is left out of the default figures without a run."""
    assert set(CLASSIFY_CASCADE) <= set(SLOW_FIGURES) & set(FIGURES)
    with pytest.raises(speed.ZeroharError, match="--run RUN"):
        classify_figure(quick=True, days=0.01, cascade=True)
    run_dir = random_distilled(random_run(tmp_path / "run"))
    r = classify_figure(quick=True, days=0.01, cascade=True, run=run_dir)
    assert 0 <= r["checked_share"] <= 1 and "checked again" in r["note"] and str(run_dir) in r["note"]
    assert r["windows_per_s"] > 0 and r["baseline_windows_per_s"] > 0
    assert 0 <= r["same_labels_as_fp32"] <= 1 and "the same as fp32" in r["note"]
    ran = []
    monkeypatch.setattr(speed, "classify_figure", lambda *a, **k: ran.append(k) or {"error": "not timed"})
    monkeypatch.setattr(speed, "_worker", lambda name, quick: {"error": "not timed"})
    monkeypatch.setattr(speed, "FIGURES", ("classify_7day", "classify_7day_cascade"))
    speed.run_speed()
    assert [k["cascade"] for k in ran] == [False]
    ran.clear()
    speed.run_speed(run=str(run_dir))
    assert [k["cascade"] for k in ran] == [False, True] and all(k["run"] == str(run_dir) for k in ran)


def test_same_labels_compares_two_outputs_row_by_row(tmp_path):
    for name, labels in {"a": ["walking", "sitting", "unknown"], "b": ["walking", "lying", "unknown"]}.items():
        folder = tmp_path / name / "rec"
        folder.mkdir(parents=True)
        (folder / "windows.csv").write_text("start_s,label,score\n" + "".join(f"{i},{lab},0.5\n" for i, lab in
                                                                           enumerate(labels)))
    assert speed.same_labels(tmp_path / "a", tmp_path / "b") == pytest.approx(2 / 3)
    (tmp_path / "c.csv").write_text("start_s,label,score\n0,walking,0.5\n")
    with pytest.raises(speed.ZeroharError, match="the same windows"):
        speed.same_labels(tmp_path / "c.csv", tmp_path / "a")


# ---------------------------------------------------------------------------------------------- ceiling and the gate
def test_backbone_gflop_counts_the_convolutions():
    assert backbone_gflop("harnet5") == pytest.approx(0.234, abs=0.002)  # BENCHMARK.md's figure
    assert backbone_gflop("harnet10") > 2 * backbone_gflop("harnet5") * 0.9


def test_ceiling_shares_and_line():
    c = {"matmul_gflops": 170.0, "threads": 2, "backbones": {"harnet5": {"gflop_per_window": 0.234,
                                                                       "windows_per_s": 726.5},
                                                             "harnet10": {"gflop_per_window": 0.574,
                                                                          "windows_per_s": 296.2}}}
    results = {"harnet5_inference": {"windows_per_s": 600.0, "baseline_windows_per_s": 590.0, "ratio": 1.02,
                                     "peak_rss_mb": 500.0, "note": ""},
               "model_inference": {"windows_per_s": 300.0, "baseline_windows_per_s": 290.0, "ratio": 1.03,
                                   "peak_rss_mb": 600.0, "note": ""},
               "index_10": {"error": "failed"}}
    add_ceiling_shares(results, c)
    assert results["harnet5_inference"]["ceiling_share"] == pytest.approx(600 / 726.5, abs=1e-3)
    assert results["model_inference"]["ceiling_windows_per_s"] == pytest.approx(726.5 / 2, abs=0.1)  # 2 triads
    assert "ceiling_share" not in results["index_10"]
    line = ceiling_line(c)
    assert line.startswith("Ceiling: 2048x2048 fp32 matmul 170 GFLOP/s on 2 threads")
    assert "harnet5 (0.234 GFLOP/window) <= 726 windows/s" in line or "<= 727 windows/s" in line
    assert "83% of 726" in format_table(results) or "83% of 727" in format_table(results)


def test_slow_default_paths_are_retried_then_reported(monkeypatch):
    assert speed.slow_default_paths({"a": {"ratio": 0.96}, "b": {"ratio": 0.97}, "c": {"error": "x"},
                                     "d": {"ratio": None}}) == {"a": 0.96}
    tries = {"harnet5_inference": [0.90, 0.99], "model_inference": [0.90, 0.80, 0.85]}

    def worker(name, quick):
        return {"windows_per_s": 1.0, "baseline_windows_per_s": 1.0, "ratio": tries[name].pop(0), "note": ""}

    monkeypatch.setattr(speed, "_worker", worker)
    got = speed.run_speed(["harnet5_inference", "model_inference"], quick=True, repeats=3)
    assert got["harnet5_inference"]["ratio"] == 0.99 and got["harnet5_inference"]["tries"] == 2  # noise: passes
    assert got["model_inference"]["ratio"] == 0.90 and not tries["model_inference"]  # best of 3, still slow
    assert speed.slow_default_paths(got) == {"model_inference": 0.90}


def test_speed_command_fails_in_one_line_when_a_default_path_is_slower(monkeypatch, capsys):
    monkeypatch.setattr(speed, "measure_ceiling", lambda quick: {"matmul_gflops": 100.0, "threads": 2, "backbones": {
        "harnet5": {"gflop_per_window": 0.234, "windows_per_s": 427.4}}})
    monkeypatch.setattr(speed, "run_speed", lambda *a, **k: {"index_10": {
        "windows_per_s": 50.0, "baseline_windows_per_s": 100.0, "ratio": 0.5, "peak_rss_mb": 1.0, "note": ""}})
    assert main(["speed", "--quick", "--figures", "index_10"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["zerohar speed: error: default path slower than plain (ratio below 0.97 after 3 tries): "
                   "index_10 0.50x"]
