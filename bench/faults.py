"""Faults of the processes themselves, against both layouts (one process, and a supervisor
with 2 HTTP workers and a model process), each on a fresh service:

    python bench/attack.py --faults models/demo/bundle [--out FILE.json]

- a stop signal while the model loads (a simulated 30 s load): exit status, seconds to exit,
  whether any HTTP worker started;
- a second SIGTERM during the grace period, a request in the model meanwhile: seconds to exit;
- the odd v2 inputs (`data` nested 1,000 deep, `Inference-Header-Content-Length: ²`): the
  statuses, and whether the same keep-alive connection serves the next request;
- six concurrent 599 s uploads the queue cannot hold: statuses, and the peak RSS (VmHWM) of
  the worst HTTP worker and of the model process;
- the model process frozen (SIGSTOP) under 320 requests: their statuses and seconds,
  readiness, the worst worker's peak RSS; resumed (SIGCONT): served again?; frozen for good:
  the exit status and when;
- the model process killed, the supervisor killed (kill -9): exit status; children left alive
  and the port still served after 3 s?

The model is bench/simulated_engine.py's (these faults do not depend on it). Traffic goes to
127.0.0.1 only; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.frontend import model_pid
from bench.service_load import process_tree

LAYOUTS = {"one process": ["--workers", "1"], "supervisor": ["--workers", "2"]}
V2_INFER = "/v2/models/{name}/infer"
RATE_HZ = 16_000


class Service:
    """`python -m bench.frontend serve` on a free port, its output in a file."""

    def __init__(self, bundle: Path, flags: list[str], fixed_ms: float = 1.0) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile("w+", suffix=".log")  # noqa: SIM115
        command = ["serve", "--model", str(bundle), "--fixed-ms", str(fixed_ms), *flags]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.frontend", *command, "--port", str(self.port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def ready(self) -> bool:
        try:
            return httpx.get(self.url + "/v2/health/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def logged(self, text: str) -> bool:
        return text in Path(self.log.name).read_text()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log.close()


@contextmanager
def running(bundle: Path, flags: list[str], fixed_ms: float = 1.0) -> Iterator[Service]:
    service = Service(bundle, flags, fixed_ms)
    try:
        until(service.ready, 120)
        yield service
    finally:
        service.close()


def until(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def wav_1s() -> bytes:
    import io

    import soundfile as sf

    buffer = io.BytesIO()
    t = np.arange(RATE_HZ) / RATE_HZ
    sf.write(
        buffer,
        (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32),
        RATE_HZ,
        "PCM_16",
        format="WAV",
    )
    return buffer.getvalue()


async def _post_all(url: str, requests: list[tuple[str, bytes, dict[str, str]]]) -> list[int]:
    async def one(
        client: httpx.AsyncClient, path: str, body: bytes, headers: dict[str, str]
    ) -> int:
        try:
            return (await client.post(url + path, content=body, headers=headers)).status_code
        except httpx.HTTPError:
            return -1

    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=400)) as client:
        return list(await asyncio.gather(*(one(client, *r) for r in requests)))


def model_name(bundle: Path) -> str:
    from emodistill.bundle import load_bundle

    return load_bundle(bundle).name


def counts(statuses: list[int]) -> dict[int, int]:
    return dict(sorted(Counter(statuses).items()))


# --- the faults ------------------------------------------------------------------------------


def signal_at_start_up(bundle: Path, flags: list[str]) -> dict[str, Any]:
    service = Service(bundle, [*flags, "--load-s", "30"])
    try:
        until(lambda: service.logged("loading the model"), 60)
        start = time.monotonic()
        service.process.send_signal(signal.SIGTERM)
        try:
            status: int | None = service.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            status = None
        return {
            "exit_status": status,
            "seconds_to_exit": round(time.monotonic() - start, 2),
            "workers_started": service.logged("HTTP workers on")
            or service.logged("Uvicorn running"),
        }
    finally:
        service.close()


def second_signal(bundle: Path, flags: list[str]) -> dict[str, Any]:
    with running(bundle, [*flags, "--shutdown-grace-s", "30", "--drain-s", "30"], 20_000) as s:
        body = wav_1s()

        async def run() -> float:
            answer = asyncio.ensure_future(_post_all(s.url, [("/predict", body, {})]))
            await asyncio.sleep(0.5)
            s.process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.5)
            start = time.monotonic()
            s.process.send_signal(signal.SIGTERM)
            await asyncio.to_thread(s.process.wait, 90)
            await answer
            return time.monotonic() - start

        took_s = asyncio.run(run())
        return {"exit_status": s.process.returncode, "seconds_to_exit": round(took_s, 2)}


def odd_v2_inputs(bundle: Path, flags: list[str]) -> dict[str, Any]:
    import http.client

    tensor = {"name": "audio", "shape": [1600], "datatype": "FP32"}
    deep = json.dumps({"inputs": [{**tensor, "data": "X"}]}).encode()
    deep = deep.replace(b'"X"', b"[" * 1000 + b"0.1" + b"]" * 1000)
    good = json.dumps({"inputs": [{**tensor, "data": [0.1] * 1600}]}).encode()
    with running(bundle, flags) as s:
        path = V2_INFER.format(name=model_name(bundle))
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
        statuses = []
        for body, extra in (
            (deep, {}),
            (good, {"Inference-Header-Content-Length": "\u00b2"}),
            (good, {}),
        ):
            try:
                conn.request("POST", path, body, {"Content-Type": "application/json", **extra})
                answer = conn.getresponse()
                answer.read()
                statuses.append(answer.status)
            except (OSError, http.client.HTTPException):
                statuses.append(-1)
        conn.close()
        return {
            "deep_nesting": statuses[0],
            "superscript_two": statuses[1],
            "next_on_connection": statuses[2],
        }


def refused_large_requests(bundle: Path, flags: list[str]) -> dict[str, Any]:
    samples = np.zeros(599 * RATE_HZ, "<f4")
    header = json.dumps(
        {"inputs": [{"name": "audio", "shape": [len(samples)], "datatype": "FP32",
                     "parameters": {"binary_data_size": samples.nbytes}}]}
    ).encode()  # fmt: skip
    body = header + samples.tobytes()
    limits = ["--max-queue", "16", "--max-upload-mb", "64", "--max-audio-s", "600"]
    with running(bundle, [*flags, *limits]) as s:
        headers = {"Inference-Header-Content-Length": str(len(header))}
        path = V2_INFER.format(name=model_name(bundle))
        statuses = asyncio.run(_post_all(s.url, [(path, body, headers)] * 6))
        model = model_pid(s.process.pid)
        tree = process_tree(s.process.pid)
        # One process holds everything; a supervisor holds no request.
        workers = [p for p in tree[1:] if p != model] if model else tree[:1]
        return {
            "statuses": counts(statuses),
            "worst_worker_peak_mb": round(max(peak_rss_mb(p) for p in workers)),
            "model_process_peak_mb": round(peak_rss_mb(model)) if model else None,
        }


def frozen_model(bundle: Path, flags: list[str]) -> dict[str, Any]:
    watchdog = ["--model-timeout-s", "2", "--model-stall-exit-s", "10", "--shutdown-grace-s", "1"]
    with running(bundle, [*flags, *watchdog]) as s:
        model = model_pid(s.process.pid)
        if model is None:
            return {"not_applicable": "no model process in this layout"}
        workers = [p for p in process_tree(s.process.pid)[1:] if p != model]
        os.kill(model, signal.SIGSTOP)
        start = time.monotonic()
        statuses = asyncio.run(_post_all(s.url, [("/predict", wav_1s(), {})] * 320))
        took_s = time.monotonic() - start
        not_ready = until(lambda: not s.ready(), 10)
        worst_mb = max(peak_rss_mb(p) for p in workers)
        os.kill(model, signal.SIGCONT)
        served_again = until(
            lambda: asyncio.run(_post_all(s.url, [("/predict", wav_1s(), {})] * 4)) == [200] * 4, 10
        )
        os.kill(model, signal.SIGSTOP)
        frozen_at = time.monotonic()
        try:
            status: int | None = s.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            status = None
        return {
            "statuses": counts(statuses),
            "seconds_for_320": round(took_s, 2),
            "readiness_failed": not_ready,
            "worst_worker_peak_mb": round(worst_mb),
            "served_again_after_sigcont": served_again,
            "exit_status_frozen_for_good": status,
            "seconds_to_exit": round(time.monotonic() - frozen_at, 2),
        }


def killed_model(bundle: Path, flags: list[str]) -> dict[str, Any]:
    with running(bundle, [*flags, "--shutdown-grace-s", "1"]) as s:
        model = model_pid(s.process.pid)
        if model is None:
            return {"not_applicable": "no model process in this layout"}
        os.kill(model, signal.SIGKILL)
        try:
            return {"exit_status": s.process.wait(timeout=60)}
        except subprocess.TimeoutExpired:
            return {"exit_status": None}


def killed_supervisor(bundle: Path, flags: list[str]) -> dict[str, Any]:
    with running(bundle, flags) as s:
        children = process_tree(s.process.pid)[1:]
        s.process.kill()
        s.process.wait()
        time.sleep(3)
        alive = [p for p in children if Path(f"/proc/{p}").exists()]
        return {"children_alive_after_3s": len(alive), "port_still_served": s.ready()}


FAULTS: dict[str, Callable[[Path, list[str]], dict[str, Any]]] = {
    "SIGTERM while the model loads": signal_at_start_up,
    "second SIGTERM in the grace period": second_signal,
    "odd v2 inputs on one connection": odd_v2_inputs,
    "6 x 599 s uploads the queue cannot hold": refused_large_requests,
    "model process frozen (SIGSTOP), 320 requests": frozen_model,
    "model process killed": killed_model,
    "supervisor killed (kill -9)": killed_supervisor,
}


def run_faults(bundle: Path) -> dict[str, dict[str, Any]]:
    """Every fault against both layouts; prints a line per fault and layout."""
    results: dict[str, dict[str, Any]] = {}
    for fault, run in FAULTS.items():
        results[fault] = {}
        for layout, flags in LAYOUTS.items():
            outcome = run(bundle, flags)
            results[fault][layout] = outcome
            print(f"{fault:46} {layout:12} {json.dumps(outcome)}", flush=True)
    return results
