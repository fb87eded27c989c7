"""Load on `python -m service` over loopback: cold start, latency, throughput, memory.

    python bench/service_load.py --model models/demo/bundle [--requests 320] [--out FILE.json]

Starts the service as a subprocess (so start-up is measured cold), then, bounded in requests
and time: p50/p99 latency of one clip at concurrency 1, and throughput at a concurrency with
batching on and with max batch size 1 (the same run, so the ratio compares like with like).
Prints a table and writes JSON. Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf


def speech_like(seconds: float, rate_hz: int = 16_000, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    f0 = 140 * (1 + 0.2 * np.sin(2 * np.pi * 0.7 * t))
    voice = sum(np.sin(k * 2 * np.pi * np.cumsum(f0) / rate_hz) / k for k in range(1, 6))
    x = 0.2 * voice * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2) + 0.01 * rng.standard_normal(
        t.size
    )
    buffer = io.BytesIO()
    sf.write(buffer, x.astype(np.float32), rate_hz, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_service(model: str, extra: list[str]) -> tuple[subprocess.Popen, str, float]:
    port = free_port()
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "--model", model, "--port", str(port), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = start + 120
    while time.perf_counter() < deadline:
        try:
            if httpx.get(url + "/v2/health/ready", timeout=1).status_code == 200:
                return process, url, time.perf_counter() - start
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise RuntimeError("the service exited during start-up")
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("the service was not ready within 120 s")


async def fire(url: str, body: bytes, total: int, concurrency: int) -> dict[str, float]:
    latencies: list[float] = []
    statuses: list[int] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            queue.get_nowait()
            start = time.perf_counter()
            response = await client.post(
                url + "/predict", content=body, headers={"content-type": "audio/wav"}
            )
            latencies.append(time.perf_counter() - start)
            statuses.append(response.status_code)

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    ok = sum(s == 200 for s in statuses)
    return {
        "requests": total,
        "ok": ok,
        "wall_s": wall,
        "requests_per_s": total / wall,
        "p50_ms": 1000 * float(np.percentile(latencies, 50)),
        "p99_ms": 1000 * float(np.percentile(latencies, 99)),
    }


def mean_batch(url: str) -> float:
    text = httpx.get(url + "/metrics").text
    values = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith("emodistill_batch_size_")
    }
    count = values.get("emodistill_batch_size_count", 0)
    return values.get("emodistill_batch_size_sum", 0) / count if count else float("nan")


def run(args: argparse.Namespace) -> dict:
    body = speech_like(args.clip_s)
    results: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "clip_s": args.clip_s,
        "command": " ".join(sys.argv),
    }
    for name, extra in (("batching", []), ("batch_size_1", ["--max-batch-size", "1"])):
        process, url, cold_s = start_service(args.model, extra)
        try:
            entry = {"cold_start_to_ready_s": cold_s}
            entry["c1"] = asyncio.run(fire(url, body, args.latency_requests, 1))
            entry[f"c{args.concurrency}"] = asyncio.run(
                fire(url, body, args.requests, args.concurrency)
            )
            entry["mean_batch_size"] = mean_batch(url)
            entry["rss_mb"] = rss_mb(process.pid)
            results[name] = entry
        finally:
            process.terminate()
            process.wait(timeout=30)
    c = f"c{args.concurrency}"
    results["batching_speedup"] = (
        results["batching"][c]["requests_per_s"] / results["batch_size_1"][c]["requests_per_s"]
    )
    return results


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="models/demo/bundle")
    p.add_argument("--clip-s", type=float, default=3.0)
    p.add_argument("--latency-requests", type=int, default=50)
    p.add_argument("--requests", type=int, default=320)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    results = run(args)
    c = f"c{args.concurrency}"
    print(f"machine: {results['machine']}; clip {args.clip_s} s")
    header = [
        "",
        "cold start s",
        "p50 ms c=1",
        "p99 ms c=1",
        f"req/s c={args.concurrency}",
        "audio-s/s",
        "mean batch",
        "RSS MB",
    ]
    print(" | ".join(f"{h:>12}" for h in header))
    for name in ("batching", "batch_size_1"):
        r = results[name]
        row = [
            r["cold_start_to_ready_s"],
            r["c1"]["p50_ms"],
            r["c1"]["p99_ms"],
            r[c]["requests_per_s"],
            r[c]["requests_per_s"] * args.clip_s,
            r["mean_batch_size"],
            r["rss_mb"],
        ]
        print(" | ".join([f"{name:>12}", *(f"{v:>12.2f}" for v in row)]))
    print(f"throughput with batching / batch size 1: {results['batching_speedup']:.2f}x")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
