"""`zerohar speed`: the harness runs and reports consistent figures (the numbers themselves are benchmarks)."""

from __future__ import annotations

import json

import pytest

from zerohar.cli import main


def test_speed_command_measures_a_figure_and_writes_json(tmp_path, capsys):
    out = tmp_path / "speed.json"
    assert main(["speed", "--quick", "--figures", "index_10", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| index_10 |" in printed and "Machine:" in printed
    r = json.loads(out.read_text())["index_10"]
    assert set(r) >= {"windows_per_s", "baseline_windows_per_s", "ratio", "peak_rss_mb"}
    assert r["windows_per_s"] > 0 and r["baseline_windows_per_s"] > 0
    assert r["ratio"] == pytest.approx(r["windows_per_s"] / r["baseline_windows_per_s"], abs=0.006)  # 2 decimals
    assert r["peak_rss_mb"] > 50  # the worker process's own peak, not zero
    from zerohar.model.precision import cpu_flags, resolve_precision

    assert r["cpu_flags"] == cpu_flags() and r["precision"] == resolve_precision("auto")  # what it ran on
    assert "flags:" in printed
    assert main(["speed", "--quick", "--figures", "index_10", "--json", str(out)]) == 2
    assert "already exists; pass --force to overwrite it" in capsys.readouterr().err


def test_classify_figures_count_the_windows_of_their_step(tmp_path):
    """The end-to-end figure on a 0.01-day recording: default step 2.5 s, and --step 5 (half the windows)."""
    from zerohar.evaluation.speed import classify_figure

    seconds = 0.01 * 86400
    half = classify_figure(quick=True, days=0.01, step=None)
    whole = classify_figure(quick=True, days=0.01, step=5.0)
    n_half = int(half["note"].split(" windows")[0].split()[-1])
    n_whole = int(whole["note"].split(" windows")[0].split()[-1])
    assert n_half == pytest.approx(seconds / 2.5, abs=2) and n_whole == pytest.approx(seconds / 5, abs=2)
    for r in (half, whole):
        assert r["windows_per_s"] > 0 and r["peak_rss_mb"] > 50


def test_pretraining_figures_run_on_tiny_batches():
    """The pretraining figures (SSL, motif distance, RelCon ranking and step) in quick mode, batch 4, K = 2."""
    from zerohar.evaluation.speed import FIGURES, PRETRAIN_FIGURES, SLOW_FIGURES, _pretrain_figure

    assert set(PRETRAIN_FIGURES) <= set(FIGURES) and "relcon_train" in SLOW_FIGURES
    for name in PRETRAIN_FIGURES:
        r = _pretrain_figure(name, quick=True, batch=4, within=2)
        assert set(r) >= {"windows_per_s", "baseline_windows_per_s", "ratio", "peak_rss_mb", "note"}
        assert r["windows_per_s"] > 0 and r["baseline_windows_per_s"] > 0 and "batch 4" in r["note"]
    assert r["note"].count("2 within-subject + 3 other anchors") == 1
