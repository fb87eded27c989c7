"""Checkpoint -> verified model bundle; and re-verification of an existing bundle.

Builds the bundle in a temporary folder and moves it into place only when every parity
figure is within its limit, so a failed export leaves nothing a service could load.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from emodistill.audio import SAMPLE_RATE_HZ, normalize_clip
from emodistill.bundle import (
    ATTENTION_MASK,
    DIMENSION_SCALE,
    DIMENSIONS,
    INPUT_VALUES,
    LOGITS,
    METADATA,
    MODEL_CONFIG,
    MODEL_FP16,
    MODEL_FP32,
    MODEL_INT8,
    PREPROCESSOR_CONFIG,
    TRAINING_METRICS,
    BundleMetadata,
    DimensionSpec,
    TensorSpec,
    TrainingRecord,
    checksum_problems,
    read_metadata,
    sha256_of,
)
from student.encoders import FAMILIES, SpeechClassifier
from student.model import (
    DIMENSION_HEAD_FILE,
    DimensionHead,
    load_classifier,
    load_dimension_head,
)

from . import onnx_graph, parity, quantize

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class Limits:
    """The parity contract: every figure is checked against one of these."""

    fp32_vs_pytorch_logit: float = 1e-4
    fp32_batched_probability: float = 1e-4
    fp16_batched_probability: float = 5e-3
    fp16_argmax_agreement: float = 0.995
    fp16_probability: float = 1e-2
    int8_argmax_agreement: float = 0.99
    # The dimensions lie in (0, 1), as probabilities do: the same limits on the same scale.
    fp32_vs_pytorch_dimension: float = 1e-4
    fp32_batched_dimension: float = 1e-4
    fp16_batched_dimension: float = 5e-3
    fp16_dimension: float = 1e-2
    int8_dimension: float = 5e-2  # int8 is kept only within it (and its argmax agreement)


@dataclass(frozen=True)
class ExportOptions:
    name: str = "emodistill"
    version: str = "1"
    int8: bool = True
    # Tried in this order; the first whose argmax agreement passes is shipped (quantize.py).
    int8_methods: tuple[str, ...] = quantize.METHODS
    agreement_clips: int = 200  # fp16 and int8 vs fp32, 0.5-4 s
    reference_clips: int = 36  # fp32 vs PyTorch, 0.5-12 s
    invariance_clips: int = 12  # one padded batch vs alone, 0.5-12 s
    naive_contrast: bool = True
    limits: Limits = field(default_factory=Limits)


class CheckpointError(ValueError):
    """The checkpoint folder is not a usable speech classifier; says what is wrong."""


class ParityError(RuntimeError):
    """A parity figure is outside its limit; the message names it."""


def check_checkpoint(checkpoint: Path, expected_labels: list[str] | None = None) -> dict[str, Any]:
    """The checkpoint's config.json, after checking files, architecture and labels."""
    if not checkpoint.is_dir():
        raise CheckpointError(f"{checkpoint} is not a folder")
    missing = [n for n in (MODEL_CONFIG, PREPROCESSOR_CONFIG) if not (checkpoint / n).is_file()]
    if not any((checkpoint / n).is_file() for n in WEIGHT_FILES):
        missing.append(" or ".join(WEIGHT_FILES))
    if missing:
        raise CheckpointError(f"{checkpoint} lacks {', '.join(missing)}: not a saved student")
    config = json.loads((checkpoint / MODEL_CONFIG).read_text())
    family = FAMILIES.get(config.get("model_type", ""))
    if family is None or family.classifier_class.__name__ not in config.get("architectures", []):
        supported = ", ".join(f.classifier_class.__name__ for f in FAMILIES.values())
        raise CheckpointError(
            f"{checkpoint} holds {config.get('architectures')} ({config.get('model_type')}), "
            f"not a supported speech classifier ({supported})"
        )
    id2label = config.get("id2label", {})
    labels = [id2label.get(str(i)) for i in range(len(id2label))]
    if None in labels or len(labels) != config.get("num_labels", len(labels)) or len(labels) == 1:
        raise CheckpointError(f"{checkpoint}: id2label {id2label} is not a label for each output")
    if not labels and not (checkpoint / DIMENSION_HEAD_FILE).is_file():
        raise CheckpointError(
            f"{checkpoint} has neither categories (no labels) nor dimensions (no "
            f"{DIMENSION_HEAD_FILE}): a bundle needs one or both, there is nothing to export"
        )
    if expected_labels is not None and labels != expected_labels:
        raise CheckpointError(f"{checkpoint}: labels {labels} do not match {expected_labels}")
    rate = json.loads((checkpoint / PREPROCESSOR_CONFIG).read_text()).get("sampling_rate")
    if rate != SAMPLE_RATE_HZ:
        raise CheckpointError(f"{checkpoint}: sampling_rate {rate}, expected {SAMPLE_RATE_HZ}")
    return config


