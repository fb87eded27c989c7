"""How close the CPU engine comes to this CPU's limit, in fp32 and int8 (every method).

    python -m bench.cpu_peak --bundle models/bench/base_bundle [--batch-sizes 1,4]
                             [--lengths-s 2,6] [--repeats 5] [--out FILE.json]

Three measurements, in one run:
- the CPU's sustained matrix-multiply rate: a [N, N] × [N, N] onnxruntime MatMul in fp32 and
  a MatMulInteger in u8×s8 (the kernels the int8 graphs run), each opened with the engine's
  own session factory (emodistill.runtime.make_session), so on the same threads, and timed in
  the same rounds as the engines (the peak is the median over the run's sizes);
- the student's FLOPs per audio-second, counted from its graph: the bundle's fp32 graph run
  once unoptimised with onnxruntime's profiler, which records every node's input and output
  shapes; MatMul, Gemm and Conv are counted (2 per multiply-add), elementwise ops are not;
- the engine (the bundle's fp32 graph; its int8 by every method of
  export/quantize.py) at each batch size and length, timed in alternation (bench/timing.py),
  with each one's share of the peak of its number type, and each int8 graph's agreement with
  fp32 on the exporter's agreement clips (argmax agreement, max |Δprobability|).
Prints a table and writes JSON. Knows nothing of the service.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from bench.report import Results
from bench.timing import timed_together
from emodistill.audio import SAMPLE_RATE_HZ, pad_batch
from emodistill.bundle import ATTENTION_MASK, INPUT_VALUES, MODEL_FP32
from emodistill.runtime import make_session
from emodistill.scoring import softmax
from export import parity, quantize

INT8_GOAL = 2.5  # the int8 engine against fp32 on HuBERT-base (issue 26)


def matmul_runs(size: int, workdir: Path) -> dict[str, tuple[Callable[[], object], float]]:
    """{"fp32", "u8s8"}: (one [size]² MatMul run, its ops), each session opened with
    make_session (the engine's own threads and settings)."""
    rng = np.random.default_rng(0)
    graphs: dict[str, tuple[onnx.NodeProto, int, int, np.ndarray, np.ndarray]] = {
        "fp32": (
            helper.make_node("MatMul", ["a", "b"], ["y"]),
            TensorProto.FLOAT,
            TensorProto.FLOAT,
            rng.standard_normal((size, size), dtype=np.float32),
            rng.standard_normal((size, size), dtype=np.float32),
        ),
        "u8s8": (
            helper.make_node("MatMulInteger", ["a", "b"], ["y"]),
            TensorProto.UINT8,
            TensorProto.INT32,
            rng.integers(0, 255, (size, size), dtype=np.uint8),
            rng.integers(-127, 127, (size, size), dtype=np.int8),
        ),
    }
    runs: dict[str, tuple[Callable[[], object], float]] = {}
    for name, (node, in_type, out_type, a, b) in graphs.items():
        graph = helper.make_graph(
            [node],
            name,
            [helper.make_tensor_value_info("a", in_type, [size, size])],
            [helper.make_tensor_value_info("y", out_type, [size, size])],
            [numpy_helper.from_array(b, "b")],
        )
        path = workdir / f"matmul_{name}.onnx"
        # IR 9: the onnx package writes a newer IR than onnxruntime 1.31 reads.
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
        onnx.save(model, path)
        runs[name] = (partial(make_session(path).run, None, {"a": a}), 2.0 * size**3)
    return runs


def _node_flops(op: str, inputs: list[list[int]], output: list[int]) -> float:
    """2 × multiply-adds of one MatMul, Gemm or Conv run; 0 for any other op."""
    if op == "MatMul":
        return 2.0 * float(np.prod(output)) * inputs[0][-1]
    if op == "Gemm":
        return 2.0 * float(np.prod(output)) * inputs[1][0]  # B [K, N] (the exporter's transB=0)
    if op == "Conv":
        return 2.0 * float(np.prod(output)) * float(np.prod(inputs[1][1:]))  # W [O, I/g, k...]
    return 0.0


def graph_gflop_per_audio_s(model: Path, clip_s: float) -> dict[str, float]:
    """GFLOP per audio-second by op type, counted from one run of a clip of `clip_s`.

    Unoptimised (no fusions), so the profiler names the exported graph's own ops; profiling
    is why this session is built here rather than by make_session."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        values, mask = pad_batch(parity.probe_clips(1, clip_s, clip_s, SAMPLE_RATE_HZ))
        session.run(None, {INPUT_VALUES: values, ATTENTION_MASK: mask})
        events = json.loads(Path(session.end_profiling()).read_text())
    by_op: dict[str, float] = {}
    for event in events:
        args = event.get("args", {})
        if event.get("cat") != "Node" or "output_type_shape" not in args:
            continue
        shapes = [next(iter(s.values())) for s in args.get("input_type_shape", [])]
        output = next(iter(args["output_type_shape"][0].values()))
        flops = _node_flops(args["op_name"], shapes, output)
        if flops:
            by_op[args["op_name"]] = by_op.get(args["op_name"], 0.0) + flops / clip_s / 1e9
    return {**by_op, "total": sum(by_op.values())}


NEAR_TIE = 0.05  # a top-2 probability margin below this: any small change may flip it


def _agreement(candidate: np.ndarray, base: np.ndarray) -> dict[str, float]:
    """The exporter's figures, and how close to a tie fp32's answers were: the share of
    clips within NEAR_TIE, the agreement on the others (a random-init student's near-ties
    flip at any rounding; a trained one has few), and the widest margin an int8 graph
    flipped."""
    top2 = np.sort(softmax(base), axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    flipped = candidate.argmax(1) != base.argmax(1)
    clear = margin >= NEAR_TIE
    return {
        **parity.agreement(candidate, base),
        "fp32_near_ties": float((~clear).mean()),
        "agreement_beyond_near_ties": float((~flipped[clear]).mean()) if clear.any() else 1.0,
        "widest_flipped_margin": float(margin[flipped].max()) if flipped.any() else 0.0,
    }


def int8_graphs(bundle: Path, workdir: Path) -> dict[str, Path]:
    """The bundle's fp32 graph quantised by each method (export/quantize.py)."""
    out = {}
    for method in quantize.ALL_METHODS:
        path = workdir / f"model.int8.{method}.onnx"
        start = time.perf_counter()
        quantize.quantize_int8(bundle / MODEL_FP32, path, method, SAMPLE_RATE_HZ)
        print(f"int8 {method}: {time.perf_counter() - start:.0f} s to quantise", flush=True)
        out[f"int8-{method}"] = path
    return out


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--bundle", type=Path, required=True, help="the bundle whose graph is timed")
    p.add_argument("--batch-sizes", default="1,4")
    p.add_argument("--lengths-s", default="2,6")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--matmul-size", type=int, default=2048)
    p.add_argument("--agreement-clips", type=int, default=200, help="as the exporter's check")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        gflop = graph_gflop_per_audio_s(
            args.bundle / MODEL_FP32, max(map(float, args.lengths_s.split(",")))
        )
        print(f"graph: {gflop['total']:.2f} GFLOP per audio-second {gflop}", flush=True)
        paths = {"fp32": args.bundle / MODEL_FP32, **int8_graphs(args.bundle, workdir)}
        sessions = {name: make_session(path) for name, path in paths.items()}
        clips = parity.probe_clips(args.agreement_clips, 0.5, 4.0, SAMPLE_RATE_HZ, 3)
        base = parity.run_batched(sessions["fp32"], clips, 16)
        agreement = {
            name: _agreement(parity.run_batched(s, clips, 16), base)
            for name, s in sessions.items()
            if name != "fp32"
        }
        print(f"agreement with fp32: {agreement}", flush=True)
        matmuls = matmul_runs(args.matmul_size, workdir)
        rows = _engine_rows(sessions, matmuls, args, gflop["total"])
    peak = {
        "fp32_gflops": statistics.median(r["peak_gops"] for r in rows if r["engine"] == "fp32"),
        "u8s8_gops": statistics.median(r["peak_gops"] for r in rows if r["engine"] != "fp32"),
    }
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {_cpu_name()}"
    result = {
        "machine": machine,
        "onnxruntime": ort.__version__,
        "threads": "onnxruntime's default (make_session)",
        "matmul_size": args.matmul_size,
        "peak": peak,
        "gflop_per_audio_s": gflop,
        "agreement_clips": args.agreement_clips,
        "agreement": agreement,
        "repeats": args.repeats,
        "rows": rows,
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


def _engine_rows(
    sessions: dict[str, ort.InferenceSession],
    matmuls: dict[str, tuple[Callable[[], object], float]],
    args: argparse.Namespace,
    gflop_per_audio_s: float,
) -> list[dict[str, Any]]:
    """Every engine at every size, with the MatMul peaks timed in the same rounds: on a
    shared machine the peak of a quiet moment would flatter nobody but the ratio."""
    rows = []
    rng = np.random.default_rng(0)
    for seconds in (float(s) for s in args.lengths_s.split(",")):
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            clips = [
                0.1 * rng.standard_normal(int(seconds * SAMPLE_RATE_HZ)).astype(np.float32)
                for _ in range(batch)
            ]
            values, mask = pad_batch(clips)
            feed = {INPUT_VALUES: values, ATTENTION_MASK: mask}
            runs: dict[str, Callable[[], object]] = {
                name: partial(s.run, None, feed) for name, s in sessions.items()
            }
            runs.update({f"matmul-{name}": run for name, (run, _) in matmuls.items()})
            walls = timed_together(runs, args.repeats)
            peaks = {
                name: ops / walls[f"matmul-{name}"] / 1e9 for name, (_, ops) in matmuls.items()
            }
            for name in sessions:
                wall = walls[name]
                audio_s_per_s = batch * seconds / wall
                limit = peaks["fp32"] if name == "fp32" else peaks["u8s8"]
                row: dict[str, Any] = {
                    "engine": name,
                    "clip_s": seconds,
                    "batch": batch,
                    "ms_per_batch": 1000 * wall,
                    "audio_s_per_s": audio_s_per_s,
                    "vs_fp32": walls["fp32"] / wall,
                    "peak_gops": limit,
                    "share_of_peak": audio_s_per_s * gflop_per_audio_s / limit,
                }
                rows.append(row)
                print(
                    f"{name:16} {seconds:4.0f} s × {batch:<3} {row['ms_per_batch']:9.1f} ms "
                    f"{audio_s_per_s:7.1f} audio-s/s {row['vs_fp32']:5.2f}× fp32 "
                    f"{100 * row['share_of_peak']:5.1f} % of peak",
                    flush=True,
                )
    return rows


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def share(result: dict[str, Any], row: dict[str, Any]) -> float:
    """The row's compute rate over the run's median peak of its number type (more stable on
    a shared machine than the peak of the row's own three rounds, which is also recorded)."""
    peak = result["peak"]["fp32_gflops" if row["engine"] == "fp32" else "u8s8_gops"]
    return float(row["audio_s_per_s"] * result["gflop_per_audio_s"]["total"] / peak)


def best(result: dict[str, Any], engine: str) -> dict[str, Any]:
    """The engine's fastest row (its best batch and length)."""
    return max(
        (r for r in result["rows"] if r["engine"] == engine), key=lambda r: r["audio_s_per_s"]
    )


def report_section(results: Results, model: str) -> list[str]:
    """In section 2 of docs/benchmarks.md: the CPU's peak and the engine's share of it."""
    if "cpu_peak" not in results:
        return []
    cmd, r = results["cpu_peak"]
    peak = r["peak"]
    lines = [
        "### The CPU's limit",
        "",
        f"`{cmd}` ({r['machine']}, onnxruntime {r['onnxruntime']}, {r['threads']}; median "
        f"of {r['repeats']} in alternation). Sustained {r['matmul_size']}² MatMul, timed in "
        "the same rounds as the engines (median over the run; the share is of it): "
        f"**{peak['fp32_gflops']:.0f} GFLOP/s fp32**, **{peak['u8s8_gops']:.0f} GOP/s u8×s8** "
        f"({peak['u8s8_gops'] / peak['fp32_gflops']:.1f}×). The graph counts "
        f"{r['gflop_per_audio_s']['total']:.2f} GFLOP per audio-second (MatMul, Gemm, Conv): "
        + ", ".join(f"{op} {v:.2f}" for op, v in r["gflop_per_audio_s"].items() if op != "total")
        + ".",
        "",
        "| engine | clip s | batch | ms per batch | audio-s/s | vs fp32 | share of peak |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        lines.append(
            f"| {row['engine']} | {row['clip_s']:g} | {row['batch']} | {row['ms_per_batch']:.0f} "
            f"| {row['audio_s_per_s']:.1f} | {row['vs_fp32']:.2f}× | "
            f"{100 * share(r, row):.0f} % |"
        )
    lines += [
        "",
        f"int8 against fp32 on {r['agreement_clips']} probe clips (0.5–4 s; the exporter keeps "
        "an int8 graph at argmax agreement ≥ 0.99): "
        + "; ".join(
            f"{name}: agreement {a['argmax_agreement']:.3f}, max |Δp| "
            f"{a['max_abs_probability']:.3f}"
            + (
                f", {a['agreement_beyond_near_ties']:.3f} beyond the near-ties"
                if "agreement_beyond_near_ties" in a
                else ""
            )
            + (
                f", widest fp32 margin it flipped {a['widest_flipped_margin']:.3f}"
                if "widest_flipped_margin" in a
                else ""
            )
            for name, a in r["agreement"].items()
        )
        + (
            f". {100 * next(iter(r['agreement'].values()))['fp32_near_ties']:.0f} % of fp32's "
            f"answers are within {NEAR_TIE:g} of a tie (top-2 probability margin)"
            if "fp32_near_ties" in next(iter(r["agreement"].values()))
            else ""
        )
        + ". The int8 share is of the u8×s8 peak; the fp32 ops between the quantised "
        "products (normalisations, GELU, softmax, quantise/dequantise) count for nothing.",
        "",
    ]
    return lines


def goals(results: Results) -> list[tuple[str, str]]:
    if "cpu_peak" not in results:
        return []
    r = results["cpu_peak"][1]
    fp32 = best(r, "fp32")
    int8 = {name: best(r, name) for name in {row["engine"] for row in r["rows"]} - {"fp32"}}
    fastest = max(int8.values(), key=lambda row: row["audio_s_per_s"])
    return [
        (
            "engine share of the CPU's peak",
            f"fp32 {100 * share(r, fp32):.0f} % of {r['peak']['fp32_gflops']:.0f} GFLOP/s "
            f"({fp32['audio_s_per_s']:.1f} audio-s/s, batch {fp32['batch']}, "
            f"{fp32['clip_s']:g} s); {fastest['engine']} {100 * share(r, fastest):.0f} % "
            f"of {r['peak']['u8s8_gops']:.0f} GOP/s u8×s8 "
            f"({fastest['audio_s_per_s']:.1f} audio-s/s)",
        ),
        (
            f"int8 engine ≥ {INT8_GOAL:g}× fp32 (HuBERT-base), agreement ≥ 0.99",
            "; ".join(
                f"{name}: {row['audio_s_per_s'] / fp32['audio_s_per_s']:.2f}× at best, "
                f"agreement {r['agreement'][name]['argmax_agreement']:.3f}"
                for name, row in sorted(int8.items())
            ),
        ),
    ]


if __name__ == "__main__":
    main()
