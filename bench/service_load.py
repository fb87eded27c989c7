"""Load on `python -m service` over loopback: cold start, latency, throughput, CPU, memory.

    python bench/service_load.py --model models/demo/bundle [--concurrency 1,4,16,64]
                                 [--requests 200] [--repeats 3] [--service-args "--device cuda"]
                                 [--out FILE.json]

Starts the service as a subprocess (so start-up is measured cold), then at each concurrency,
after a warm-up burst, `repeats` rounds of `requests` requests: requests/s (median round),
p50/p95/p99 latency (all rounds), the service process's CPU time per request, with batching
on and with max batch size 1 (the same run, so ratios compare like with like). The mean batch
size comes from /metrics. Last, the engine alone: the service's own backend class on the same
bundle file and provider, timed in this process at each level's mean batch size, so
service / engine is what HTTP, decoding and queueing cost. Prints a table and writes JSON.

The load generator is aiohttp: httpx's client used 12 ms of CPU per request at 64
connections (0.35 ms for aiohttp), enough to starve the service it shared 2 cores with.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import os
import platform
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import numpy as np
import soundfile as sf

from bench.report import Results, pending
from bench.timing import timed
from emodistill.runtime import OnnxBackend
from export.parity import probe_clips


def speech_like(seconds: float, rate_hz: int = 16_000) -> bytes:
    """One of export's speech-like probe clips, as 16-bit WAV bytes."""
    buffer = io.BytesIO()
    sf.write(
        buffer,
        probe_clips(1, seconds, seconds, rate_hz)[0],
        rate_hz,
        format="WAV",
        subtype="PCM_16",
    )
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of the process and its children."""
    total = 0.0
    for p in process_tree(pid):
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024
    return total


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (a multi-process service's workers and model process)."""
    pids, i = [pid], 0
    while i < len(pids):
        for path in Path("/proc").glob(f"{pids[i]}/task/*/children"):
            pids += [int(child) for child in path.read_text().split()]
        i += 1
    return pids