def read_training_record(checkpoint: Path) -> TrainingRecord:
    """What training wrote beside the checkpoint (`TRAINING_METRICS`); empty when it wrote
    nothing (a checkpoint saved by hand)."""
    path = checkpoint / TRAINING_METRICS
    if not path.is_file():
        return TrainingRecord()
    try:
        return TrainingRecord.model_validate_json(path.read_text())
    except ValueError as err:
        raise CheckpointError(f"{path} is not a training record: {err}") from err


def _labels(config: dict[str, Any]) -> list[str]:
    return [config["id2label"][str(i)] for i in range(len(config["id2label"]))]


def _torch_reference(
    model: SpeechClassifier, do_normalize: bool, dimension_head: DimensionHead | None = None
) -> Callable[[np.ndarray], parity.Outputs]:
    """The checkpoint as transformers runs it (after its preprocessor), on one raw clip:
    logits [1, C] (unless it has no labels) and, with a dimensional head, dimensions [1, 3]
    of the pooled embedding transformers' own forward hands its classifier."""
    pooled: list[torch.Tensor] = []
    model.classifier.register_forward_hook(lambda _m, inputs, _out: pooled.append(inputs[0]))

    @torch.no_grad()
    def run(clip: np.ndarray) -> parity.Outputs:
        values = torch.from_numpy(normalize_clip(clip) if do_normalize else clip)[None]
        pooled.clear()
        logits = model(values, attention_mask=torch.ones_like(values, dtype=torch.long)).logits
        out = {LOGITS: logits.numpy()} if logits.shape[-1] else {}
        if dimension_head is not None:
            out[DIMENSIONS] = dimension_head(pooled[0]).numpy()
        return out

    return run


def _fp16_on_cuda() -> bool:
    return "CUDAExecutionProvider" in ort.get_available_providers()


def measure(
    bundle: Path,
    options: ExportOptions,
    reference: Callable[[np.ndarray], parity.Outputs] | None = None,
    caller_normalizes: bool = False,
) -> dict[str, Any]:
    """Every parity figure of the ONNX files in `bundle`, on every output (logits, and the
    dimensions where the graphs have them); the PyTorch one needs `reference` (raw clip ->
    outputs). The graphs are fed raw audio, unless `caller_normalizes` (bundles of version 1,
    whose graphs leave do_normalize to the caller)."""
    prep = normalize_clip if caller_normalizes else (lambda c: c)
    clips = {
        "invariance": [
            prep(c)
            for c in parity.probe_clips(options.invariance_clips, 0.5, 12.0, SAMPLE_RATE_HZ, 1)
        ],
        "agreement": [prep(c) for c in _agreement_clips(options)],
    }
    figures: dict[str, Any] = {}
    fp32 = parity.session(bundle / MODEL_FP32)
    figures["fp32_batched_vs_alone"] = {
        "clips": len(clips["invariance"]),
        "lengths_s": [0.5, 12.0],
        **parity.invariance(fp32, clips["invariance"]),
    }
    if reference is not None:
        raw = parity.probe_clips(options.reference_clips, 0.5, 12.0, SAMPLE_RATE_HZ, 2)
        figures["fp32_vs_pytorch"] = {
            "clips": len(raw),
            "lengths_s": [0.5, 12.0],
            **parity.against_reference(fp32, reference, raw, prep),
        }
    base = parity.outputs_batched(fp32, clips["agreement"], 16)
    fp16 = parity.session(bundle / MODEL_FP16, cuda=_fp16_on_cuda())
    figures["fp16_vs_fp32"] = {
        "clips": len(clips["agreement"]),
        "provider": fp16.get_providers()[0],
        **parity.agreement_of(parity.outputs_batched(fp16, clips["agreement"], 16), base),
    }
    figures["fp16_batched_vs_alone"] = {
        "clips": len(clips["invariance"]),
        "provider": fp16.get_providers()[0],
        **parity.invariance(fp16, clips["invariance"]),
    }
    if (bundle / MODEL_INT8).is_file():
        int8 = parity.session(bundle / MODEL_INT8)
        figures["int8_vs_fp32"] = {
            "clips": len(clips["agreement"]),
            **parity.agreement_of(parity.outputs_batched(int8, clips["agreement"], 16), base),
        }
    return figures


