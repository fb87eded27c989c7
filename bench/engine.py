"""Engine throughput of the student, PyTorch vs onnxruntime, at several batch sizes and lengths.

    python bench/engine.py [--preset base|tiny] [--batch-sizes 1,8,32] [--lengths-s 2,6]
                           [--repeats 3] [--out FILE.json]

One set of random-init weights (the architecture is what costs; weights do not), exported
with the same code as a bundle. CPU: PyTorch eager fp32, ONNX fp32, ONNX int8. On a GPU
also PyTorch fp32 and bf16 (eager, and with --compile under torch.compile) and ONNX fp32 and
fp16 with the CUDA provider, and the fraction of the compute ceiling (bench/ceiling.py).
Each figure is the median of `repeats` timed runs after one warm-up run; the engines are
timed in alternation (bench/timing.py), so a slow spell of a shared machine lands on all of
them alike. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from bench.ceiling import GFLOP_PER_AUDIO_S, PEAK_FP16_TFLOPS
from bench.report import Results, pending
from bench.timing import timed_together
from emodistill.audio import SAMPLE_RATE_HZ, pad_batch
from emodistill.bundle import ATTENTION_MASK, INPUT_VALUES
from emodistill.runtime import make_session
from export import onnx_graph, quantize
from student.batch_invariant import classify
from student.config import StudentConfig
from student.model import build_classifier, build_feature_extractor

# (input values [B, S] float32, attention mask [B, S] int64) -> logits, in any container.
Engine = Callable[[np.ndarray, np.ndarray], object]


def engines(
    preset: str,
    workdir: Path,
    devices: set[str],
    compile_torch: bool = False,
    compile_dtypes: frozenset[str] = frozenset({"fp32", "bf16"}),
) -> dict[str, Engine]:
    torch.manual_seed(0)
    config = StudentConfig(pretrained=None, preset=preset)
    model = build_classifier(config, ["a", "b", "c", "d"]).eval()
    normalize = bool(build_feature_extractor(config).do_normalize)
    out: dict[str, Engine] = {}
    cuda_onnx = "cuda" in devices and "CUDAExecutionProvider" in ort.get_available_providers()
    if "cpu" in devices or cuda_onnx:  # a PyTorch-only run skips the export (a minute for large)
        onnx_graph.export_fp32(model, workdir / "model.onnx", SAMPLE_RATE_HZ, normalize)

    def torch_engine(device: str, dtype: torch.dtype | None, compiled: bool = False) -> Engine:
        m = copy.deepcopy(model).to(device)  # each engine its own copy: .to() moves in place

        def forward(x: torch.Tensor, am: torch.Tensor) -> torch.Tensor:
            return classify(m, x, am, normalize)[0]

        # dynamic: every batch size and length of the run would otherwise recompile.
        step = torch.compile(forward, dynamic=True) if compiled else forward

        @torch.inference_mode()
        def run(values: np.ndarray, mask: np.ndarray) -> torch.Tensor:
            x, am = torch.from_numpy(values).to(device), torch.from_numpy(mask).to(device)
            with torch.autocast(device, dtype=dtype, enabled=dtype is not None):
                logits = step(x, am)
            return logits.float().cpu()

        return run

    def onnx_engine(path: Path, cuda: bool) -> Engine:
        # As the service runs it; idle threads of one engine never slow the next one timed.
        session = make_session(path, cuda)
        return lambda values, mask: session.run(None, {INPUT_VALUES: values, ATTENTION_MASK: mask})

    if "cpu" in devices:
        # What export tries first (export/quantize.py METHODS); cpu_peak times them all.
        quantize.quantize_int8(
            workdir / "model.onnx", workdir / "model.int8.onnx", quantize.METHODS[0], SAMPLE_RATE_HZ
        )
        out["pytorch-fp32-cpu"] = torch_engine("cpu", None)
        if compile_torch:
            out["pytorch-fp32-compile-cpu"] = torch_engine("cpu", None, compiled=True)
        out["onnx-fp32-cpu"] = onnx_engine(workdir / "model.onnx", cuda=False)
        out["onnx-int8-cpu"] = onnx_engine(workdir / "model.int8.onnx", cuda=False)
    if "cuda" in devices and torch.cuda.is_available():
        # PyTorch's defaults: TF32 off for matrix products, on for cuDNN convolutions.
        out["pytorch-fp32-cuda"] = torch_engine("cuda", None)
        out["pytorch-bf16-cuda"] = torch_engine("cuda", torch.bfloat16)
        # Each compiled dtype costs a compilation (a minute or more for base on a GPU host).
        if compile_torch and "fp32" in compile_dtypes:
            out["pytorch-fp32-compile-cuda"] = torch_engine("cuda", None, compiled=True)
        if compile_torch and "bf16" in compile_dtypes:
            out["pytorch-bf16-compile-cuda"] = torch_engine("cuda", torch.bfloat16, compiled=True)
        if cuda_onnx:
            onnx_graph.convert_fp16(workdir / "model.onnx", workdir / "model.fp16.onnx")
            out["onnx-fp32-cuda"] = onnx_engine(workdir / "model.onnx", cuda=True)
            out["onnx-fp16-cuda"] = onnx_engine(workdir / "model.fp16.onnx", cuda=True)
        else:
            print("onnxruntime has no CUDA provider here: no ONNX CUDA rows", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--preset", default="base", choices=["tiny", "base", "large"])
    p.add_argument("--batch-sizes", default="1,8,32")
    p.add_argument("--lengths-s", default="2,6")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--devices", default="cpu,cuda", help="which engines: cpu, cuda (if present), or both"
    )
    p.add_argument(
        "--compile", action="store_true", help="also PyTorch under torch.compile (dynamic shapes)"
    )
    p.add_argument(
        "--compile-dtypes", default="fp32,bf16", help="with --compile: which CUDA dtypes to compile"
    )
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    lengths = [float(s) for s in args.lengths_s.split(",")]
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        runs = engines(
            args.preset,
            Path(tmp),
            set(args.devices.split(",")),
            args.compile,
            frozenset(args.compile_dtypes.split(",")),
        )
        for seconds in lengths:
            for batch in batch_sizes:
                clips = [
                    0.1 * rng.standard_normal(int(seconds * SAMPLE_RATE_HZ)).astype(np.float32)
                    for _ in range(batch)
                ]
                values, mask = pad_batch(clips)
                walls = timed_together(
                    {name: partial(run, values, mask) for name, run in runs.items()}, args.repeats
                )
                for name, wall in walls.items():
                    row: dict[str, Any] = {
                        "engine": name,
                        "clip_s": seconds,
                        "batch": batch,
                        "ms_per_batch": 1000 * wall,
                        "audio_s_per_s": batch * seconds / wall,
                    }
                    if name.endswith("cuda") and args.preset in GFLOP_PER_AUDIO_S:
                        tflops = row["audio_s_per_s"] * GFLOP_PER_AUDIO_S[args.preset] / 1000
                        row["fraction_of_ceiling"] = tflops / PEAK_FP16_TFLOPS
                    rows.append(row)
                    ceiling = row.get("fraction_of_ceiling")
                    print(
                        f"{name:18} {seconds:4.0f} s × {batch:<3} {row['ms_per_batch']:10.1f} ms "
                        f"{row['audio_s_per_s']:10.1f} audio-s/s"
                        + (f" {100 * ceiling:5.1f} % of ceiling" if ceiling else ""),
                        flush=True,
                    )
        order = list(runs)
        rows.sort(key=lambda r: order.index(r["engine"]))  # stable: lengths, batches kept
    machine = f"{platform.machine()}, {os.cpu_count()} cores" + (
        f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    )
    result = {"machine": machine, "preset": args.preset, "repeats": args.repeats, "rows": rows}
    if torch.cuda.is_available():  # every engine of the run together, PyTorch's allocator only
        result["gpu_peak_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


def _table(shown_cmd: str, engine: dict[str, Any]) -> list[str]:
    """One run's rows against PyTorch fp32 on the same device (and the ceiling on a GPU)."""
    gpu = any(r["engine"].endswith("cuda") for r in engine["rows"])
    reference = "pytorch-fp32-cuda" if gpu else "pytorch-fp32-cpu"
    lines = [
        f"`{shown_cmd}` ({engine['machine']}, preset `{engine['preset']}`, median of "
        f"{engine['repeats']} after a warm-up; host arrays in, logits back on the host)",
        "",
        f"| engine | clip s | batch | ms per batch | audio-s/s | vs {reference} |"
        + (" of ceiling |" if gpu else ""),
        "|---|---|---|---|---|---|" + ("---|" if gpu else ""),
    ]
    base = {
        (r["clip_s"], r["batch"]): r["audio_s_per_s"]
        for r in engine["rows"]
        if r["engine"] == reference
    }
    for r in engine["rows"]:
        ratio = r["audio_s_per_s"] / base[(r["clip_s"], r["batch"])]
        ceiling = (
            f" {100 * r['fraction_of_ceiling']:.1f} % |"
            if "fraction_of_ceiling" in r
            else (" |" if gpu else "")
        )
        lines.append(
            f"| {r['engine']} | {r['clip_s']:g} | {r['batch']} | {r['ms_per_batch']:.1f} | "
            f"{r['audio_s_per_s']:.1f} | {ratio:.2f}× |{ceiling}"
        )
    return lines