def own_cpu_s(pid: int) -> float:
    """User + system CPU seconds one process has used so far (all its threads); 0 once gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """CPU seconds the service has used so far: the process and all its children."""
    return sum(own_cpu_s(p) for p in process_tree(pid))


def gpu_mb(pid: int) -> float | None:
    """Device memory the process holds, from nvidia-smi; None without one."""
    if shutil.which("nvidia-smi") is None:
        return None
    query = ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"]
    try:
        lines = subprocess.run(query, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in lines.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) == 2 and fields[0] == str(pid) and fields[1].isdigit():
            return float(fields[1])
    return None


def start_service(
    model: str, extra: list[str], module: str = "service"
) -> tuple[subprocess.Popen, str, float]:
    """`python -m MODULE --model MODEL --port P EXTRA...` -> (process, URL, seconds to ready)."""
    port = free_port()
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", module, "--model", model, "--port", str(port), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = start + 300
    while time.perf_counter() < deadline:
        try:
            if httpx.get(url + "/v2/health/ready", timeout=1).status_code == 200:
                return process, url, time.perf_counter() - start
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"the service exited during start-up: {' '.join(extra)}")
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("the service was not ready within 300 s")


async def fire(
    url: str,
    body: bytes | Sequence[bytes],
    total: int,
    concurrency: int,
    content_type: str = "audio/wav",
    path: str = "/predict",
    form_field: str | None = None,
    extra_headers: dict[str, str] | Sequence[dict[str, str]] | None = None,
) -> tuple[float, list[float]]:
    """`total` POSTs of `body` to `path` from `concurrency` clients, each on its own
    kept-alive connection: (wall seconds, latency of each request in seconds). `form_field`:
    sent as that part of a multipart form instead (a file upload). Several bodies (each with
    its own extra headers, if a list of them is given) are sent in turn. Raises on any
    non-200."""
    latencies: list[float] = []
    left = total
    bodies = [body] if isinstance(body, bytes) else list(body)
    extras = [extra_headers or {}] if not isinstance(extra_headers, Sequence) else extra_headers
    base = {} if form_field else {"content-type": content_type}
    headers = [{**base, **extras[i % len(extras)]} for i in range(len(bodies))]
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def client() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                turn = left % len(bodies)
                start = time.perf_counter()
                data: bytes | aiohttp.FormData = bodies[turn]
                if form_field:  # one per request: aiohttp consumes a form as it sends it
                    data = aiohttp.FormData()
                    data.add_field(
                        form_field, bodies[turn], filename="clip", content_type=content_type
                    )
                async with session.post(url + path, data=data, headers=headers[turn]) as reply:
                    await reply.read()
                    if reply.status != 200:
                        raise RuntimeError(f"{path} answered {reply.status}")
                latencies.append(time.perf_counter() - start)

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return time.perf_counter() - start, latencies


def batch_totals(url: str) -> tuple[float, float]:
    """(clips, model calls) so far, from /metrics."""
    values = {}
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith("emodistill_batch_size_"):
            name, value = line.split(" ")[:2]
            values[name] = float(value)
    return values.get("emodistill_batch_size_sum", 0.0), values.get(
        "emodistill_batch_size_count", 0.0
    )


def measure_level(
    url: str,
    pid: int,
    body: bytes,
    concurrency: int,
    requests: int,
    repeats: int,
    content_type: str = "audio/wav",
) -> dict:
    """One concurrency level: a warm-up burst, then `repeats` rounds of `requests`."""
    requests = max(requests, 2 * concurrency)
    asyncio.run(fire(url, body, min(requests, 4 * concurrency), concurrency, content_type))
    before_calls = batch_totals(url)
    before_cpu = {p: own_cpu_s(p) for p in process_tree(pid)}
    rates, latencies = [], []
    for _ in range(repeats):
        wall, times = asyncio.run(fire(url, body, requests, concurrency, content_type))
        rates.append(requests / wall)
        latencies += times
    after_cpu = {p: own_cpu_s(p) for p in process_tree(pid)}
    by_pid = {p: after_cpu[p] - before_cpu.get(p, 0.0) for p in after_cpu}
    service_cpu = sum(by_pid.values())
    after_calls = batch_totals(url)
    calls = after_calls[1] - before_calls[1]
    return {
        "requests": requests * repeats,
        "requests_per_s": statistics.median(rates),
        "requests_per_s_rounds": rates,
        "p50_ms": 1000 * float(np.percentile(latencies, 50)),
        "p95_ms": 1000 * float(np.percentile(latencies, 95)),
        "p99_ms": 1000 * float(np.percentile(latencies, 99)),
        "service_cpu_ms_per_request": 1000 * service_cpu / (requests * repeats),
        # Each of the service's processes (the supervisor first, then its children by pid).
        "cpu_ms_per_request_by_pid": {
            str(p): 1000 * v / (requests * repeats) for p, v in sorted(by_pid.items())
        },
        "mean_batch_size": (after_calls[0] - before_calls[0]) / calls if calls else math.nan,
    }


def engine_clips_per_s(
    model: str, device: str, clip: np.ndarray, batch_sizes: set[int], repeats: int
) -> dict[int, float]:
    """The service's backend alone (same file, provider and padding), clips/s per batch size."""
    backend = OnnxBackend(Path(model), device=device)
    rounds = max(5, repeats)
    return {b: b / timed(backend.infer, rounds, [clip] * b) for b in sorted(batch_sizes)}


def option(args: list[str], flag: str, default: str) -> str:
    return args[args.index(flag) + 1] if flag in args[:-1] else default


def run(
    model: str,
    clip_s: float,
    concurrencies: list[int],
    requests: int,
    repeats: int,
    service_args: list[str],
) -> dict:
    """Both modes (batching; max batch size 1), each concurrency level in one service start."""
    body = speech_like(clip_s)
    results: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "clip_s": clip_s,
        "requests_per_level": requests,
        "repeats": repeats,
        "service_args": service_args,
        "modes": {},
    }
    modes = {"batching": [], "batch_size_1": ["--max-batch-size", "1"]}
    for mode, extra in modes.items():
        process, url, cold_s = start_service(model, [*service_args, *extra])
        try:
            entry: dict = {"cold_start_to_ready_s": cold_s, "levels": {}}
            for c in concurrencies:
                level = measure_level(url, process.pid, body, c, requests, repeats)
                level["audio_s_per_s"] = level["requests_per_s"] * clip_s
                entry["levels"][str(c)] = level
                print(f"  {mode} c={c}: {level['requests_per_s']:.1f} req/s", flush=True)
            entry["rss_mb"] = rss_mb(process.pid)
            entry["gpu_mb"] = gpu_mb(process.pid)
            results["modes"][mode] = entry
        finally:
            process.terminate()
            process.wait(timeout=30)
    # The engine at the batch sizes the service formed; the same decoded clip the service saw.
    clip = sf.read(io.BytesIO(body), dtype="float32")[0]
    sizes = {
        max(1, round(level["mean_batch_size"]))
        for entry in results["modes"].values()
        for level in entry["levels"].values()
        if not math.isnan(level["mean_batch_size"])
    }
    device = option(service_args, "--device", "auto")
    engine = engine_clips_per_s(model, device, clip, sizes, repeats)
    results["engine_clips_per_s"] = {str(b): v for b, v in engine.items()}
    for entry in results["modes"].values():
        for level in entry["levels"].values():
            b = max(1, round(level["mean_batch_size"])) if level["mean_batch_size"] > 0 else 1
            level["engine_clips_per_s"] = engine[b]
            level["service_over_engine"] = level["requests_per_s"] / engine[b]
    return results