def _agreement_clips(options: ExportOptions) -> list[np.ndarray]:
    """fp16 and int8 against fp32: raw clips of 0.5-4 s."""
    return parity.probe_clips(options.agreement_clips, 0.5, 4.0, SAMPLE_RATE_HZ, 3)


def write_int8(work: Path, options: ExportOptions) -> list[dict[str, Any]]:
    """Quantise `work`'s fp32 graph by each of options.int8_methods in turn and keep the
    first whose argmax agreement with fp32 (in a graph with logits) and max |Δdimension| (in
    a graph with dimensions) pass the limits as MODEL_INT8; none passing leaves no int8 file
    (int8 is opt-in: the default answers never depend on it). Returns each try's figures."""
    clips = _agreement_clips(options)
    base = parity.outputs_batched(parity.session(work / MODEL_FP32), clips, 16)
    limits = options.limits
    tries = []
    for method in options.int8_methods:
        quantize.quantize_int8(work / MODEL_FP32, work / MODEL_INT8, method, SAMPLE_RATE_HZ)
        int8 = parity.outputs_batched(parity.session(work / MODEL_INT8), clips, 16)
        figure: dict[str, Any] = {"method": method, **parity.agreement_of(int8, base)}
        figure["kept"] = (
            figure.get("argmax_agreement", 1.0) >= limits.int8_argmax_agreement
            and figure.get("max_abs_dimension", 0.0) <= limits.int8_dimension
        )
        tries.append(figure)
        if figure["kept"]:
            break
        (work / MODEL_INT8).unlink()
    return tries


def failures(figures: dict[str, Any], limits: Limits) -> list[str]:
    """One line per figure outside its limit."""
    checks = [
        ("fp32_vs_pytorch", "max_abs_logit", limits.fp32_vs_pytorch_logit, "<="),
        ("fp32_batched_vs_alone", "max_abs_probability", limits.fp32_batched_probability, "<="),
        ("fp16_batched_vs_alone", "max_abs_probability", limits.fp16_batched_probability, "<="),
        ("fp16_vs_fp32", "argmax_agreement", limits.fp16_argmax_agreement, ">="),
        ("fp16_vs_fp32", "max_abs_probability", limits.fp16_probability, "<="),
        ("fp32_vs_pytorch", "max_abs_dimension", limits.fp32_vs_pytorch_dimension, "<="),
        ("fp32_batched_vs_alone", "max_abs_dimension", limits.fp32_batched_dimension, "<="),
        ("fp16_batched_vs_alone", "max_abs_dimension", limits.fp16_batched_dimension, "<="),
        ("fp16_vs_fp32", "max_abs_dimension", limits.fp16_dimension, "<="),
        # int8 is not here: export ships it only where it passes (write_int8), and a refused
        # int8 graph is a recorded try, not a failed export.
    ]
    out = []
    for figure, key, limit, sense in checks:
        if figure not in figures or key not in figures[figure]:
            continue
        value = figures[figure][key]
        ok = value <= limit if sense == "<=" else value >= limit
        if not ok:
            out.append(f"{figure}.{key} = {value:.6g}, limit {sense} {limit:g}")
    return out


