"""The service's frontend against a simulated GPU: can the HTTP side keep an H100 fed?

    python -m bench.frontend [--model models/demo/bundle] [--layouts single,shared-model,replicas]
                             [--workers 2] [--clients 16,64,256] [--requests 600] [--repeats 3]
                             [--clip-s 3] [--fixed-ms 2] [--ms-per-audio-s 0.059]
                             [--cores 16] [--out docs/bench/frontend.json]
    python -m bench.frontend serve --model BUNDLE [--fixed-ms A] [--ms-per-audio-s B]
                             [service flags]       (the service with the simulated engine)

The service runs with bench/simulated_engine.py in place of onnxruntime (each batch takes
`fixed_ms + ms_per_audio_s × padded audio-seconds`), so what is measured is the frontend
alone: HTTP, the multipart upload, decoding, batching, the answer. For each process layout
(`single`: one process; `shared-model`: `--workers` HTTP processes feeding one model
process; `replicas`: `--workers` processes each with its own model, sharing one simulated
GPU), at each client count, `--repeats` rounds of `--requests` multipart POSTs of a 16 kHz
WAV of `--clip-s` (aiohttp, kept-alive connections): requests/s (median round), p50 and p99
latency, the service's CPU per request (all its processes), the model process's share, and
the mean batch. service/engine divides requests/s by the engine's throughput on full
batches (`--max-batch-size` 32 clips of `--clip-s`).

CPU per request by component comes from timing each stage alone in this process (the
multipart parse, decoding, resampling a 44.1 kHz upload, the JSON answer); "HTTP and the
rest" is the single process's measured CPU per request less those.

The projection to a `--cores` GPU host: HTTP workers scale with cores (each is a process
with its own event loop and no shared lock), so requests/s = (cores − 1) × 1000 / (worker
CPU ms per request), capped by the model process's own ceiling (1000 / its CPU ms per
request: one event loop) and by the engine. Its assumptions are printed with it.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import multiprocessing
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from bench.ceiling import GFLOP_PER_AUDIO_S, PEAK_FP16_TFLOPS
from bench.report import Results
from bench.service_load import (
    measure_level,
    own_cpu_s,
    process_tree,
    speech_like,
    start_service,
    workers_section,
)
from bench.simulated_engine import (
    ASSUMED_UTILISATION,
    DEFAULT_FIXED_MS,
    DEFAULT_MS_PER_AUDIO_S,
    LatencyModel,
    SimulatedFactory,
)

BOUNDARY = "emodistill-bench-boundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
LAYOUTS = {"single": [], "shared-model": ["--layout", "shared-model"]}
LAYOUTS["replicas"] = ["--layout", "replicas"]


def multipart(wav: bytes) -> bytes:
    """What `curl -F file=@clip.wav` sends."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="clip.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    )
    return head.encode() + wav + f"\r\n--{BOUNDARY}--\r\n".encode()


# --- the simulated service ----------------------------------------------------------------------


def serve(argv: list[str]) -> None:
    """`serve`: python -m service's settings and processes, the simulated engine inside."""
    from service.cli import settings_from_cli
    from service.processes import serve as serve_service

    p = argparse.ArgumentParser(prog="python -m bench.frontend serve")
    p.add_argument("--fixed-ms", type=float, default=DEFAULT_FIXED_MS)
    p.add_argument("--ms-per-audio-s", type=float, default=DEFAULT_MS_PER_AUDIO_S)
    p.add_argument("--load-s", type=float, default=0.0, help="the model's load time")
    ours, rest = p.parse_known_args(argv)
    settings = settings_from_cli(rest)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    latency = LatencyModel(ours.fixed_ms, ours.ms_per_audio_s)
    # Replicas share one simulated GPU: one batch at a time across the processes.
    lock = multiprocessing.get_context("spawn").Lock() if settings.layout == "replicas" else None
    sys.exit(serve_service(settings, SimulatedFactory(latency, lock, ours.load_s)))


# --- CPU per request by component ---------------------------------------------------------------


def _median_ms(run: Any, repeats: int = 200) -> float:
    run()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        run()
        times.append(time.process_time() - start)
    return 1000 * statistics.median(times)


