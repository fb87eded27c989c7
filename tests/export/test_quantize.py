"""int8: static QDQ covers the convolutions and weight products, the hybrid the convolutions
statically and the weight products dynamically; export ships an int8 graph only when its
argmax agreement with fp32 passes, trying each method in turn."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import onnx
import pytest
import torch

from emodistill.audio import SAMPLE_RATE_HZ
from emodistill.bundle import MODEL_FP32, MODEL_INT8
from export import onnx_graph, quantize
from export.bundle_writer import ExportOptions, Limits, failures, write_int8
from student.config import StudentConfig
from student.model import build_classifier

# Few agreement clips: these tests check the rule, not the figure (the exporter's own tests
# and bench/cpu_peak.py measure it on 200).
CLIPS = 16


@pytest.fixture(scope="module")
def fp32_graph(tmp_path_factory) -> Path:
    """A tiny random student's batch-invariant fp32 graph, as a bundle's work folder."""
    torch.manual_seed(0)
    model = build_classifier(StudentConfig(pretrained=None, preset="tiny"), list("abcd"))
    with torch.no_grad():
        model.classifier.weight.mul_(20.0)  # logits spread out, as a trained model's
    work = tmp_path_factory.mktemp("int8")
    onnx_graph.export_fp32(model, work / MODEL_FP32, SAMPLE_RATE_HZ, normalize=False)
    return work


def test_export_keeps_the_first_method_that_agrees(fp32_graph):
    options = ExportOptions(agreement_clips=CLIPS, limits=Limits(int8_argmax_agreement=0.5))
    tries = write_int8(fp32_graph, options)
    assert [t["method"] for t in tries] == [quantize.METHODS[0]] == [quantize.HYBRID]
    assert tries[0]["kept"] and tries[0]["argmax_agreement"] >= 0.5
    assert (fp32_graph / MODEL_INT8).exists()
    (fp32_graph / MODEL_INT8).unlink()


def test_static_quantizes_convolutions_and_weight_products(fp32_graph, tmp_path):
    quantize.quantize_int8(
        fp32_graph / MODEL_FP32, tmp_path / "q.onnx", quantize.STATIC, SAMPLE_RATE_HZ
    )
    q = onnx.load(str(tmp_path / "q.onnx"))
    # Every convolution but the one on the waveform reads dequantised int8 weights ...
    producer = {out: node.op_type for node in q.graph.node for out in node.output}
    convs = [n for n in q.graph.node if n.op_type == "Conv"]
    quantized = {n.name for n in convs if producer.get(n.input[1]) == "DequantizeLinear"}
    waveform = set(quantize.waveform_convs(onnx.load(str(fp32_graph / MODEL_FP32))))
    assert len(waveform) == 1  # the feature encoder's first layer
    assert quantized == {n.name for n in convs} - waveform
    # ... and no product by an fp32 weight is left.
    weights = {init.name for init in q.graph.initializer}
    assert not [n.name for n in q.graph.node if n.op_type == "MatMul" and n.input[1] in weights]
    ops = Counter(n.op_type for n in q.graph.node)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > ops["QuantizeLinear"]


def test_export_refuses_int8_when_no_method_agrees(fp32_graph):
    # Agreement above 1 cannot be reached: every method is tried, none is shipped.
    options = ExportOptions(agreement_clips=CLIPS, limits=Limits(int8_argmax_agreement=1.01))
    tries = write_int8(fp32_graph, options)
    assert [t["method"] for t in tries] == list(quantize.METHODS)
    assert not any(t["kept"] for t in tries)
    assert not (fp32_graph / MODEL_INT8).exists()
    # A refused try is recorded, not a failure of the export.
    assert failures({"int8_vs_fp32": tries[-1]}, options.limits) == []


def test_an_unknown_method_is_refused(fp32_graph, tmp_path):
    with pytest.raises(ValueError, match="unknown int8 method"):
        quantize.quantize_int8(fp32_graph / MODEL_FP32, tmp_path / "q.onnx", "fp4", 16_000)


def test_hybrid_quantizes_convolutions_statically_and_weight_products_dynamically(
    fp32_graph, tmp_path
):
    quantize.quantize_int8(
        fp32_graph / MODEL_FP32, tmp_path / "q.onnx", quantize.HYBRID, SAMPLE_RATE_HZ
    )
    q = onnx.load(str(tmp_path / "q.onnx"))
    producer = {out: node.op_type for node in q.graph.node for out in node.output}
    # Every convolution but the one on the waveform reads dequantised int8 weights (static) ...
    convs = [n for n in q.graph.node if n.op_type == "Conv"]
    quantized = {n.name for n in convs if producer.get(n.input[1]) == "DequantizeLinear"}
    waveform = set(quantize.waveform_convs(onnx.load(str(fp32_graph / MODEL_FP32))))
    assert quantized == {n.name for n in convs} - waveform
    # ... and every product by a weight is an integer product of an activation quantised at
    # run time (dynamic), with no fp32 weight product and no calibrated scale left for one.
    weights = {init.name for init in q.graph.initializer}
    assert not [n.name for n in q.graph.node if n.op_type == "MatMul" and n.input[1] in weights]
    integer_products = [n for n in q.graph.node if n.op_type == "MatMulInteger"]
    assert integer_products
    assert {producer.get(n.input[0]) for n in integer_products} == {"DynamicQuantizeLinear"}
    consumers = {i for n in q.graph.node if n.op_type == "MatMul" for i in n.input}
    assert not [
        n for n in q.graph.node if n.op_type == "DequantizeLinear" and n.output[0] in consumers
    ]
