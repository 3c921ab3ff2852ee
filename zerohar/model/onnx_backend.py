"""HARNet on ONNX Runtime: the backbone exported to ONNX, run in fp32 or in int8 (static quantization).

Optional (`pip install 'zerohar[onnx]'`): nothing else in zerohar needs onnxruntime, and importing this module
does not import it. The int8 backbone is the "less work per window" option of `precision="int8"` (see
:mod:`zerohar.inference.plan`): weights quantized per output channel (int8), activations per tensor (uint8) with
ranges calibrated on unlabelled windows (99.99th percentile, QDQ format; `classify` and `eval` use the input's
own windows, see :func:`zerohar.inference.embed.calibration_windows`), which ONNX Runtime runs with integer
convolutions (MLAS, AVX2 u8s8). Unlike PyTorch's int8 (tried earlier, README), the circular padding stays in int8
here: the Slice / Concat of the padding run on the quantized tensors between the integer convolutions.

Measured on an AMD EPYC with AVX2 only (2 cores, shared; README, "On a CPU without native bf16"): harnet5 int8
about 2x the fused fp32 backbone per core. With the input and the first convolution kept in fp32
(:func:`input_nodes`), the same label as fp32 on 99.6% of the 6,480 labelled HAPT windows and 97.5% of the
10,139 USC-HAD ones (fold1 Stage II runs, every class a candidate; 98.4% and 95.3% with the input quantized too;
`scripts/less_work.py`); the fp32 export 1.04-1.07x the fused backbone per core with the same
labels as fp32 on every window, too little to make an optional package the default path.

The fp32 export is cached on disk (`cache_dir()/onnx/`, keyed by the backbone's weights). An int8 model is
quantized for each calibration set (about 5 s for 256 triads on one core) and kept in the process; on disk only
the last one per weights (`<digest>-int8.onnx`: a cohort that calibrates on each recording's own windows does not
grow the cache by 4 MB a recording), which a call without calibration windows reuses.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import logging
import tempfile
import warnings
import weakref
from pathlib import Path

import numpy as np
import torch
from torch import nn

from zerohar.errors import ZeroharError
from zerohar.io import atomic_write_bytes
from zerohar.model.fused import agreement, check_windows
from zerohar.paths import cache_dir

logger = logging.getLogger(__name__)

#: ONNX opset of the export (Conv, Slice, Concat, BatchNormalization: any recent runtime).
OPSET = 17
#: The lowest cosine of the features against the plain module on the check windows
#: (:func:`~zerohar.model.fused.check_windows`) for each precision; int8 measured 0.995-0.999 on harnet5.
MIN_COSINE = {"fp32": 0.999, "int8": 0.98}
#: The lowest median cosine on a sample of the calibration triads (a guard against a broken calibration: min-max
#: ranges stretched by one outlier gave 0.14; percentile ranges 0.975-0.9997 on HAPT recordings).
MIN_MEDIAN_COSINE = 0.95
#: Synthetic windows (:func:`~zerohar.model.fused.check_windows`) added to every int8 calibration (and checked on
#: when no calibration is given).
CHECK_WINDOWS = 24
#: Calibration triads the int8 backbone is checked on (the median cosine, see :func:`onnx_backbone`).
CHECK_SAMPLE = 64
#: Activation ranges: this percentile of each tensor's values over the calibration triads, not min-max. One HAPT
#: recording (exp02, gyroscope up to 7.7 rad/s) stretched min-max ranges until the median cosine to fp32 was
#: 0.14; at 99.99 it is 0.998 (outliers saturate instead).
CALIBRATION_PERCENTILE = 99.99
#: Calibration triads per pass of the calibrator. The collector histograms each pass and drops its activations
#: (`CalibStridedMinMax` = 1 chunk per `collect_data`, which ONNX Runtime honours for every calibration method):
#: all 280 triads of one wrist sensor in one pass held every activation of the network at once, and a 1-day
#: `classify --precision int8` peaked at 1,429 MB against 631-644 MB in fp32.
CALIBRATION_CHUNK = 32


def onnx_available() -> bool:
    """Whether onnxruntime (the `onnx` extra) is installed."""
    try:
        return importlib.util.find_spec("onnxruntime") is not None
    except (ImportError, ValueError):  # a broken install, or a module entry without a spec
        return False


def require_onnxruntime(what: str = "ONNX Runtime inference") -> None:
    """Raise the one-sentence ZeroharError of a missing onnxruntime (the `onnx` extra), naming `what` needs it.

    Entry points (`classify`, `eval`, cohorts) call it before any work, so `--precision int8` without the
    package fails at once, not after the data are read.
    """
    if not onnx_available():
        raise ZeroharError(f"{what} needs the onnxruntime package, which is not installed: "
                           "pip install 'zerohar[onnx]'")


def _require():
    require_onnxruntime()
    import onnxruntime  # optional dependency: imported only where used

    return onnxruntime


def export_onnx(net: nn.Module) -> bytes:
    """The ONNX model (bytes) of a HARNet `net` in eval mode: input `x (N, 3, T)`, output `feat (N, D)`."""
    window = int(getattr(net, "window", 150))
    was_training = net.training
    buf = io.BytesIO()
    try:
        net.eval()
        with warnings.catch_warnings():  # the tracer warns about the shape checks, which hold for the window
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (torch.zeros(2, 3, window),), buf, input_names=["x"], output_names=["feat"],
                              dynamic_axes={"x": {0: "n"}, "feat": {0: "n"}}, opset_version=OPSET, dynamo=False)
    finally:
        net.train(was_training)
    return buf.getvalue()


def quantize_int8(model: bytes, calibration: np.ndarray) -> bytes:
    """The int8 model (bytes) of an fp32 ONNX backbone, calibrated on triads `calibration (N, 3, T)`.

    Static quantization in QDQ format: weights int8 per output channel, activations uint8 per tensor with
    ranges at the :data:`CALIBRATION_PERCENTILE` of the calibration triads.
    """
    _require()
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    calibration = np.ascontiguousarray(calibration, dtype=np.float32)
    if calibration.ndim != 3 or calibration.shape[1] != 3 or len(calibration) == 0:
        raise ZeroharError(f"int8 calibration needs triads shaped (N, 3, T); got {calibration.shape}")

    class Reader(CalibrationDataReader):
        """The triads in chunks of :data:`CALIBRATION_CHUNK`, one chunk per `collect_data` call (`set_range`)."""

        def __init__(self):
            self.chunks = [calibration[a : a + CALIBRATION_CHUNK]
                           for a in range(0, len(calibration), CALIBRATION_CHUNK)]
            self.batches = iter(self.chunks)

        def __len__(self) -> int:
            return len(self.chunks)

        def set_range(self, start_index: int, end_index: int) -> None:
            self.batches = iter(self.chunks[start_index:end_index])

        def get_next(self):
            x = next(self.batches, None)
            return None if x is None else {"x": x}

    def per_tensor_note(record: logging.LogRecord) -> bool:
        # The quantizer warns, on the root logger, for every BatchNorm vector that gets one scale, not one per
        # channel: expected for a 1-D weight, and 21 lines of it for harnet5.
        return "is out-of-range for weight" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(per_tensor_note)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            src, pre, out = (Path(tmp) / n for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
            src.write_bytes(model)
            quant_pre_process(str(src), str(pre))
            keep_fp32 = input_nodes(pre.read_bytes())
            with contextlib.redirect_stdout(io.StringIO()):  # the percentile calibrator prints its progress
                quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                                weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                                calibrate_method=CalibrationMethod.Percentile, nodes_to_exclude=keep_fp32,
                                extra_options={"CalibPercentile": CALIBRATION_PERCENTILE,
                                               "CalibStridedMinMax": 1})
            return out.read_bytes()
    finally:
        root.removeFilter(per_tensor_note)


def input_nodes(model: bytes) -> list[str]:
    """Names of the nodes from the graph input up to and including the first Conv: the first convolution and
    the circular padding of its input, which the int8 model keeps in fp32.

    The network's input is the raw triad: gravity (about 1 g) plus movements of a few hundredths of a g, clipped
    at +-3 g (gyroscope triads scaled to a similar range). One uint8 scale over that range has steps of about
    0.024 g, so quantizing the input rounds away the movements that tell sitting from standing, as a bf16 stream
    would (see :class:`~zerohar.model.fused.FusedHARNet`). The first convolution has 3 input channels: about
    0.1% of harnet5's multiply-adds, so fp32 there costs nothing measurable. From its output on (centred by the
    following BatchNorm) the network is int8.
    """
    import onnx  # the `onnx` extra: imported only where used

    graph = onnx.load_from_string(model).graph
    reached, names = {i.name for i in graph.input}, []
    for node in graph.node:  # topological order
        if any(t in reached for t in node.input):
            names.append(node.name)
            reached.update(node.output)
            if node.op_type == "Conv":
                return names
    return []


class OnnxHARNet(nn.Module):
    """A HARNet backbone run by ONNX Runtime (inference only): `(N, 3, T)` -> `(N, D)` float32 on the CPU.

    Args:
        model: the ONNX model (bytes), from :func:`export_onnx` or :func:`quantize_int8`.
        out_dim, window: the backbone's feature size and window length.
        precision: "fp32" or "int8", for logs.
        threads: intra-op threads (default: torch's).
    """

    def __init__(self, model: bytes, out_dim: int, window: int, precision: str = "fp32", threads: int | None = None):
        super().__init__()
        ort = _require()
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads or torch.get_num_threads())
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        self.out_dim, self.window, self.precision = int(out_dim), int(window), precision

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[1] != 3 or x.shape[2] != self.window:
            raise ZeroharError(f"the backbone expects windows shaped (N, 3, {self.window}); got {tuple(x.shape)}")
        a = np.ascontiguousarray(x.detach().float().cpu().numpy())
        return torch.from_numpy(self.session.run(None, {"x": a})[0])  # (N, D)

    def extra_repr(self) -> str:
        return f"precision={self.precision!r}, window={self.window}, out_dim={self.out_dim}"


def _cosine_quantile(net: nn.Module, candidate: nn.Module, x: torch.Tensor, q: float) -> float:
    """The `q` quantile of the cosine similarities of the features of `candidate` and of `net` (eval) on `x`."""
    was_training = net.training
    net.eval()
    try:
        with torch.inference_mode():
            cos = torch.nn.functional.cosine_similarity(net(x).float(), candidate(x).float(), dim=1)  # (n,)
    finally:
        net.train(was_training)
    return float(torch.quantile(cos, q))


def weights_digest(net: nn.Module) -> str:
    """A short digest of a module's parameters and buffers (names, shapes and values)."""
    h = hashlib.sha256()
    for name, t in net.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().float().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


#: ONNX backbones by source module and precision, rebuilt when its weights change.
_ONNX: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _signature(net: nn.Module) -> tuple:
    return tuple((t.data_ptr(), t._version) for t in list(net.parameters()) + list(net.buffers()))


def onnx_backbone(net: nn.Module, precision: str = "fp32", calibration: np.ndarray | None = None) -> OnnxHARNet:
    """An :class:`OnnxHARNet` of HARNet `net` in `precision` ("fp32" or "int8"), checked against `net`.

    Args:
        net: the HARNet backbone (its weights are copied into the ONNX model).
        precision: "fp32" (the export) or "int8" (the export, quantized).
        calibration: int8 only: triads `(N, 3, T)` of the data to run on or of training windows, no labels (a few
            hundred suffice). Without it, the int8 model calibrated last for the same weights (disk) is used.

    Raises:
        ZeroharError: onnxruntime is missing; int8 without calibration windows and no cached int8 model; or the
            result disagrees with `net`: cosine below :data:`MIN_COSINE` on the check windows, or for a new
            calibration in the median over a sample of its triads.
    """
    if precision not in MIN_COSINE:
        raise ZeroharError(f"ONNX precision {precision!r} is not known: expected one of {', '.join(MIN_COSINE)}")
    _require()
    sig = _signature(net)
    cal = None if calibration is None or precision == "fp32" else np.ascontiguousarray(calibration, np.float32)
    window = int(getattr(net, "window", 150))
    if cal is not None and (cal.ndim != 3 or cal.shape[1] != 3 or cal.shape[2] != window or not len(cal)):
        raise ZeroharError(f"calibration needs triads shaped (N, 3, T); got {tuple(cal.shape)} (T = {window})")
    cal_key = None if cal is None else hashlib.sha256(cal.tobytes()).hexdigest()[:12]
    cached = _ONNX.get(net, {}).get(precision)
    if cached is not None and cached[0] == sig and cal_key in (None, cached[1]):
        return cached[2]
    folder = cache_dir() / "onnx"
    digest = weights_digest(net)
    latest = folder / f"{digest}-int8.onnx"  # the last int8 calibration of these weights
    if precision == "int8" and cal is None and not latest.exists():
        raise ZeroharError("int8 inference needs calibration windows the first time for this backbone (training "
                           f"windows of the model); none given and no int8 model cached in {folder}")
    if precision == "int8" and cal is None:
        model = latest.read_bytes()
    else:
        fp32_path = folder / f"{digest}-fp32.onnx"
        if fp32_path.exists():
            model = fp32_path.read_bytes()
        else:
            model = export_onnx(net)
            atomic_write_bytes(fp32_path, model)
    check = check_windows(CHECK_WINDOWS, window)  # (n, 3, T)
    if cal is not None:  # quantized again for every calibration (a few seconds): one file per weights on disk
        logger.info("quantizing the backbone to int8 on %d calibration triads", len(cal))
        # The check windows join the calibration: the ranges then cover gravity on every axis and movement up to
        # 0.5 g whatever the given windows held (a recording's own first windows can all be one posture).
        model = quantize_int8(model, np.concatenate([cal, check.numpy()]))
        atomic_write_bytes(latest, model)
    run = OnnxHARNet(model, int(net.out_dim), window, precision)
    if cal is None:
        cos = agreement(net, run, check)
    else:
        # Checked on the data it was calibrated for: ranges set by a gyroscope (+-5 rad/s on HAPT) leave a 0.01 g
        # synthetic movement below one int8 step of the input, which real accelerometer windows never are
        # (median cosine 0.998-0.9997 on HAPT); the median is checked, as saturated outlier windows fall below.
        cos = _cosine_quantile(net, run, torch.from_numpy(cal[:: max(1, len(cal) // CHECK_SAMPLE)]), 0.5)
    least = MIN_COSINE[precision] if cal is None else MIN_MEDIAN_COSINE
    if cos < least:
        raise ZeroharError(f"the {precision} ONNX backbone disagrees with the plain one (cosine {cos:.4f} < "
                           f"{least}); run without it")
    _ONNX.setdefault(net, {})[precision] = (sig, cal_key, run)
    return run
