"""Load on `python -m service` over loopback: cold start, latency, throughput, memory.

    python bench/service_load.py --model models/demo/bundle [--concurrency 1,4,16,64]
                                 [--requests 200] [--out FILE.json]

Starts the service as a subprocess (so start-up is measured cold), then, bounded in requests
per level: throughput and p50/p95/p99 latency at each concurrency, with batching on and with
max batch size 1 (the same run, so ratios compare like with like); the mean batch size of
each level comes from /metrics. Prints a table and writes JSON. Traffic stays on 127.0.0.1.
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
        "p95_ms": 1000 * float(np.percentile(latencies, 95)),
        "p99_ms": 1000 * float(np.percentile(latencies, 99)),
    }


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


def run(model: str, clip_s: float, concurrencies: list[int], requests: int) -> dict:
    """Both modes (batching; max batch size 1), each concurrency level in one service start."""
    body = speech_like(clip_s)
    results: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "clip_s": clip_s,
        "requests_per_level": requests,
        "modes": {},
    }
    for mode, extra in (("batching", []), ("batch_size_1", ["--max-batch-size", "1"])):
        process, url, cold_s = start_service(model, extra)
        try:
            entry: dict = {"cold_start_to_ready_s": cold_s, "levels": {}}
            for c in concurrencies:
                before = batch_totals(url)
                level = asyncio.run(fire(url, body, max(requests, 2 * c), c))
                after = batch_totals(url)
                calls = after[1] - before[1]
                level["mean_batch_size"] = (after[0] - before[0]) / calls if calls else float("nan")
                level["audio_s_per_s"] = level["requests_per_s"] * clip_s
                entry["levels"][str(c)] = level
            entry["rss_mb"] = rss_mb(process.pid)
            results["modes"][mode] = entry
        finally:
            process.terminate()
            process.wait(timeout=30)
    return results


def print_table(results: dict) -> None:
    print(f"machine: {results['machine']}; clip {results['clip_s']} s")
    header = ["mode", "conc.", "req/s", "audio-s/s", "p50 ms", "p95 ms", "p99 ms", "mean batch"]
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
            ]
            print(" | ".join([f"{mode:>12}", f"{c:>12}", *(f"{v:>12.2f}" for v in cells)]))
        print(
            f"{mode}: cold start to ready {entry['cold_start_to_ready_s']:.2f} s, "
            f"RSS {entry['rss_mb']:.0f} MB"
        )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="models/demo/bundle")
    p.add_argument("--clip-s", type=float, default=3.0)
    p.add_argument("--concurrency", default="1,4,16,64", help="levels, comma-separated")
    p.add_argument("--requests", type=int, default=200, help="per level (at least 2 × concurrency)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    results = run(args.model, args.clip_s, levels, args.requests)
    results["command"] = " ".join(sys.argv)
    print_table(results)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
