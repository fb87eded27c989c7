"""int8 graphs of the student for the CPU: static QDQ calibrated on probe clips, a hybrid
(static convolutions, dynamic products), and dynamic.

Dynamic quantisation (onnxruntime's `quantize_dynamic`) covers only the MatMuls with constant
weights: the convolutional feature encoder (about a third of HuBERT-base's FLOPs), the
positional convolution and the attention products stay fp32, so the int8 engine ran only
1.35× fp32 on HuBERT-base where the CPU's u8×s8 rate is 4× its fp32 rate (issue 26).
Static QDQ quantises the convolutions and the weight MatMuls, activation ranges calibrated on
the synthetic speech-like probe clips (export/parity.py, a seed of their own, so the
agreement figures are never measured on the calibration set): onnxruntime fuses each
DequantizeLinear -> Conv -> QuantizeLinear into QLinearConv and each DequantizeLinear pair ->
MatMul into MatMulIntegerToFloat. Weights are per output channel, signed; activations are
unsigned (u8×s8, the kernels onnxruntime's x86 build has for VNNI and AMX).
The hybrid quantises the convolutions statically as above and the weight MatMuls dynamically:
each product's activation scale is computed from the batch at run time instead of from the
calibration clips' range, which is what the transformer layers' answers are most sensitive to
(agreement figures at METHODS).

Knows nothing of bundles or of the agreement limit: export/bundle_writer.py measures each
candidate and keeps the first that passes.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)

from emodistill.audio import pad_batch
from emodistill.bundle import ATTENTION_MASK, INPUT_VALUES

from . import parity

STATIC = "static-qdq"
HYBRID = "static-conv-dynamic-matmul"
DYNAMIC = "dynamic"
# The exporter's order of preference: fastest first; it keeps the first whose agreement passes.
# HuBERT-base (random init), 2 cores, timed in alternation against fp32 (issue 26d), speed at
# 2 s × 4, 2 s × 1, 6 s × 1 and argmax agreement on the exporter's 200 clips:
#   hybrid  3.13×, 3.59×, 2.74×  agreement 0.970 (1.000 on the 86 % of clips beyond a near-tie)
#   static  2.90×, 3.23×, 2.57×  agreement 0.915 (0.971 beyond the near-ties)
#   dynamic 1.78×, 1.92×, 1.73×  agreement 0.985 (1.000 beyond the near-ties)
# The hybrid is both faster and closer to fp32 than static QDQ (the dynamic products' fused
# kernel quantises the activation in the same pass; static QDQ's flips come from calibrated
# activation ranges in the transformer layers), so static is no export try: it would only be
# reached where the hybrid failed, and it never agrees better. Dynamic is the fallback.
METHODS = (HYBRID, DYNAMIC)
ALL_METHODS = (HYBRID, STATIC, DYNAMIC)  # what quantize_int8 knows; bench/cpu_peak.py times each
# Calibration: clips of 0.5-4 s as the agreement clips are, a seed of their own (those use 3).
CALIBRATION_CLIPS = 16
CALIBRATION_SEED = 11
CALIBRATION_BATCH = 8
# Quantised by the static pass: the convolutions (feature encoder, positional embedding) and
# the matrix products by a weight. Normalisations, softmax, GELU, the attention's own products
# (activation by activation: softmax weights in u8 cost agreement, and at 2-6 s clips they are
# ~2 % of the FLOPs) and the classifier head (Gemm, a few kFLOP) stay fp32.
STATIC_OPS = ["Conv", "MatMul"]


class ClipBatches(CalibrationDataReader):
    """Padded batches of raw clips as the graph's feeds, one per `get_next`, then None."""

    def __init__(self, clips: Sequence[np.ndarray], batch_size: int):
        self._feeds = [
            dict(
                zip(
                    (INPUT_VALUES, ATTENTION_MASK),
                    pad_batch(clips[i : i + batch_size]),
                    strict=True,
                )
            )
            for i in range(0, len(clips), batch_size)
        ]
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self._feeds):
            return None
        self._next += 1
        return self._feeds[self._next - 1]


def calibration_clips(sample_rate_hz: int, n: int = CALIBRATION_CLIPS) -> list[np.ndarray]:
    """Raw float32 clips of 0.5-4 s (the graph normalises them itself)."""
    return parity.probe_clips(n, 0.5, 4.0, sample_rate_hz, CALIBRATION_SEED)


def waveform_convs(model: onnx.ModelProto) -> list[str]:
    """The Conv nodes that read one input channel (the feature encoder's first layer, on the
    raw waveform; weight [O, 1, k]).

    Left in fp32: they hold about 0.2 % of HuBERT-base's FLOPs, and quantising one moves the
    group norm after it into onnxruntime's channels-last layout (its QLinearConv is NHWC),
    where the masked norm's ReduceSum over time ran 15× slower ([1, 6399, 512] over axis 1:
    60-80 ms against 4-5 ms channels-first, 2 s clip) and took a third of the int8 graph's time.
    """
    weights = {init.name: list(init.dims) for init in model.graph.initializer}
    producer = {out: node for node in model.graph.node for out in node.output}
    names = []
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        source = node.input[1]
        while source not in weights and source in producer:  # the exporter's Identity nodes
            source = producer[source].input[0]
        if len(weights.get(source, [])) == 3 and weights[source][1] == 1:
            names.append(node.name)
    return names


def quantize_static_int8(
    src: Path, dst: Path, clips: Sequence[np.ndarray], op_types: Sequence[str] = STATIC_OPS
) -> None:
    """Static QDQ int8 of `op_types` in `src` (a batch-invariant fp32 graph), calibrated on
    `clips`."""
    quiet = logging.getLogger()  # the quantiser logs advice on every call at WARNING
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    model = onnx.load(str(src))
    try:
        # Handed over loaded: given a path, the quantiser writes "<name>-inferred.onnx" beside
        # it (inside a bundle, and two runs on one file collide); a model goes to a temp dir.
        quantize_static(
            model,
            str(dst),
            ClipBatches(clips, CALIBRATION_BATCH),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(op_types),
            nodes_to_exclude=waveform_convs(model),
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"MatMulConstBOnly": True},
        )
    finally:
        quiet.setLevel(level)


def quantize_dynamic_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 of the MatMul weights; convolutions and activation products stay fp32."""
    quantize_dynamic(
        str(src), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"]
    )


def quantize_hybrid_int8(src: Path, dst: Path, clips: Sequence[np.ndarray]) -> None:
    """Static QDQ int8 of the convolutions (calibrated on `clips`), then dynamic int8 of the
    weight MatMuls: their activations' scales are computed per batch at run time."""
    with tempfile.TemporaryDirectory() as tmp:
        convs = Path(tmp) / "convs.onnx"
        quantize_static_int8(src, convs, clips, ["Conv"])
        # MatMul only: the classifier head (Gemm, a few kFLOP) stays fp32 as in the static pass.
        quantize_dynamic(
            str(convs), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"]
        )


def quantize_int8(src: Path, dst: Path, method: str, sample_rate_hz: int) -> None:
    """`src` -> `dst` by `method` (one of ALL_METHODS)."""
    if method == STATIC:
        quantize_static_int8(src, dst, calibration_clips(sample_rate_hz))
    elif method == HYBRID:
        quantize_hybrid_int8(src, dst, calibration_clips(sample_rate_hz))
    elif method == DYNAMIC:
        quantize_dynamic_int8(src, dst)
    else:
        raise ValueError(f"unknown int8 method {method!r}; one of {ALL_METHODS}")
