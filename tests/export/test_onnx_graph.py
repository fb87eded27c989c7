"""The fp16 conversion yields a file onnxruntime loads, whatever the converter repeats."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from export.onnx_graph import convert_fp16


def test_fp16_of_a_tensor_feeding_two_fp32_ops_loads_and_agrees(tmp_path):
    # Relu's output (fp16 after conversion) feeds two ops kept in fp32 (Sqrt, Softmax): the
    # converter casts it back twice, under one name, which onnxruntime 1.31 refuses.
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Sqrt", ["r"], ["a"], name="sqrt"),
        helper.make_node("Softmax", ["r"], ["b"], name="softmax", axis=-1),
        helper.make_node("Add", ["a", "b"], ["y"], name="add"),
    ]
    graph = helper.make_graph(
        nodes,
        "two_blocked_consumers",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 8])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    src, dst = tmp_path / "fp32.onnx", tmp_path / "fp16.onnx"
    onnx.save(model, str(src))
    convert_fp16(src, dst)

    converted = onnx.load(str(dst))
    outputs = [o for node in converted.graph.node for o in node.output]
    assert len(outputs) == len(set(outputs))  # every tensor defined once
    x = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    fp32 = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    fp16 = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
    expected, got = fp32.run(None, {"x": x})[0], fp16.run(None, {"x": x})[0]
    assert np.max(np.abs(expected - got)) <= 1e-2  # fp16 compute
