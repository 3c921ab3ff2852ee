"""The ONNX Runtime backbone (optional extra `onnx`): fp32 equal to HARNet, int8 close, cached, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import randomise_bn

from zerohar.errors import ZeroharError
from zerohar.inference.embed import embed_backbone, embed_windows
from zerohar.model import onnx_backend
from zerohar.model.fused import agreement, check_windows
from zerohar.model.harnet import HARNet
from zerohar.model.zerohar import ModelConfig, ZeroHARModel

needs_ort = pytest.mark.skipif(not onnx_backend.onnx_available(), reason="onnxruntime is not installed")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One cache folder for the module: the export of the fixture's weights is written once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def net(cache, monkeypatch):
    monkeypatch.setenv("ZEROHAR_CACHE", str(cache))
    torch.manual_seed(0)
    return randomise_bn(HARNet("harnet5"), seed=1).eval()


def _calibration(n: int = 16) -> np.ndarray:
    return check_windows(n=n, seed=3).numpy()  # (n, 3, 150)


@needs_ort
def test_onnx_fp32_equals_harnet(net):
    run = onnx_backend.onnx_backbone(net, "fp32")
    x = check_windows(n=5, seed=1)
    with torch.no_grad():
        torch.testing.assert_close(run(x), net(x), rtol=1e-4, atol=1e-4)
    assert onnx_backend.onnx_backbone(net, "fp32") is run  # cached per module


@needs_ort
def test_onnx_int8_is_close_and_cached_on_disk(net, cache):
    run = onnx_backend.onnx_backbone(net, "int8", _calibration())
    assert agreement(net, run) > onnx_backend.MIN_COSINE["int8"]
    names = {p.name.split("-", 1)[1] for p in (cache / "onnx").iterdir()}
    assert names == {"fp32.onnx", "int8.onnx"}  # the export and the last int8 calibration of these weights
    twin = HARNet("harnet5").eval()
    twin.load_state_dict(net.state_dict())  # another process, same weights, no calibration windows at hand
    again = onnx_backend.onnx_backbone(twin, "int8")
    x = check_windows(n=4, seed=2)
    torch.testing.assert_close(again(x), run(x))
    feats = embed_backbone(net, x.numpy(), precision="int8")  # the planned path: the same int8 backbone
    np.testing.assert_allclose(feats, run(x).numpy(), rtol=1e-5, atol=1e-5)


@needs_ort
def test_int8_keeps_the_input_and_first_convolution_in_fp32(net, cache):
    import onnx

    fp32 = onnx_backend.export_onnx(net)
    first = onnx_backend.input_nodes(fp32)
    ops = {n.name: n.op_type for n in onnx.load_from_string(fp32).graph.node}
    assert first and ops[first[-1]] == "Conv" and [ops[n] for n in first].count("Conv") == 1
    assert {"Slice", "Concat"} <= {ops[n] for n in first}  # the circular padding of the input

    int8 = onnx.load_from_string(onnx_backend.quantize_int8(fp32, _calibration(40)))  # 2 calibration chunks
    consumers = [n for n in int8.graph.node if "x" in n.input]
    assert consumers and all(n.op_type != "QuantizeLinear" for n in consumers)  # the raw triads stay fp32
    convs = [n for n in int8.graph.node if n.op_type == "Conv"]
    quantized = [c for c in convs if any(i.endswith("_DequantizeLinear_Output") for i in c.input)]
    assert len(quantized) == len(convs) - 1  # every convolution but the first runs on int8 tensors


@needs_ort
def test_onnx_int8_without_calibration_is_refused(net):
    net.layer1[0].weight.data.mul_(1.01)  # other weights: nothing cached for them
    with pytest.raises(ZeroharError, match=r"int8 inference needs calibration windows the first time"):
        onnx_backend.onnx_backbone(net, "int8")


@needs_ort
def test_onnx_rejects_bad_calibration_and_precision(net):
    with pytest.raises(ZeroharError, match=r"calibration needs triads shaped \(N, 3, T\); got \(4, 6, 150\)"):
        onnx_backend.onnx_backbone(net, "int8", np.zeros((4, 6, 150), np.float32))
    with pytest.raises(ZeroharError, match=r"ONNX precision 'int4' is not known: expected one of fp32, int8"):
        onnx_backend.onnx_backbone(net, "int4")


def test_missing_onnxruntime_is_one_clear_error(net, monkeypatch):
    monkeypatch.setattr(onnx_backend, "onnx_available", lambda: False)
    msg = r"needs the onnxruntime package, which is not installed: pip install 'zerohar\[onnx\]'"
    with pytest.raises(ZeroharError, match=msg):
        embed_backbone(net, np.zeros((2, 3, 150), np.float32), precision="int8")


@needs_ort
def test_embed_windows_int8_calibrates_on_the_models_triads(cache, monkeypatch):
    """`precision="int8"` with training windows: their clipped / scaled triads calibrate the backbone, and the
    window embeddings stay close to fp32."""
    monkeypatch.setenv("ZEROHAR_CACHE", str(cache))
    torch.manual_seed(0)
    model = ZeroHARModel(ModelConfig()).eval()
    ctx = torch.randn(2, model.cfg.d_text, generator=torch.Generator().manual_seed(1)).numpy()
    acc = check_windows(n=24, seed=4)  # (24, 3, 150) in g
    X = torch.cat([acc, 0.3 * check_windows(n=24, seed=5) - acc.mean(-1, keepdim=True)], 1).numpy()  # + gyro
    fp32 = embed_windows(model, X[:8], ctx, kinds=["acc", "gyro"], precision="fp32")
    int8 = embed_windows(model, X[:8], ctx, kinds=["acc", "gyro"], precision="int8", calibration=X[8:])
    assert int8.shape == fp32.shape and (int8 * fp32).sum(1).min() > 0.95
    with pytest.raises(ZeroharError, match=r"windows must be shaped \(B, C, T\) with C a multiple of 3"):
        embed_windows(model, X[:2], ctx, kinds=["acc", "gyro"], precision="int8", calibration=X[8:, :4])