def components(wav: bytes, clip_s: float, model: Path) -> dict[str, float]:
    """Milliseconds of CPU per request for each stage, timed alone (median of 200)."""
    from fastapi.encoders import jsonable_encoder
    from fastapi.responses import JSONResponse
    from starlette.requests import Request

    from emodistill.audio_input import decode_upload
    from emodistill.bundle import load_bundle
    from emodistill.options import InferenceOptions
    from emodistill.prediction import ModelCard, Prediction

    body = multipart(wav)
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/predict",
        "headers": [(b"content-type", MULTIPART.encode())],
    }

    async def parse() -> None:
        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        form = await Request(scope, receive).form()
        await form["file"].read()  # type: ignore[union-attr]
        await form.close()

    loop = asyncio.new_event_loop()
    limits = InferenceOptions().audio_limits(16_000)
    stereo_44k = soxr.resample(
        np.stack([sf.read(io.BytesIO(wav), dtype="float32")[0]] * 2, 1), 16_000, 44_100
    )
    meta = load_bundle(model)
    probs = {label: 1 / len(meta.labels) for label in meta.labels}
    answer = {"label": meta.labels[0], "probabilities": probs, "segmentation": "whole"}

    def respond() -> None:
        prediction = Prediction(**answer, duration_s=clip_s, model=ModelCard.of(meta))
        JSONResponse(jsonable_encoder(prediction)).render(jsonable_encoder(prediction))

    try:
        return {
            "multipart parse": _median_ms(lambda: loop.run_until_complete(parse())),
            "decode (16 kHz WAV)": _median_ms(lambda: decode_upload(wav, limits, "audio/wav")),
            "resample (a 44.1 kHz stereo upload)": _median_ms(
                lambda: soxr.resample(stereo_44k.mean(axis=1), 44_100, 16_000)
            ),
            "JSON answer": _median_ms(respond),
        }
    finally:
        loop.close()


# --- the runs -----------------------------------------------------------------------------------


def model_pid(supervisor: int) -> int | None:
    """The model process of a shared-model service: the supervisor's child that listens on
    the model's Unix socket (service/processes.py's MODEL_SOCKET)."""
    from service.processes import MODEL_SOCKET

    inodes = {
        line.split()[6]
        for line in Path("/proc/net/unix").read_text().splitlines()[1:]
        if line.endswith("/" + MODEL_SOCKET)
    }
    for pid in process_tree(supervisor)[1:]:
        try:
            links = {os.readlink(f) for f in Path(f"/proc/{pid}/fd").iterdir()}
        except OSError:
            continue
        if any(f"socket:[{inode}]" in links for inode in inodes):
            return pid
    return None


