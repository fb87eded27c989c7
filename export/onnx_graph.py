"""The student as ONNX graphs: batch-invariant fp32, fp16 for CUDA (int8: export/quantize.py).

The exported module is `student.batch_invariant.classify`, so a clip's logits do not depend
on what it is batched with, and the preprocessor's normalisation is inside the graph: every
consumer feeds raw audio. A student with a dimensional head gets a second output,
`dimensions` [batch, 3], from the same pooled embedding as the logits; a student trained
without categories (no labels) has that output alone. The naive export
(transformers' own forward, one input, as optimum's default configs have it) is kept only to
measure what it gets wrong.
Knows nothing of bundles or parity thresholds.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import torch
from onnxruntime.transformers.float16 import convert_float_to_float16

from emodistill.bundle import ATTENTION_MASK, DIMENSIONS, INPUT_VALUES, LOGITS
from student.batch_invariant import classify
from student.encoders import SpeechClassifier
from student.model import DimensionHead

OPSET = 17
# Kept in fp32 in the fp16 graph: fp16 overflows in normalisations and reductions
# (onnxruntime#31626, onnxconverter-common#323), and softmax needs the range for masking.
FP32_OPS = ["LayerNormalization", "ReduceMean", "ReduceSum", "Pow", "Sqrt", "Div", "Softmax"]


class BatchInvariantClassifier(torch.nn.Module):
    """(input_values [B, S] float32 raw audio, attention_mask [B, S] int64) -> logits [B, C],
    or (logits [B, C], dimensions [B, 3]) with a dimensional head, or dimensions [B, 3] alone
    when not `categorical` (a student trained without labels)."""

    def __init__(
        self,
        model: SpeechClassifier,
        normalize: bool,
        dimension_head: DimensionHead | None = None,
        categorical: bool = True,
    ):
        super().__init__()
        if not categorical and dimension_head is None:
            raise ValueError("a graph needs categories, dimensions or both; this has neither")
        self.model = model
        self.normalize = normalize
        self.dimension_head = dimension_head
        self.categorical = categorical

    def forward(
        self, input_values: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        logits, embedding = classify(self.model, input_values, attention_mask, self.normalize)
        if self.dimension_head is None:
            return logits
        dimensions = self.dimension_head(embedding)
        return (logits, dimensions) if self.categorical else dimensions

    @property
    def output_names(self) -> list[str]:
        """The graph's outputs in order (bundle.json's `outputs` lists them so)."""
        names = [LOGITS] if self.categorical else []
        return names + ([DIMENSIONS] if self.dimension_head is not None else [])


class NaiveClassifier(torch.nn.Module):
    """transformers' forward without a mask: pools over padding, GroupNorm over padding."""

    def __init__(self, model: SpeechClassifier):
        super().__init__()
        self.model = model

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        return self.model(input_values).logits


def example_inputs(sample_rate_hz: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A padded batch of two: tracing with padding keeps mask-dependent code general."""
    samples = sample_rate_hz  # 1 s
    values = torch.randn(2, samples, generator=torch.Generator().manual_seed(0)) * 0.1
    mask = torch.ones(2, samples, dtype=torch.int64)
    mask[1, samples // 2 :] = 0
    return values, mask


def _export(
    module: torch.nn.Module,
    args: tuple,
    names: list[str],
    path: Path,
    outputs: tuple[str, ...] = (LOGITS,),
) -> None:
    module.eval()  # the exporter restores the mode it found, so set eval for good
    axes = {name: {0: "batch", 1: "samples"} for name in names}
    axes.update({name: {0: "batch"} for name in outputs})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python-side shape arithmetic
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=names,
            output_names=list(outputs),
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
            do_constant_folding=True,
        )
    onnx.checker.check_model(str(path))


def export_fp32(
    model: SpeechClassifier,
    path: Path,
    sample_rate_hz: int,
    normalize: bool,
    dimension_head: DimensionHead | None = None,
    categorical: bool = True,
) -> None:
    """The batch-invariant graph; `normalize`: the preprocessor's do_normalize, in the graph;
    `dimension_head`: the output `dimensions`, when given; `categorical` False: no `logits`
    output (a student without labels)."""
    module = BatchInvariantClassifier(model, normalize, dimension_head, categorical)
    _export(
        module,
        example_inputs(sample_rate_hz),
        [INPUT_VALUES, ATTENTION_MASK],
        path,
        tuple(module.output_names),
    )


def export_naive(model: SpeechClassifier, path: Path, sample_rate_hz: int) -> None:
    _export(NaiveClassifier(model), example_inputs(sample_rate_hz)[:1], [INPUT_VALUES], path)


def convert_fp16(src: Path, dst: Path) -> None:
    """fp16 weights and compute, fp32 inputs and outputs, FP32_OPS kept in fp32.

    onnxruntime's converter, not onnxconverter-common's: the latter leaves the weights that
    the exporter routes through Identity nodes with mismatched types.
    """
    model = convert_float_to_float16(
        onnx.load(str(src)), keep_io_types=True, op_block_list=FP32_OPS
    )
    _drop_repeated_casts(model.graph)
    _skip_fp16_round_trips(model)
    onnx.save(model, str(dst))


def _drop_repeated_casts(graph: onnx.GraphProto) -> None:
    """onnxruntime 1.31's converter, when one tensor feeds two blocked ops, inserts the same
    Cast twice (same name, same output); onnxruntime 1.31 then refuses the file ("Duplicate
    definition of name"). The second is the first computed again: drop it."""
    first: dict[str, onnx.NodeProto] = {}
    keep = []
    for node in graph.node:
        repeated = [first[o] for o in node.output if o in first]
        if repeated:
            if any(r.SerializeToString() != node.SerializeToString() for r in repeated):
                raise ValueError(f"fp16 graph defines {list(node.output)} twice, differently")
            continue
        first.update(dict.fromkeys(node.output, node))
        keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)


def _skip_fp16_round_trips(model: onnx.ModelProto) -> None:
    """Between two kept-fp32 ops the converter stores the tensor in fp16 (Cast to fp16, Cast
    back): a sum of squares over a 12 s clip (~1e5) becomes inf there. Consumers of such a
    round trip read the fp32 tensor instead; a Cast left with no reader is dropped."""
    graph = model.graph
    inferred = onnx.shape_inference.infer_shapes(model).graph
    dtype = {v.name: v.type.tensor_type.elem_type for v in [*inferred.value_info, *graph.input]}
    producer = {out: node for node in graph.node for out in node.output}
    graph_outputs = {o.name for o in graph.output}

    def cast_to(node: onnx.NodeProto, dtype: int) -> bool:
        return (
            node.op_type == "Cast" and onnx.helper.get_attribute_value(node.attribute[0]) == dtype
        )

    replace: dict[str, str] = {}
    for node in graph.node:
        source = producer.get(node.input[0]) if node.input else None
        if (
            cast_to(node, onnx.TensorProto.FLOAT)
            and source is not None
            and cast_to(source, onnx.TensorProto.FLOAT16)
            and dtype.get(source.input[0]) == onnx.TensorProto.FLOAT
            and node.output[0] not in graph_outputs
        ):
            replace[node.output[0]] = source.input[0]
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in replace:
                node.input[i] = replace[name]
    read = {name for node in graph.node for name in node.input} | graph_outputs
    keep = [n for n in graph.node if n.op_type != "Cast" or any(o in read for o in n.output)]
    del graph.node[:]
    graph.node.extend(keep)