def export_bundle(
    checkpoint: Path, out: Path, options: ExportOptions, expected_labels: list[str] | None = None
) -> BundleMetadata:
    """Write a verified bundle for `checkpoint` into `out` (replacing it); see the module doc."""
    config = check_checkpoint(checkpoint, expected_labels)
    record = read_training_record(checkpoint)
    model, do_normalize = load_classifier(checkpoint)
    dimension_head = load_dimension_head(checkpoint)
    labels = _labels(config)  # [] for a student trained on dimensions only
    work = out.parent / f".{out.name}.partial"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        timings: dict[str, float] = {}
        start = time.perf_counter()
        onnx_graph.export_fp32(
            model, work / MODEL_FP32, SAMPLE_RATE_HZ, do_normalize, dimension_head, bool(labels)
        )
        timings["export_fp32_s"] = time.perf_counter() - start
        start = time.perf_counter()
        onnx_graph.convert_fp16(work / MODEL_FP32, work / MODEL_FP16)
        timings["convert_fp16_s"] = time.perf_counter() - start
        start = time.perf_counter()
        int8_tries = write_int8(work, options) if options.int8 else []
        timings["int8_s"] = time.perf_counter() - start
        start = time.perf_counter()
        figures = measure(work, options, _torch_reference(model, do_normalize, dimension_head))
        timings["parity_s"] = time.perf_counter() - start
        if int8_tries:
            # The shipped graph's figures as measure() found them, or the last refused try's.
            figures["int8_vs_fp32"] = {
                **figures.get("int8_vs_fp32", {"clips": options.agreement_clips}),
                **int8_tries[-1],
            }
            figures["int8_tries"] = int8_tries
        if options.naive_contrast and labels:  # a contrast of probabilities: needs logits
            figures["naive_batched_vs_alone"] = _naive_figure(model, work, do_normalize, options)
        figures["limits"] = options.limits.__dict__
        figures["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
        failed = failures(figures, options.limits)
        if failed:
            raise ParityError("export refused, parity failed:\n  " + "\n  ".join(failed))
        for name in (MODEL_CONFIG, PREPROCESSOR_CONFIG):
            shutil.copy2(checkpoint / name, work / name)
        metadata = BundleMetadata(
            name=options.name,
            version=options.version,
            labels=labels,
            sample_rate_hz=SAMPLE_RATE_HZ,
            do_normalize=do_normalize,
            normalized_in_graph=True,
            inputs=[
                TensorSpec(name=INPUT_VALUES, dtype="float32", shape=["batch", "samples"]),
                TensorSpec(name=ATTENTION_MASK, dtype="int64", shape=["batch", "samples"]),
            ],
            outputs=_outputs(len(labels), dimension_head),
            opset=onnx_graph.OPSET,
            files={p.name: sha256_of(p) for p in sorted(work.iterdir())},
            source={
                "checkpoint": checkpoint.name,  # never a path of the machine that built it
                "encoder": config.get("model_type"),
                "feat_extract_norm": config.get("feat_extract_norm"),
                "hidden_size": config.get("hidden_size"),
                "num_hidden_layers": config.get("num_hidden_layers"),
            },
            # As training wrote it: the keys it holds, in its order.
            training_metrics=record.model_dump(mode="json", exclude_unset=True),
            parity=figures,
            calibration=record.calibration,
            trained_on=record.trained_on,
            note=record.note,
            dimensions=None
            if dimension_head is None
            else DimensionSpec(
                names=list(dimension_head.names),
                scale=DIMENSION_SCALE,
                trained=record.dimensions,
            ),
        )
        (work / METADATA).write_text(metadata.model_dump_json(indent=2) + "\n")
        shutil.rmtree(out, ignore_errors=True)
        work.rename(out)
        return metadata
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _outputs(n_labels: int, dimension_head: DimensionHead | None) -> list[TensorSpec]:
    """The graphs' outputs as bundle.json declares them: logits (unless there are no labels),
    then any dimensions."""
    specs = []
    if n_labels:
        specs.append(TensorSpec(name=LOGITS, dtype="float32", shape=["batch", n_labels]))
    if dimension_head is not None:
        shape: list[str | int] = ["batch", len(dimension_head.names)]
        specs.append(TensorSpec(name=DIMENSIONS, dtype="float32", shape=shape))
    return specs


def _naive_figure(
    model: SpeechClassifier, work: Path, do_normalize: bool, options: ExportOptions
) -> dict[str, Any]:
    """What the default export (no attention mask) does to the same batch, for contrast."""
    path = work / "naive.onnx"
    onnx_graph.export_naive(model, path, SAMPLE_RATE_HZ)
    prep = normalize_clip if do_normalize else (lambda c: c)
    clips = [
        prep(c) for c in parity.probe_clips(options.invariance_clips, 0.5, 12.0, SAMPLE_RATE_HZ, 1)
    ]
    figure = parity.batch_invariance(parity.session(path), clips)
    path.unlink()
    return {
        "clips": len(clips),
        "max_abs_probability": figure,
        "note": "contrast only, not shipped",
    }


def verify_bundle(
    bundle: Path, checkpoint: Path | None = None, options: ExportOptions | None = None
) -> tuple[dict[str, Any], list[str]]:
    """(recomputed figures, problems): sha256 mismatches and figures outside their limits."""
    options = options or ExportOptions()
    metadata = read_metadata(bundle)
    problems = checksum_problems(bundle, metadata)
    if problems:
        return {}, problems
    reference = None
    if checkpoint is not None:
        check_checkpoint(checkpoint, metadata.labels)
        reference = _torch_reference(*load_classifier(checkpoint), load_dimension_head(checkpoint))
    caller_normalizes = metadata.do_normalize and not metadata.normalized_in_graph
    figures = measure(bundle, options, reference, caller_normalizes)
    return figures, failures(figures, options.limits)
