"""`python -m bench [--full | --gpu]` (make bench): run the benchmarks, write docs/benchmarks.md.

Quick by default (minutes on 2 CPU cores); --full runs every size and length on the CPU;
--gpu runs the GPU set (engine up to batch 128, the base bundle's CUDA parity, the service on
CUDA) and needs onnxruntime-gpu. Each script prints its table; this collects their JSON into
docs/bench/, draws the plots and writes the report with the machine and the exact commands.
A section whose JSON is absent says "pending": figures are never invented. Each section names
the machine and command of its own run, and every ratio is taken within one run.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.ceiling import GFLOP_PER_AUDIO_S, PEAK_FP16_TFLOPS
from bench.gpu_fold import checklist_lines

DOCS = Path("docs")
OUT = DOCS / "bench"
BASE_BUNDLE = "models/bench/base_bundle"

# name: (script, its arguments). "{model}" is the demo bundle given to --model.
# The demo bundle in one process (the CPU's default), and served by two HTTP worker processes
# and the model process (service/processes.py).
SERVICE_ONE = "--model {model} --service-args '--workers 1'"
SERVICE_WORKERS = "--model {model} --service-args '--workers 2 --device cpu'"
Settings = dict[str, tuple[str, str]]
ENGINE_CPU = "--devices cpu --preset"
QUICK: Settings = {
    "engine": ("engine.py", f"{ENGINE_CPU} base --batch-sizes 1,8 --lengths-s 2"),
    "engine_tiny": ("engine.py", f"{ENGINE_CPU} tiny --batch-sizes 1,8,32 --lengths-s 2"),
    "cascade": ("cascade.py", "--lengths-s 2,6,12 --asr base --repeats 2"),
    "service": ("service_load.py", SERVICE_ONE + " --requests 150 --repeats 2"),
    "base_bundle": ("base_bundle.py", f"--bundle {BASE_BUNDLE}"),
    "service_base": ("service_load.py", f"--model {BASE_BUNDLE} --requests 64 --repeats 1"),
    "bulk": ("bulk.py", f"--model {{model}} --base {BASE_BUNDLE} --files 30 --long-run-files 300"),
    "decode": ("decode.py", "--seconds 30 --repeats 3"),
    "frontend": ("frontend.py", "--model {model} --requests 400 --repeats 2"),
    "service_workers": ("service_load.py", SERVICE_WORKERS + " --requests 150 --repeats 2"),
}
FULL: Settings = {
    "engine": ("engine.py", f"{ENGINE_CPU} base --batch-sizes 1,8,32 --lengths-s 2,6"),
    "engine_tiny": (
        "engine.py",
        f"{ENGINE_CPU} tiny --batch-sizes 1,8,32 --lengths-s 2,6 --repeats 5",
    ),
    "cascade": ("cascade.py", "--lengths-s 2,6,12 --asr base,small --repeats 3"),
    "service": ("service_load.py", SERVICE_ONE + " --requests 500 --repeats 3"),
    "base_bundle": ("base_bundle.py", f"--bundle {BASE_BUNDLE}"),
    "service_base": ("service_load.py", f"--model {BASE_BUNDLE} --requests 128 --repeats 2"),
    "bulk": ("bulk.py", f"--model {{model}} --base {BASE_BUNDLE}"),
    "decode": ("decode.py", "--seconds 30 --repeats 5"),
    "frontend": ("frontend.py", "--model {model} --requests 600 --repeats 3"),
    "service_workers": ("service_load.py", SERVICE_WORKERS + " --requests 500 --repeats 3"),
}
# The GPU checklist (make gpu-check): engines at batch 1-64 over 2 s and 8 s clips, eager and
# compiled; the base bundle's CUDA parity; the service on CUDA; one training step of the
# base student in bf16 at the paper's per-GPU batch (128 / 4) and crop, and HuBERT-large's.
ENGINE_GPU = "--devices cuda --batch-sizes 1,8,32,64 --lengths-s 2,8 --repeats 10 --preset"
TRAIN_GPU = "--bf16 --batch 32 --crop-s 8 --preset"
GPU: Settings = {
    "engine_gpu": ("engine.py", f"{ENGINE_GPU} base --compile"),
    "engine_tiny_gpu": ("engine.py", f"{ENGINE_GPU} tiny"),
    "base_bundle_gpu": ("base_bundle.py", f"--bundle {BASE_BUNDLE}"),
    "service_gpu": (
        "service_load.py",
        f"--model {BASE_BUNDLE} --requests 500 --repeats 3 --service-args '--device cuda'",
    ),
    "train_gpu": ("train_probe.py", f"{TRAIN_GPU} base --steps 20"),
    "train_large_gpu": ("train_probe.py", f"{TRAIN_GPU} large --steps 3"),
}
SERVICE_LEVELS = "--concurrency 1,4,16,64 --clip-s 2"


def command_for(name: str, script: str, args: str, model: str) -> list[str]:
    if script == "service_load.py":
        args += " " + SERVICE_LEVELS
    words = shlex.split(args.replace("{model}", model))
    module = f"bench.{Path(script).stem}"  # as a module: the scripts share bench/ code
    return [sys.executable, "-m", module, *words, "--out", str(OUT / f"{name}.json")]


def shown(command: list[str]) -> str:
    """The command as a reader would type it."""
    return " ".join(["python", *(shlex.quote(a) for a in command[1:])])


def run_all(settings: Settings, model: str) -> list[str]:
    """Run each script, write its JSON; the names that failed (the others still run)."""
    OUT.mkdir(parents=True, exist_ok=True)
    failed = []
    for name, (script, args) in settings.items():
        command = command_for(name, script, args, model)
        print(f"\n$ {shown(command)}", flush=True)
        if subprocess.run(command).returncode != 0:
            failed.append(name)
            continue
        out = Path(command[-1])
        data = json.loads(out.read_text())
        data["command_shown"] = shown(command)  # what the report prints, exactly as run
        out.write_text(json.dumps(data, indent=2) + "\n")
    return failed


def load_results() -> dict[str, tuple[str, dict]]:
    """{name: (command, results)} for every JSON in docs/bench, with the command run_all
    recorded in it."""
    results = {}
    for name in {**FULL, **GPU}:
        path = OUT / f"{name}.json"
        if path.is_file():
            data = json.loads(path.read_text())
            results[name] = (data.get("command_shown", "(command not recorded)"), data)
    return results


def plot_service(services: dict[str, dict], path: Path) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for label, service in services.items():
        for mode, entry in service["modes"].items():
            levels = sorted(entry["levels"], key=int)
            xs = [int(c) for c in levels]
            name = f"{label}, {mode}"
            left.plot(xs, [entry["levels"][c]["audio_s_per_s"] for c in levels], "o-", label=name)
            right.plot(
                xs, [entry["levels"][c]["p50_ms"] for c in levels], "o-", label=f"{name} p50"
            )
            right.plot(
                xs, [entry["levels"][c]["p99_ms"] for c in levels], "x--", label=f"{name} p99"
            )
    for ax, title, unit in ((left, "throughput", "audio-seconds / s"), (right, "latency", "ms")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel(unit)
        ax.set_title(f"service {title} (2 s clips)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def engine_table(shown_cmd: str, engine: dict) -> list[str]:
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


def service_table(shown_cmd: str, service: dict, what: str) -> list[str]:
    lines = [
        f"**{what}.** `{shown_cmd}` ({service['machine']}; the load generator shares the "
        f"machine; requests/s is the median of {service['repeats']} rounds, latency over all).",
        "",
        "| mode | clients | req/s | audio-s/s | p50 ms | p95 ms | p99 ms | mean batch "
        "| service CPU ms/req | engine clips/s at that batch | service / engine |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, entry in service["modes"].items():
        for c, r in sorted(entry["levels"].items(), key=lambda kv: int(kv[0])):
            lines.append(
                f"| {mode} | {c} | {r['requests_per_s']:.1f} | {r['audio_s_per_s']:.1f} | "
                f"{r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | "
                f"{r['mean_batch_size']:.2f} | {r['service_cpu_ms_per_request']:.2f} | "
                f"{r['engine_clips_per_s']:.1f} | {100 * r['service_over_engine']:.0f} % |"
            )
    modes = service["modes"]
    memory = ", ".join(
        f"{m}: RSS {e['rss_mb']:.0f} MB"
        + (f", GPU {e['gpu_mb']:.0f} MB" if e.get("gpu_mb") else "")
        for m, e in modes.items()
    )
    lines += [
        "",
        f"Batching / batch size 1 at {top_level(service)} clients: "
        f"**{batching_speedup(service):.2f}×**. Cold start to ready: "
        f"{modes['batching']['cold_start_to_ready_s']:.2f} s. {memory}.",
        "",
    ]
    return lines


def top_level(service: dict) -> str:
    return str(max(int(c) for c in service["modes"]["batching"]["levels"]))


def batching_speedup(service: dict) -> float:
    top = top_level(service)
    modes = service["modes"]
    return (
        modes["batching"]["levels"][top]["requests_per_s"]
        / modes["batch_size_1"]["levels"][top]["requests_per_s"]
    )


def cascade_table(shown_cmd: str, cascade: dict) -> list[str]:
    lines = [
        f"`{shown_cmd}` ({cascade['machine']}, median of {cascade['repeats']}). Random "
        "weights in the published architectures (nothing can be downloaded here): compute, "
        "not accuracy. Whisper decodes greedily, forced to the transcript's token count.",
        "",
    ]
    asr = sorted(
        {
            k[len("whisper_") : -3]
            for row in cascade["clips"].values()
            for k in row
            if k.startswith("whisper_")
        }
    )
    head = [
        "clip",
        "student fp32",
        "student int8",
        "eGeMAPS",
        "BERT-base",
        "prosodic ResNet",
        "fusion",
        *(f"Whisper-{a}" for a in asr),
        *(f"cascade ({a}) / student fp32, int8" for a in asr),
    ]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for clip, row in cascade["clips"].items():
        stages = ["student", "student_int8", "egemaps", "bert_base", "prosodic_resnet", "fusion"]
        cells = [row[f"{k}_ms"] for k in stages] + [row[f"whisper_{a}_ms"] for a in asr]
        ratios = [f"**{row[f'ratio_{a}']:.1f}×**, {row[f'ratio_{a}_int8']:.1f}×" for a in asr]
        lines.append("| " + " | ".join([clip, *(f"{v:.1f}" for v in cells), *ratios]) + " |")
    return [*lines, ""]


def pending(name: str, model: str) -> list[str]:
    script, args = GPU[name]
    return [
        "**Pending**: no GPU run yet. On a GPU host: "
        f"`{shown(command_for(name, script, args, model))}` (or all of them: `make gpu-check`).",
        "",
    ]


def goals(results: dict[str, tuple[str, dict]]) -> list[str]:
    """Each performance target beside what the figures above reach."""
    rows = []
    if "cascade" in results:
        clips = results["cascade"][1]["clips"]
        asr = sorted(
            {k[len("whisper_") : -3] for r in clips.values() for k in r if k.startswith("whisper_")}
        )
        for variant, suffix in (("fp32", ""), ("int8", "_int8")):
            standing = "; ".join(
                f"Whisper-{a}: "
                + ", ".join(f"{r[f'ratio_{a}{suffix}']:.1f}× ({c})" for c, r in clips.items())
                for a in asr
            )
            rows.append(
                (f"Student ({variant}) ≥ 5× cheaper than the cascade per utterance", standing)
            )
    if "engine" in results:
        by = {
            (r["engine"], r["clip_s"], r["batch"]): r["audio_s_per_s"]
            for r in results["engine"][1]["rows"]
        }
        ratios = [
            v / by[("pytorch-fp32-cpu", c, b)]
            for (e, c, b), v in by.items()
            if e == "onnx-fp32-cpu"
        ]
        rows.append(
            (
                "ONNX on CPU ≥ 1.3× PyTorch eager (HuBERT-base)",
                f"{min(ratios):.2f}–{max(ratios):.2f}×",
            )
        )
    for name, label in (("service", "tiny demo"), ("service_base", "HuBERT-base")):
        if name in results:
            service = results[name][1]
            top = top_level(service)
            rows.append(
                (
                    f"Batching at 64 clients ≥ 1.2× batch size 1 on CPU ({label})",
                    f"{batching_speedup(service):.2f}×",
                )
            )
            ratio = service["modes"]["batching"]["levels"][top]["service_over_engine"]
            rows.append(
                (
                    f"Service ≥ 85 % of engine throughput at saturation ({label}, CPU)",
                    f"{100 * ratio:.0f} %",
                )
            )
    if "service_workers" in results:
        service = results["service_workers"][1]
        ratio = service["modes"]["batching"]["levels"][top_level(service)]["service_over_engine"]
        rows.append(
            (
                "Service ≥ 85 % of engine at saturation (tiny demo, CPU, 2 workers + model)",
                f"{100 * ratio:.0f} %",
            )
        )
    if "frontend" in results:
        projection = results["frontend"][1]["projection"]
        standing = ", ".join(
            f"{layout} {100 * r['projected_service_over_engine']:.0f} %"
            for layout, r in projection.items()
            if isinstance(r, dict)
        )
        rows.append(
            (
                f"Service ≥ 85 % of a simulated H100 engine, projected to "
                f"{projection['cores']} cores",
                standing,
            )
        )
    for r in results["bulk"][1]["rows"] if "bulk" in results else []:
        rows.append(
            (
                f"Bulk scoring ≥ 85 % of the engine (CPU, {r['bundle']}, {r['files']} files)",
                f"{100 * r['bulk_over_engine']:.0f} %",
            )
        )
    if "engine_gpu" in results:
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
    else:
        rows.append(
            (
                "ONNX fp16 on GPU ≥ 2× PyTorch fp32; GPU engine ≥ 30 % of ceiling",
                "pending (no GPU run)",
            )
        )
    if "service_gpu" in results:
        service = results["service_gpu"][1]
        rows.append(
            (
                "Batching at 64 clients ≥ 5× batch size 1 on a GPU",
                f"{batching_speedup(service):.2f}×",
            )
        )
    else:
        rows.append(("Batching at 64 clients ≥ 5× batch size 1 on a GPU", "pending (no GPU run)"))
    return ["| goal | where we stand |", "|---|---|", *(f"| {g} | {v} |" for g, v in rows), ""]


def training_table(results: dict[str, tuple[str, dict]], model: str) -> list[str]:
    lines = [
        "One EmoDistill step (student, both projection heads, the loss against cached teacher "
        "outputs, AdamW) in bf16 at the paper's per-GPU batch, 128 / 4 = 32 crops of 8 s "
        "(`bench/train_probe.py`).",
        "",
    ]
    rows = [results[name] for name in ("train_gpu", "train_large_gpu") if name in results]
    if not rows:
        return [*lines, *pending("train_gpu", model)]
    lines += [
        "| student | device | batch × crop | ms / step | audio-s / s | peak memory |",
        "|---|---|---|---|---|---|",
    ]
    for _, r in rows:
        lines.append(
            f"| {r['preset']} | {r['device']} | {r['batch']} × {r['crop_s']:.0f} s | "
            f"{r['ms_per_step']:.0f} | {r['audio_s_per_s']:.0f} | {r['peak_memory_mb']:.0f} MB |"
        )
    return [*lines, "", *(f"`{cmd}`" for cmd, _ in rows), ""]


def decode_table(shown_cmd: str, decode: dict) -> list[str]:
    lines = [
        f"`{shown_cmd}`: the service's `decode_upload` (container, limits, FFmpeg decode, mono, "
        "soxr to 16 kHz) on one core, median per audio-second of a speech-like signal.",
        "",
        "| format | decoded | kB per audio-s | ms per audio-s |",
        "|---|---|---|---|",
    ]
    for r in decode["rows"]:
        ok = "yes" if r["decoded_ok"] else "no"
        kb = r["bytes_per_audio_s"] / 1000
        lines.append(f"| {r['format']} | {ok} | {kb:.1f} | {r['ms_per_audio_s']:.2f} |")
    return [*lines, ""]


def bulk_table(shown_cmd: str, bulk: dict) -> list[str]:
    lines = [
        f"`{shown_cmd}` ({bulk['machine']}, {bulk['rows'][0]['workers']} decoding workers; "
        f"median of {bulk['repeats']} after a warm-up, bulk and engine in alternation). The "
        "engine: the same backend's `infer` on the same decoded windows, in the same batches; "
        "bulk: `python -m emodistill score`'s work from the workers' start to the Parquet file. "
        "CPU ceiling: the most the cores hold when decoding (FFmpeg, measured) and the engine "
        "share them.",
        "",
        "| bundle | files | audio s | engine audio-s/s | bulk audio-s/s | bulk files/s "
        "| bulk / engine | CPU ceiling / engine | workers' start |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in bulk["rows"]:
        lines.append(
            f"| {r['bundle']} | {r['files']} | {r['audio_s']:.0f} | "
            f"{r['engine_audio_s_per_s']:.1f} | {r['bulk_audio_s_per_s']:.1f} | "
            f"{r['bulk_files_per_s']:.1f} | {100 * r['bulk_over_engine']:.0f} % | "
            f"{100 * r['cpu_ceiling_audio_s_per_s'] / r['engine_audio_s_per_s']:.0f} % | "
            f"{r['first_chunk_s']:.2f} s |"
        )
    ray_rows = [r for r in bulk["rows"] if r.get("ray_s") is not None]
    if not ray_rows:
        return [*lines, ""]
    start = bulk.get("ray_start_s")
    lines += [
        "",
        "**On Ray Data** (`python -m emodistill score --ray`, emodistill/bulk_ray.py): the same "
        "files through a local Ray of these cores, timed in alternation with the engine and "
        "the embedded scorer. A Ray run pays a fixed cost the embedded one does not (the "
        "actor's start and the model's load, the dataset's planning, the parts written and "
        "read back: `a run of one file`), and per file the decoded samples pass through Ray's "
        "object store (64 kB per audio-second)."
        + (f" Starting the local Ray took {start:.1f} s, once (not in the rows)." if start else ""),
        "",
        "| bundle | files | bulk audio-s/s | Ray audio-s/s | Ray files/s | Ray / bulk "
        "| a run of one file |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in ray_rows:
        lines.append(
            f"| {r['bundle']} | {r['files']} | {r['bulk_audio_s_per_s']:.1f} | "
            f"{r['ray_audio_s_per_s']:.1f} | {r['ray_files_per_s']:.1f} | "
            f"{100 * r['ray_over_bulk']:.0f} % | {r['ray_fixed_s']:.2f} s |"
        )
    lines += [
        "",
        "Ray is for what one machine cannot do: GPUs and cores on many nodes "
        '(docs/deploy.md, "Ray"). On one 2-core machine its fixed cost weighs most on few '
        "files.",
    ]
    return [*lines, ""]


def frontend_table(shown_cmd: str, frontend: dict) -> list[str]:
    e, a, p = frontend["engine"], frontend["model_process_alone"], frontend["projection"]
    utilisation = e.get("assumed_utilisation")
    source = (
        f"HuBERT-base's {GFLOP_PER_AUDIO_S['base']:g} GFLOP per audio-second at "
        f"{100 * utilisation:.0f} % of {PEAK_FP16_TFLOPS:g} TFLOP/s, and an assumed fixed cost"
        if utilisation
        else "given on the command line"
    )
    lines = [
        f"`{shown_cmd}` ({frontend['machine']}; the load generator shares the machine; "
        f"multipart uploads of a {frontend['clip_s']:g} s 16 kHz WAV).",
        "",
        f"The simulated engine (bench/simulated_engine.py) takes {e['fixed_ms']:g} ms + "
        f"{e['ms_per_audio_s']:.4f} ms per padded audio-second per batch ({source}; not a GPU "
        f"measurement): {e['clips_per_s_full_batches']:.0f} clips/s on full batches of "
        f"{e['max_batch_size']}. service / engine divides requests/s by that.",
        "",
        "| layout | clients | req/s | service / engine | p50 ms | p99 ms | mean batch "
        "| service CPU ms/req | of which the model process |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for layout, entry in frontend["layouts"].items():
        for c, r in sorted(entry["levels"].items(), key=lambda kv: int(kv[0])):
            model = r["model_process_cpu_ms"]
            lines.append(
                f"| {layout} | {c} | {r['requests_per_s']:.0f} | "
                f"{100 * r['service_over_engine']:.1f} % | {r['p50_ms']:.1f} | "
                f"{r['p99_ms']:.1f} | {r['mean_batch_size']:.1f} | "
                f"{r['service_cpu_ms_per_request']:.2f} | "
                f"{'–' if model is None else f'{model:.2f}'} |"
            )
    lines += [
        "",
        "CPU per request by stage, each timed alone (ms): "
        + ", ".join(f"{k} {v:.2f}" for k, v in frontend["components_ms"].items())
        + ".",
        "",
        f"The model process alone, fed over its socket without HTTP: {a['requests_per_s']:.0f} "
        f"req/s (limited by the feeding process on these cores), "
        f"{a['cpu_ms_per_request']:.3f} ms of its CPU per request at a mean batch of "
        f"{a['mean_batch_size']:.1f}: one core passes on at most "
        f"{1000 / a['cpu_ms_per_request']:.0f} req/s.",
        "",
        f"Projected to a {p['cores']}-core GPU host (HTTP workers on all cores but one; each "
        "worker's CPU per request as measured here at the most clients; workers share no lock, "
        "so they add up; the model process capped at its one-core ceiling; everything capped "
        "by the engine):",
        "",
        "| layout | HTTP workers | worker CPU ms/req | frontend req/s | model process ceiling "
        "| projected req/s | service / engine |",
        "|---|---|---|---|---|---|---|",
    ]
    for layout, r in p.items():
        if isinstance(r, dict):
            ceiling = r["model_process_ceiling_requests_per_s"]
            lines.append(
                f"| {layout} | {r['http_workers']} | {r['worker_cpu_ms_per_request']:.2f} | "
                f"{r['frontend_requests_per_s']:.0f} | "
                f"{'–' if ceiling is None else f'{ceiling:.0f}'} | "
                f"{r['projected_requests_per_s']:.0f} | "
                f"{100 * r['projected_service_over_engine']:.0f} % |"
            )
    shared = p.get("shared-model")
    if isinstance(shared, dict) and shared["model_process_ceiling_requests_per_s"]:
        margin = shared["model_process_ceiling_requests_per_s"] / e["clips_per_s_full_batches"]
        lines += [
            "",
            "Why `shared-model` is the default with a GPU: both multi-process layouts reach the "
            "engine in the projection, but `replicas` holds a model and a CUDA context per "
            "worker and splits the requests into N batchers, and its simulated GPU (a lock "
            "between the processes) time-shares perfectly, which a real GPU without MPS does "
            "not. `shared-model` keeps one model per GPU and one batcher. Its limit is the "
            "model process's single event loop: here its ceiling is "
            f"{margin:.1f}× the simulated engine; a faster engine would need that loop "
            "cheaper. One service serves one GPU: a multi-GPU host runs one per GPU (a pod or "
            "a container each).",
        ]
    return [*lines, ""]


def write_report(results: dict[str, tuple[str, dict]], model: str) -> Path:
    lines = [
        "# Benchmarks",
        "",
        "Regenerated by `make bench` (quick CPU run), `make bench FULL=1` (every size on the "
        "CPU) and `make bench GPU=1` (the GPU set, on a GPU host). Each section names the "
        "machine and command of its run; every ratio compares figures measured in one run. "
        "What the service profile found, and what was changed for it: "
        "[service-profile.md](service-profile.md).",
        "",
        "## Where we stand",
        "",
        *goals(results),
        "How to read it:",
        "",
        "- The student's cost grows with the clip's length. Whisper always encodes a 30 s "
        "window, so the cascade's cost barely moves, and the ratio falls as clips grow.",
        "- On a CPU, HuBERT-base's engine throughput hardly grows with batch size (section 2). "
        "Batching then cannot raise the base service's throughput; what it buys on a CPU is "
        "the tiny model's cheaper per-clip overhead. The 5× batching goal is a GPU goal.",
        "- On this shared 2-core machine the load generator takes part of the same cores, and "
        "identical runs can differ by tens of percent. Engines and cascade stages are timed in "
        "alternation so that a slow spell hits all of them alike.",
        "",
        "## 1. Cascade vs student (ms per clip)",
        "",
    ]
    lines += cascade_table(*results["cascade"]) if "cascade" in results else ["Pending.", ""]
    lines += ["## 2. Engine", "", "### CPU", ""]
    for name in ("engine", "engine_tiny"):
        if name in results:
            lines += [*engine_table(*results[name]), ""]
    lines += [
        "### GPU",
        "",
        f"The ceiling is {GFLOP_PER_AUDIO_S['base']:g} GFLOP per audio-second (HuBERT-base) "
        f"at {PEAK_FP16_TFLOPS:g} dense fp16 TFLOP/s (H100/H200); fp32 rows are held to the "
        "same ceiling.",
        "",
    ]
    for name in ("engine_gpu", "engine_tiny_gpu"):
        lines += [*engine_table(*results[name]), ""] if name in results else pending(name, model)
    if "base_bundle_gpu" in results:
        cmd, checks = results["base_bundle_gpu"]
        lines += [
            f"CUDA parity of the base bundle (`{cmd}`, {checks['device']}):",
            "",
            "```",
            json.dumps(checks["cuda"], indent=2),
            "```",
            "",
        ]
    else:
        lines += pending("base_bundle_gpu", model)
    lines += [
        "## 3. Service under load",
        "",
        "![service throughput and latency](bench/service.png)",
        "",
    ]
    for name, what in (
        ("service", "CPU, tiny demo bundle, one process (--workers 1)"),
        ("service_base", "CPU, HuBERT-base bundle (random weights)"),
    ):
        if name in results:
            lines += service_table(*results[name], what)
    if "service_gpu" in results:
        lines += service_table(*results["service_gpu"], "GPU, HuBERT-base bundle, fp16 on CUDA")
    else:
        lines += ["**GPU.**", "", *pending("service_gpu", model)]
    lines += ["## 4. Training on a GPU", "", *training_table(results, model)]
    lines += ["### The GPU checklist's last run", "", *checklist_lines(OUT / "gpu.json")]
    lines += ["## 5. Bulk scoring", ""]
    lines += bulk_table(*results["bulk"]) if "bulk" in results else ["Pending.", ""]
    lines += ["## 6. Decoding each format", ""]
    lines += decode_table(*results["decode"]) if "decode" in results else ["Pending.", ""]
    lines += ["## 7. The frontend against a simulated GPU", ""]
    lines += frontend_table(*results["frontend"]) if "frontend" in results else ["Pending.", ""]
    if "service_workers" in results:
        lines += service_table(
            *results["service_workers"],
            "CPU, tiny demo bundle, 2 HTTP workers + model process",
        )
    path = DOCS / "benchmarks.md"
    path.write_text("\n".join(lines) + "\n")
    services = {
        label: results[name][1]
        for name, label in (
            ("service", "tiny"),
            ("service_base", "base"),
            ("service_gpu", "base, GPU"),
        )
        if name in results
    }
    if services:
        plot_service(services, OUT / "service.png")
    return path


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--full", action="store_true", help="every size and length on the CPU (long)")
    p.add_argument("--gpu", action="store_true", help="the GPU set (needs onnxruntime-gpu)")
    p.add_argument("--model", default="models/demo/bundle", help="demo bundle for the service load")
    p.add_argument("--report-only", action="store_true", help="rebuild the report from docs/bench")
    p.add_argument("--only", default=None, help="run these sections alone, e.g. engine,service")
    args = p.parse_args()
    failed = []
    if args.gpu and not args.report_only:
        import torch

        if not torch.cuda.is_available():
            sys.exit("error: the GPU set needs a GPU, and torch sees none (no figure written)")
    if not args.report_only:
        settings = GPU if args.gpu else FULL if args.full else QUICK
        if args.only:
            wanted = args.only.split(",")
            if unknown := set(wanted) - set(settings):
                p.error(f"unknown sections {sorted(unknown)}; these run here: {list(settings)}")
            settings = {name: settings[name] for name in wanted}
        failed = run_all(settings, args.model)
    print(f"\nreport: {write_report(load_results(), args.model)}")
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


main()
