"""A Triton / KServe model repository from a bundle: `REPO/<name>/config.pbtxt`, `1/model.onnx`.

Triton serves the same KServe v2 protocol as our service. Its dynamic batcher only joins
requests whose shapes match, so clients should pad to a few fixed lengths (or send one
padded batch); our service does the length grouping itself.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from emodistill.bundle import (
    ATTENTION_MASK,
    DIMENSIONS,
    INPUT_VALUES,
    LOGITS,
    MODEL_FP16,
    MODEL_FP32,
    BundleError,
    load_bundle,
)


def write_triton_repository(
    bundle: Path,
    repo: Path,
    model_name: str = "emodistill",
    gpu: bool = True,
    max_batch_size: int = 32,
    max_queue_delay_us: int = 5000,
) -> Path:
    """Copy the bundle's ONNX (fp16 on GPU, fp32 on CPU) and write config.pbtxt + labels."""
    metadata = load_bundle(bundle)
    if metadata.do_normalize and not metadata.normalized_in_graph:
        raise BundleError(
            f"{bundle} leaves its input normalisation to the caller (bundle version "
            f"{metadata.bundle_version}); Triton clients send raw audio: export it again"
        )
    labels, dims = metadata.labels, metadata.dimension_names
    if not labels and not dims:
        raise BundleError(f"{bundle} declares neither categories nor dimensions: no output")
    model_dir = repo / model_name
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    shutil.copy2(bundle / (MODEL_FP16 if gpu else MODEL_FP32), model_dir / "1" / "model.onnx")
    kind = "KIND_GPU" if gpu else "KIND_CPU"
    outputs = []
    if labels:  # a bundle trained on dimensions only has no logits and no labels.txt
        (model_dir / "labels.txt").write_text("\n".join(labels) + "\n")
        outputs.append(
            f'{{ name: "{LOGITS}" data_type: TYPE_FP32 dims: [ {len(labels)} ] '
            'label_filename: "labels.txt" }'
        )
    if dims:  # a version-3 bundle's dimensions; their names and scale are in bundle.json
        outputs.append(f'{{ name: "{DIMENSIONS}" data_type: TYPE_FP32 dims: [ {len(dims)} ] }}')
    output_lines = ",\n  ".join(outputs)
    # cudnn_conv_algo_search 1 = HEURISTIC: EXHAUSTIVE re-benchmarks every new audio length.
    cuda = (
        '\nparameters { key: "cudnn_conv_algo_search" value: { string_value: "1" } }' if gpu else ""
    )
    config = f"""name: "{model_name}"
platform: "onnxruntime_onnx"
max_batch_size: {max_batch_size}
input [
  {{ name: "{INPUT_VALUES}" data_type: TYPE_FP32 dims: [ -1 ] }},
  {{ name: "{ATTENTION_MASK}" data_type: TYPE_INT64 dims: [ -1 ] }}
]
output [
  {output_lines}
]
dynamic_batching {{
  preferred_batch_size: [ {max(1, max_batch_size // 4)}, {max_batch_size} ]
  max_queue_delay_microseconds: {max_queue_delay_us}
}}
instance_group [ {{ kind: {kind} count: 1 }} ]{cuda}
"""
    (model_dir / "config.pbtxt").write_text(config)
    return model_dir