def print_table(results: dict) -> None:
    print(f"machine: {results['machine']}; clip {results['clip_s']} s")
    header = [
        "mode",
        "conc.",
        "req/s",
        "audio-s/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "mean batch",
        "CPU ms/req",
        "/engine",
    ]
    print(" | ".join(f"{h:>12}" for h in header))
    for mode, entry in results["modes"].items():
        for c, r in entry["levels"].items():
            cells = [
                r["requests_per_s"],
                r["audio_s_per_s"],
                r["p50_ms"],
                r["p95_ms"],
                r["p99_ms"],
                r["mean_batch_size"],
                r["service_cpu_ms_per_request"],
                r["service_over_engine"],
            ]
            print(" | ".join([f"{mode:>12}", f"{c:>12}", *(f"{v:>12.2f}" for v in cells)]))
        gpu = f", GPU {entry['gpu_mb']:.0f} MB" if entry.get("gpu_mb") else ""
        print(
            f"{mode}: cold start to ready {entry['cold_start_to_ready_s']:.2f} s, "
            f"RSS {entry['rss_mb']:.0f} MB{gpu}"
        )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="models/demo/bundle")
    p.add_argument("--clip-s", type=float, default=3.0)
    p.add_argument("--concurrency", default="1,4,16,64", help="levels, comma-separated")
    p.add_argument("--requests", type=int, default=200, help="per round (at least 2 × clients)")
    p.add_argument("--repeats", type=int, default=3, help="rounds per level")
    p.add_argument("--service-args", default="", help='extra flags, e.g. "--device cuda"')
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    service_args = shlex.split(args.service_args)
    results = run(args.model, args.clip_s, levels, args.requests, args.repeats, service_args)
    results["command"] = " ".join(sys.argv)
    print_table(results)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


# The service runs of the report: (benchmark name, what each ran), in the report's order.
CPU_RUNS = (
    ("service", "CPU, tiny demo bundle, one process (--workers 1)"),
    ("service_base", "CPU, HuBERT-base bundle (random weights)"),
)
GPU_RUN = ("service_gpu", "GPU, HuBERT-base bundle, fp16 on CUDA")
WORKERS_RUN = ("service_workers", "CPU, tiny demo bundle, 2 HTTP workers + model process")


def service_table(shown_cmd: str, service: dict[str, Any], what: str) -> list[str]:
    """One run: every mode and level, the batching speed-up, cold start and memory."""
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


def top_level(service: dict[str, Any]) -> str:
    """The most concurrent clients of a run, as its JSON keys them."""
    return str(max(int(c) for c in service["modes"]["batching"]["levels"]))


def batching_speedup(service: dict[str, Any]) -> float:
    """Requests/s batching over batch size 1, at the most clients."""
    top = top_level(service)
    modes = service["modes"]
    return (
        modes["batching"]["levels"][top]["requests_per_s"]
        / modes["batch_size_1"]["levels"][top]["requests_per_s"]
    )


def report_section(results: Results, model: str) -> list[str]:
    """Section 3 of docs/benchmarks.md: the plot, each CPU run, then the GPU run or its
    command. (The workers' run is in the frontend's section, `workers_section`.)"""
    lines = ["![service throughput and latency](bench/service.png)", ""]
    for name, what in CPU_RUNS:
        if name in results:
            lines += service_table(*results[name], what)
    name, what = GPU_RUN
    if name in results:
        lines += service_table(*results[name], what)
    else:
        lines += ["**GPU.**", "", *pending(name, model)]
    return lines


def workers_section(results: Results) -> list[str]:
    """The demo bundle served by HTTP workers and the model process, where present."""
    name, what = WORKERS_RUN
    return service_table(*results[name], what) if name in results else []


def cpu_goals(results: Results) -> list[tuple[str, str]]:
    """Batching's speed-up and the service against its engine, for each CPU run."""
    rows = []
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
    return rows


def gpu_goals(results: Results) -> list[tuple[str, str]]:
    """Batching's speed-up on a GPU, the goal batching is for."""
    goal = "Batching at 64 clients ≥ 5× batch size 1 on a GPU"
    if "service_gpu" not in results:
        return [(goal, "pending (no GPU run)")]
    return [(goal, f"{batching_speedup(results['service_gpu'][1]):.2f}×")]


if __name__ == "__main__":
    main()
