"""A HuBERT-base bundle for the service benchmarks; on a GPU, the bundle's CUDA parity.

    python bench/base_bundle.py --bundle models/bench/base_bundle [--rebuild] [--out FILE.json]

Builds a random-init HuBERT-base student (its classifier scaled so logits spread out, as in a
trained one, so argmax ties are rare) and exports it with the real exporter, which checks its
parity figures on the CPU provider. `service_load.py --model` serves it where the model, not
HTTP, should dominate. An intact bundle already there is reused (its checksums are checked).
Where onnxruntime has the CUDA provider, it then measures what only a GPU can: fp16 on CUDA
against fp32 on CPU (argmax agreement, max |Δprobability|), fp16 and fp32 on CUDA batched
against alone, and exits 1 if a figure is outside the exporter's limits.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import onnxruntime as ort
import torch

from bench.report import Results, pending
from emodistill.audio import SAMPLE_RATE_HZ
from emodistill.bundle import (
    MODEL_FP16,
    MODEL_FP32,
    TRAINING_METRICS,
    BundleError,
    BundleMetadata,
    load_bundle,
)
from export.bundle_writer import ExportOptions, Limits, export_bundle
from export.parity import agreement, batch_invariance, probe_clips, run_batched, session
from student.config import StudentConfig
from student.model import EmoDistillStudent, build_classifier, build_feature_extractor

LABELS = ["neutral", "angry", "sad", "happy"]
# The exporter's checks with fewer clips than its CLI (a base model on 2 CPU cores), no int8
# (a GPU serves fp16, a CPU fp32) and no naive-export contrast.
OPTIONS = ExportOptions(int8=False, naive_contrast=False, agreement_clips=50, reference_clips=8)


def write_base_checkpoint(folder: Path) -> Path:
    torch.manual_seed(0)
    config = StudentConfig(pretrained=None, preset="base")
    model = build_classifier(config, LABELS)
    with torch.no_grad():
        model.classifier.weight.mul_(20.0)
    EmoDistillStudent(model, build_feature_extractor(config), {}).save(folder)
    (folder / TRAINING_METRICS).write_text(json.dumps({"note": "random init"}))
    return folder


def cuda_figures(bundle: Path, clips: int) -> dict[str, float]:
    fp16_cuda = session(bundle / MODEL_FP16, cuda=True)
    fp32_cuda = session(bundle / MODEL_FP32, cuda=True)
    fp32_cpu = session(bundle / MODEL_FP32)
    for s in (fp16_cuda, fp32_cuda):
        if s.get_providers()[0] != "CUDAExecutionProvider":
            raise RuntimeError(f"CUDA provider not used: {s.get_providers()}")
    short = probe_clips(clips, 0.5, 4.0, SAMPLE_RATE_HZ, seed=1)
    long = probe_clips(12, 0.5, 12.0, SAMPLE_RATE_HZ, seed=2)
    reference = run_batched(fp32_cpu, short, 16)
    fp16 = agreement(run_batched(fp16_cuda, short, 16), reference)
    fp32 = agreement(run_batched(fp32_cuda, short, 16), reference)
    return {
        "fp16_cuda_vs_fp32_cpu_argmax_agreement": fp16["argmax_agreement"],
        "fp16_cuda_vs_fp32_cpu_max_abs_probability": fp16["max_abs_probability"],
        "fp32_cuda_vs_fp32_cpu_max_abs_probability": fp32["max_abs_probability"],
        "fp16_cuda_batched_vs_alone_max_abs_probability": batch_invariance(fp16_cuda, long),
        "fp32_cuda_batched_vs_alone_max_abs_probability": batch_invariance(fp32_cuda, long),
        "clips": clips,
    }


def problems(figures: dict[str, float], limits: Limits) -> list[str]:
    checks = [
        ("fp16_cuda_vs_fp32_cpu_argmax_agreement", ">=", limits.fp16_argmax_agreement),
        ("fp16_cuda_vs_fp32_cpu_max_abs_probability", "<=", limits.fp16_probability),
        ("fp16_cuda_batched_vs_alone_max_abs_probability", "<=", limits.fp16_batched_probability),
        # The CUDA provider may use TF32 for fp32 products: held to the fp16 limit.
        ("fp32_cuda_batched_vs_alone_max_abs_probability", "<=", limits.fp16_batched_probability),
    ]
    out = []
    for name, op, limit in checks:
        ok = figures[name] >= limit if op == ">=" else figures[name] <= limit
        if not ok:
            out.append(f"{name} = {figures[name]:.3g}, limit {op} {limit}")
    return out


def build(bundle: Path, rebuild: bool) -> tuple[BundleMetadata, float | None]:
    """(the bundle's metadata, export seconds; None when an intact bundle was reused)."""
    if not rebuild:
        try:
            return load_bundle(bundle), None
        except BundleError:
            pass
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = write_base_checkpoint(Path(tmp) / "checkpoint")
        start = time.perf_counter()
        metadata = export_bundle(checkpoint, bundle, OPTIONS)
        return metadata, time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--bundle", type=Path, required=True, help="where the base bundle goes")
    p.add_argument("--rebuild", action="store_true", help="export again even if it exists")
    p.add_argument("--clips", type=int, default=200, help="clips for the CUDA agreement")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    metadata, export_s = build(args.bundle, args.rebuild)
    result: dict = {
        "onnxruntime": ort.__version__,
        "export_s": export_s,
        "cpu_parity": metadata.parity,
        "device": None,
        "cuda": None,
        "problems": [],
    }
    if "CUDAExecutionProvider" in ort.get_available_providers():
        figures = cuda_figures(args.bundle, args.clips)
        result["device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else "cuda"
        result["cuda"] = figures
        result["problems"] = problems(figures, OPTIONS.limits)
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    sys.exit(1 if result["problems"] else 0)


def report_section(results: Results, model: str) -> list[str]:
    """In section 2 of docs/benchmarks.md: the base bundle's CUDA parity figures."""
    if "base_bundle_gpu" not in results:
        return pending("base_bundle_gpu", model)
    cmd, checks = results["base_bundle_gpu"]
    return [
        f"CUDA parity of the base bundle (`{cmd}`, {checks['device']}):",
        "",
        "```",
        json.dumps(checks["cuda"], indent=2),
        "```",
        "",
    ]


if __name__ == "__main__":
    main()