def model_process_ceiling(
    model: Path, latency: LatencyModel, clip_s: float, max_batch_size: int, seconds: float
) -> dict[str, Any]:
    """The model process alone, fed over its socket by 4 connections with 512 requests in
    flight (no HTTP): requests/s, its CPU per request, the mean batch. The most one model
    process can pass on, whatever the number of HTTP workers."""
    from prometheus_client import CollectorRegistry, multiprocess

    from service.model_client import ModelClient, client_limits
    from service.model_process import main as model_main
    from service.processes import METRICS_DIR_VARIABLE
    from service.settings import Settings

    run_dir = Path(tempfile.mkdtemp(prefix="emodistill-bench-"))
    (run_dir / "metrics").mkdir()
    os.environ[METRICS_DIR_VARIABLE] = str(run_dir / "metrics")
    settings = Settings(model=model, max_batch_size=max_batch_size, max_queue=4096)
    context = multiprocessing.get_context("spawn")
    theirs, ours = context.Pipe(duplex=False)
    path = str(run_dir / "model.sock")
    process = context.Process(
        target=model_main, args=(settings, SimulatedFactory(latency), path, ours, os.getpid())
    )
    process.start()
    pid = process.pid
    assert pid is not None
    clip = np.zeros(round(clip_s * 16_000), np.float32)

    async def load() -> tuple[int, float, float]:
        clients = [await ModelClient.connect(path, client_limits(settings)) for _ in range(4)]
        done, deadline = 0, 0.0

        async def one(client: ModelClient) -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                await client.submit_many([clip])
                done += 1

        deadline = time.perf_counter() + 1.0  # warm-up
        await asyncio.gather(*(one(clients[i % 4]) for i in range(512)))
        done, cpu_before = 0, own_cpu_s(pid)
        start = time.perf_counter()
        deadline = start + seconds
        await asyncio.gather(*(one(clients[i % 4]) for i in range(512)))
        wall = time.perf_counter() - start
        for client in clients:
            await client.close()
        return done, wall, own_cpu_s(pid) - cpu_before

    try:
        if theirs.recv() is not None:
            raise RuntimeError("the model process did not start")
        done, wall, cpu = asyncio.run(load())
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, str(run_dir / "metrics"))
        size = {
            s.name: s.value
            for m in registry.collect()
            if m.name == "emodistill_batch_size"
            for s in m.samples
        }
    finally:
        process.terminate()
        process.join(30)
        del os.environ[METRICS_DIR_VARIABLE]
        shutil.rmtree(run_dir, ignore_errors=True)
    return {
        "requests_per_s": done / wall,
        "cpu_ms_per_request": 1000 * cpu / done,
        "mean_batch_size": size["emodistill_batch_size_sum"] / size["emodistill_batch_size_count"],
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    latency = LatencyModel(args.fixed_ms, args.ms_per_audio_s)
    wav = speech_like(args.clip_s)
    body = multipart(wav)
    engine = latency.clips_per_s(args.max_batch_size, args.clip_s)
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "clip_s": args.clip_s,
        "engine": {
            "fixed_ms": args.fixed_ms,
            "ms_per_audio_s": args.ms_per_audio_s,
            "assumed_utilisation": ASSUMED_UTILISATION
            if args.ms_per_audio_s == DEFAULT_MS_PER_AUDIO_S
            else None,
            "clips_per_s_full_batches": engine,
            "max_batch_size": args.max_batch_size,
        },
        "components_ms": components(wav, args.clip_s, args.model),
        "model_process_alone": model_process_ceiling(
            args.model, latency, args.clip_s, args.max_batch_size, 5.0
        ),
        "layouts": {},
    }
    for layout in args.layouts.split(","):
        flags = [*LAYOUTS[layout], "--workers", "1" if layout == "single" else str(args.workers)]
        flags += ["--max-batch-size", str(args.max_batch_size), "--fixed-ms", str(args.fixed_ms)]
        flags += ["--ms-per-audio-s", str(args.ms_per_audio_s), "--max-queue", "1024"]
        process, url, cold_s = start_service(str(args.model), ["serve", *flags], "bench.frontend")
        entry: dict[str, Any] = {"flags": flags, "cold_start_s": cold_s, "levels": {}}
        try:
            model = model_pid(process.pid) if layout == "shared-model" else None
            for clients in [int(c) for c in args.clients.split(",")]:
                level = measure_level(
                    url, process.pid, body, clients, args.requests, args.repeats, MULTIPART
                )
                level["service_over_engine"] = level["requests_per_s"] / engine
                by_pid = level["cpu_ms_per_request_by_pid"]
                level["model_process_cpu_ms"] = by_pid.get(str(model)) if model else None
                entry["levels"][str(clients)] = level
                print(
                    f"  {layout} × {clients} clients: {level['requests_per_s']:.0f} req/s, "
                    f"{level['service_cpu_ms_per_request']:.2f} ms CPU/request",
                    flush=True,
                )
        finally:
            process.terminate()
            process.wait(timeout=60)
        results["layouts"][layout] = entry
    results["projection"] = project(results, args.cores)
    return results


def project(results: dict[str, Any], cores: int) -> dict[str, Any]:
    """Requests/s on a `cores` GPU host, from the CPU per request measured here at the
    largest client count (see the module doc for the assumptions)."""
    engine = results["engine"]["clips_per_s_full_batches"]
    alone = results["model_process_alone"]
    out: dict[str, Any] = {"cores": cores}
    for layout, entry in results["layouts"].items():
        level = entry["levels"][max(entry["levels"], key=int)]
        model = level["model_process_cpu_ms"] or 0.0
        worker_ms = level["service_cpu_ms_per_request"] - model
        http_workers = cores - 1 if layout != "single" else 1
        frontend = http_workers * 1000 / worker_ms
        # The model process's ceiling at the batches a fed GPU forms, measured without HTTP.
        ceiling = 1000 / alone["cpu_ms_per_request"] if layout == "shared-model" else None
        projected = min(frontend, ceiling or frontend, engine)
        out[layout] = {
            "http_workers": http_workers,
            "worker_cpu_ms_per_request": worker_ms,
            "frontend_requests_per_s": frontend,
            "model_process_ceiling_requests_per_s": ceiling,
            "projected_requests_per_s": projected,
            "projected_service_over_engine": projected / engine,
        }
    return out


