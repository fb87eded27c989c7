"""An HTTP worker's end of the model process under faults (service/model_client.py): its
watchdog with the model process frozen (SIGSTOP) and resumed (SIGCONT), and admission
counted in the worker before a sample is copied or sent. Real processes, sockets, signals."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from bench.frontend import model_pid
from bench.service_load import process_tree
from tests.service.conftest import wav_bytes
from tests.service.test_processes import service, simulated, wait_for

pytestmark = pytest.mark.slow
V2_INFER = "/v2/models/emodistill/infer"


def peak_rss_mb(pid: int) -> float:
    """The process's resident-memory high-water mark (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def _ready(url: str) -> int:
    return httpx.get(url + "/v2/health/ready", timeout=5).status_code


async def _post_many(url: str, n: int, body: bytes) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=30) as client:
        return await asyncio.gather(
            *(client.post(url + "/predict", content=body) for _ in range(n))
        )


def test_a_frozen_model_process_fails_readiness_answers_503_504_and_ends_the_service(bundle):
    flags = ["--workers", "2", "--model-timeout-s", "1", "--model-stall-exit-s", "5"]
    flags += ["--shutdown-grace-s", "0.5", "--max-queue", "8"]
    with service(simulated(bundle, 1, *flags), "bench.frontend") as (process, url):
        model = model_pid(process.pid)
        assert model is not None
        clip = wav_bytes(1.0)
        assert httpx.post(url + "/predict", content=clip).status_code == 200
        os.kill(model, signal.SIGSTOP)
        start = time.monotonic()
        # Requests sent as it froze wait no longer than the deadline; later ones are refused.
        first = asyncio.run(_post_many(url, 40, clip))
        assert time.monotonic() - start < 5
        assert {r.status_code for r in first} <= {503, 504}, {r.status_code for r in first}
        wait_for(lambda: _ready(url) == 503, 5)
        refused = httpx.post(url + "/predict", content=clip, timeout=5)
        assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1
        assert "not answering" in refused.json()["detail"]
        # Resumed before model_stall_exit_s: served again as before.
        os.kill(model, signal.SIGCONT)
        # Each worker's watchdog sees the answers within a heartbeat (0.25 s here).
        wait_for(lambda: {r.status_code for r in asyncio.run(_post_many(url, 4, clip))} == {200}, 5)
        assert _ready(url) == 200
        # Frozen for good: the service ends non-zero, for the orchestrator to restart it.
        os.kill(model, signal.SIGSTOP)
        frozen_at = time.monotonic()
        assert process.wait(timeout=30) == 1
        assert time.monotonic() - frozen_at < 5 + 1 + 5  # stall exit + detection + grace


def _v2_binary(seconds: float) -> tuple[bytes, dict[str, str]]:
    samples = np.zeros(int(seconds * 16_000), "<f4")
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "audio",
                    "shape": [len(samples)],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": samples.nbytes},
                }
            ]
        }
    ).encode()
    return header + samples.tobytes(), {"Inference-Header-Content-Length": str(len(header))}


def test_requests_the_queue_cannot_hold_are_refused_before_their_windows_are_sent(bundle):
    # 599 s in 10 s windows every 5 s: 119 model calls, more than max_queue (16): 413.
    flags = ["--workers", "2", "--max-queue", "16", "--max-upload-mb", "64", "--max-audio-s", "600"]
    flags += ["--shutdown-grace-s", "0"]
    with service(simulated(bundle, 1, *flags), "bench.frontend") as (process, url):
        model = model_pid(process.pid)
        assert model is not None
        workers = [p for p in process_tree(process.pid)[1:] if p != model]
        before_mb = peak_rss_mb(model)
        body, headers = _v2_binary(599)

        async def six_at_once() -> list[int]:
            async with httpx.AsyncClient(timeout=60) as client:
                replies = await asyncio.gather(
                    *(client.post(url + V2_INFER, content=body, headers=headers) for _ in range(6))
                )
                return [r.status_code for r in replies]

        assert asyncio.run(six_at_once()) == [413] * 6
        grown_mb = peak_rss_mb(model) - before_mb
        worst_worker_mb = max(peak_rss_mb(p) for p in workers if p in process_tree(process.pid))
    print(f"model process peak grew {grown_mb:.0f} MB; worst worker peak {worst_worker_mb:.0f} MB")
    assert grown_mb < 20  # not a window of the 6 × 76 MB was sent to it
