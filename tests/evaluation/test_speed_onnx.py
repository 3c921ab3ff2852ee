"""`zerohar speed` and the optional ONNX Runtime backbone: its figure runs only where onnxruntime is installed."""

from __future__ import annotations

import pytest

from zerohar.evaluation import speed


@pytest.mark.parametrize("installed", [True, False])
def test_onnx_figures_run_only_with_onnxruntime(monkeypatch, installed):
    ran = []

    def worker(name, quick):
        ran.append(name)
        return {"windows_per_s": 2.0, "baseline_windows_per_s": 1.0, "ratio": 2.0, "note": ""}

    monkeypatch.setattr(speed, "_worker", worker)
    monkeypatch.setattr(speed, "onnx_available", lambda: installed)
    monkeypatch.setattr(speed, "FIGURES", ("harnet5_inference", "model_inference", "model_inference_int8"))
    got = speed.run_speed(quick=True)
    assert ("model_inference_int8" in ran) is installed and "model_inference" in ran
    if installed:
        assert got["model_inference_int8"]["precision"] == "int8"  # what it ran, not the default's precision
    assert "model_inference_int8" in speed.CEILING_FIGURES


def test_int8_figure_without_onnxruntime_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(speed, "onnx_available", lambda: False)
    with pytest.raises(speed.ZeroharError, match=r"model_inference_int8 needs onnxruntime"):
        speed.run_figure("model_inference_int8", quick=True)