def print_table(results: dict[str, Any]) -> None:
    e = results["engine"]
    print(
        f"machine: {results['machine']}; clip {results['clip_s']} s; simulated engine "
        f"{e['fixed_ms']} ms + {e['ms_per_audio_s']:.4f} ms per padded audio-s: "
        f"{e['clips_per_s_full_batches']:.0f} clips/s on full batches of {e['max_batch_size']}"
    )
    print("CPU per request by component (ms):")
    for name, ms in results["components_ms"].items():
        print(f"  {name}: {ms:.3f}")
    print(
        "layout | clients | req/s | /engine | p50 ms | p99 ms | CPU ms/req | model proc ms | batch"
    )
    for layout, entry in results["layouts"].items():
        for clients, r in entry["levels"].items():
            model = r["model_process_cpu_ms"]
            print(
                f"{layout} | {clients} | {r['requests_per_s']:.0f} | {r['service_over_engine']:.3f}"
                f" | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['service_cpu_ms_per_request']:.2f}"
                f" | {'-' if model is None else f'{model:.2f}'} | {r['mean_batch_size']:.1f}"
            )
    a = results["model_process_alone"]
    print(
        f"model process alone (no HTTP): {a['requests_per_s']:.0f} req/s, "
        f"{a['cpu_ms_per_request']:.3f} ms CPU/request, mean batch {a['mean_batch_size']:.1f}"
    )
    p = results["projection"]
    print(f"projection to {p['cores']} cores:")
    for layout, r in p.items():
        if isinstance(r, dict):
            print(
                f"  {layout}: {r['http_workers']} HTTP workers × "
                f"{1000 / r['worker_cpu_ms_per_request']:.0f} req/s per core -> "
                f"{r['projected_requests_per_s']:.0f} req/s, "
                f"{100 * r['projected_service_over_engine']:.0f} % of the engine"
            )


def main() -> None:
    if "serve" in sys.argv[1:]:  # bench.service_load.start_service puts its flags first
        argv = sys.argv[1:]
        argv.remove("serve")
        serve(argv)
        return
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", type=Path, default=Path("models/demo/bundle"))
    p.add_argument("--layouts", default="single,shared-model,replicas")
    p.add_argument("--workers", type=int, default=2, help="HTTP processes of the multi layouts")
    p.add_argument("--clients", default="16,64,256")
    p.add_argument("--requests", type=int, default=600, help="per round")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--clip-s", type=float, default=3.0)
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--fixed-ms", type=float, default=DEFAULT_FIXED_MS)
    p.add_argument("--ms-per-audio-s", type=float, default=DEFAULT_MS_PER_AUDIO_S)
    p.add_argument("--cores", type=int, default=16, help="the GPU host of the projection")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    results = run(args)
    results["command"] = "python -m bench.frontend " + " ".join(sys.argv[1:])
    print_table(results)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


def report_section(results: Results, model: str) -> list[str]:
    """Section 7 of docs/benchmarks.md: each layout against the simulated engine, the CPU per
    request by stage, the model process alone, the projection to a GPU host; then the demo
    bundle served by workers and the model process (`service_load.workers_section`)."""
    if "frontend" not in results:
        return ["Pending.", "", *workers_section(results)]
    shown_cmd, frontend = results["frontend"]
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
    return [*lines, "", *workers_section(results)]


def goals(results: Results) -> list[tuple[str, str]]:
    """Each layout, projected to a GPU host's cores, against the simulated engine."""
    if "frontend" not in results:
        return []
    projection = results["frontend"][1]["projection"]
    standing = ", ".join(
        f"{layout} {100 * r['projected_service_over_engine']:.0f} %"
        for layout, r in projection.items()
        if isinstance(r, dict)
    )
    goal = f"Service ≥ 85 % of a simulated H100 engine, projected to {projection['cores']} cores"
    return [(goal, standing)]


if __name__ == "__main__":
    main()