def report_section(results: Results, model: str) -> list[str]:
    """Section 2 of docs/benchmarks.md: the CPU runs, then the GPU runs or their commands."""
    lines = ["### CPU", ""]
    for name in ("engine", "engine_tiny"):
        if name in results:
            lines += [*_table(*results[name]), ""]
    lines += [
        "### GPU",
        "",
        f"The ceiling is {GFLOP_PER_AUDIO_S['base']:g} GFLOP per audio-second (HuBERT-base) "
        f"at {PEAK_FP16_TFLOPS:g} dense fp16 TFLOP/s (H100/H200); fp32 rows are held to the "
        "same ceiling.",
        "",
    ]
    for name in ("engine_gpu", "engine_tiny_gpu"):
        lines += [*_table(*results[name]), ""] if name in results else pending(name, model)
    return lines


def cpu_goals(results: Results) -> list[tuple[str, str]]:
    """ONNX on the CPU against PyTorch eager (HuBERT-base), over every size of the run."""
    if "engine" not in results:
        return []
    by = {
        (r["engine"], r["clip_s"], r["batch"]): r["audio_s_per_s"]
        for r in results["engine"][1]["rows"]
    }
    ratios = [
        v / by[("pytorch-fp32-cpu", c, b)] for (e, c, b), v in by.items() if e == "onnx-fp32-cpu"
    ]
    return [
        ("ONNX on CPU ≥ 1.3× PyTorch eager (HuBERT-base)", f"{min(ratios):.2f}–{max(ratios):.2f}×")
    ]


def gpu_goals(results: Results) -> list[tuple[str, str]]:
    """fp16 ONNX against PyTorch fp32 on the GPU, and the best fraction of the ceiling."""
    if "engine_gpu" not in results:
        return [
            (
                "ONNX fp16 on GPU ≥ 2× PyTorch fp32; GPU engine ≥ 30 % of ceiling",
                "pending (no GPU run)",
            )
        ]
    rows = []
    gpu_rows = results["engine_gpu"][1]["rows"]
    by = {(r["engine"], r["clip_s"], r["batch"]): r for r in gpu_rows}
    fp16 = [
        r["audio_s_per_s"] / by[("pytorch-fp32-cuda", r["clip_s"], r["batch"])]["audio_s_per_s"]
        for r in gpu_rows
        if r["engine"] == "onnx-fp16-cuda"
    ]
    if fp16:
        rows.append(("ONNX fp16 on GPU ≥ 2× PyTorch fp32", f"{min(fp16):.2f}–{max(fp16):.2f}×"))
    best = max(r.get("fraction_of_ceiling", 0.0) for r in gpu_rows)
    rows.append(("GPU engine ≥ 30 % of the compute ceiling", f"best {100 * best:.1f} %"))
    return rows


if __name__ == "__main__":
    main()
