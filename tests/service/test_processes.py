"""The multi-process service (service/processes.py) as users run it: `python -m service
--workers 2` in its own process group, over real sockets.

Properties: answers equal the runtime's whether batched or alone, whichever worker answers;
one scrape of /metrics counts every worker's requests and the model process's batches; at
overload every request is answered (200 or 503 with Retry-After), none lost; a client who
hangs up has its clip dropped in the model process; SIGTERM fails readiness, finishes what is
in flight and exits 0; a dead model process ends the service non-zero; a bad bundle ends
start-up with one line. The slow engines are bench/simulated_engine.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest

from bench.frontend import model_pid
from bench.service_load import process_tree
from service import wire
from service.processes import auto_workers, available_cores
from service.server import EXIT_STATUS
from service.settings import Settings
from tests.service.conftest import posted_then_hung_up, wav_bytes

pytestmark = pytest.mark.slow
PROBABILITY_TOLERANCE = 1e-5  # float32 logits, softmax in float64: batched vs alone


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def service(args: list[str], module: str = "service") -> Iterator[tuple[subprocess.Popen, str]]:
    """`python -m MODULE ARGS --port P` until ready: (process, URL); stopped at the end."""
    port = _free_port()
    # A file, not a pipe: a full pipe would stall the service.
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed below, after the process)
    process = subprocess.Popen(
        [sys.executable, "-m", module, *args, "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise AssertionError(f"the service exited: {log.read()[-2000:]}")
            try:
                if httpx.get(url + "/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the service was not ready within 120 s"
            time.sleep(0.1)
        yield process, url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def simulated(model: Path, fixed_ms: float, *flags: str) -> list[str]:
    """bench.frontend serve's arguments: the simulated engine, `fixed_ms` per batch."""
    return ["serve", "--model", str(model), "--fixed-ms", str(fixed_ms), *flags]


def metric(url: str, name: str) -> float:
    total = 0.0
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def _post_all(url: str, bodies: list[bytes]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60) as client:
        return await asyncio.gather(
            *(client.post(url + "/predict", files={"file": ("a.wav", b)}) for b in bodies)
        )


def test_answers_equal_the_runtime_batched_or_alone_and_metrics_add_up(bundle):
    import emodistill

    clips = [wav_bytes(s, freq_hz=f) for s, f in [(0.7, 180), (1.9, 260), (3.1, 330), (5.2, 95)]]
    reference = emodistill.load(bundle, "cpu")
    expected = [reference.predict(c).probabilities for c in clips]
    with service(["--model", str(bundle), "--workers", "2", "--device", "cpu"]) as (_, url):
        together = asyncio.run(_post_all(url, clips * 4))  # 16 at once: batched
        alone = [asyncio.run(_post_all(url, [c]))[0] for c in clips]
        for replies in (together, alone):
            for i, reply in enumerate(replies):
                assert reply.status_code == 200, reply.text
                got = reply.json()["probabilities"]
                want = expected[i % len(clips)]
                assert max(abs(got[k] - want[k]) for k in want) <= PROBABILITY_TOLERANCE
        # Whichever worker answered, one scrape counts all 20; the batches are the model
        # process's, and their clips add up to the requests.
        assert metric(url, 'emodistill_requests_total{route="/predict",status="200"}') == 20
        assert metric(url, "emodistill_batch_size_sum") == 20
        assert metric(url, "emodistill_batch_size_count") < 20  # some were batched
        text = httpx.get(url + "/metrics").text
        assert text.count("\nemodistill_model_info{") == 1
        assert metric(url, "process_resident_memory_bytes") > 0


def test_the_model_process_carries_the_dimensions_too(bundle_with_dimensions):
    """Two HTTP workers and the model process: the [B, C + 3] rows cross the socket whole,
    and the answers are the runtime's, probabilities and dimensions alike."""
    import emodistill

    clips = [wav_bytes(s, freq_hz=f) for s, f in [(0.9, 180), (2.6, 330)]]
    reference = emodistill.load(bundle_with_dimensions, "cpu")
    expected = [reference.predict(c) for c in clips]
    flags = ["--model", str(bundle_with_dimensions), "--workers", "2", "--device", "cpu"]
    with service(flags) as (_, url):
        replies = asyncio.run(_post_all(url, clips * 2))
    for i, reply in enumerate(replies):
        assert reply.status_code == 200, reply.text
        got, want = reply.json()["dimensions"], expected[i % 2].dimensions
        assert want is not None
        assert max(abs(got[k] - getattr(want, k)) for k in got) <= PROBABILITY_TOLERANCE


def test_overload_answers_every_request_with_200_or_503(bundle):
    # One clip per batch, 150 ms each, at most 2 waiting: 12 at once cannot all fit.
    flags = ["--workers", "2", "--max-batch-size", "1", "--max-queue", "2"]
    with service(simulated(bundle, 150, *flags), "bench.frontend") as (_, url):
        replies = asyncio.run(_post_all(url, [wav_bytes(1.0)] * 12))
        codes = sorted(r.status_code for r in replies)
        assert set(codes) == {200, 503}, codes
        assert all(int(r.headers["retry-after"]) >= 1 for r in replies if r.status_code == 503)
        # Nothing lost: each 200 is a clip the model ran, each 503 one it never saw.
        assert metric(url, "emodistill_batch_size_sum") == codes.count(200)


def wait_for(condition: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_a_client_that_hangs_up_has_its_clip_dropped_in_the_model_process(bundle):
    flags = ["--workers", "2", "--max-batch-size", "1"]
    with (
        service(simulated(bundle, 1500, *flags), "bench.frontend") as (_, url),
        ThreadPoolExecutor(1) as pool,
    ):
        warm = asyncio.run(_post_all(url, [wav_bytes(1.0)] * 4))  # both workers' first uploads
        assert {r.status_code for r in warm} == {200}
        first = pool.submit(httpx.post, url + "/predict", content=wav_bytes(1.0), timeout=60)
        time.sleep(0.5)  # the first clip is in the engine now, for 1.5 s
        with posted_then_hung_up(url, wav_bytes(0.7)):
            wait_for(lambda: metric(url, "emodistill_queue_depth") == 1)  # waits behind it
        wait_for(lambda: metric(url, "emodistill_queue_depth") == 0)  # hung up: dropped
        assert first.result(timeout=60).status_code == 200
        time.sleep(2.0)  # long enough for the second clip's batch, had it run
        assert metric(url, "emodistill_batch_size_sum") == 4 + 1
        assert metric(url, 'emodistill_requests_total{route="/predict",status="499"}') == 1


def test_sigterm_fails_readiness_finishes_in_flight_requests_and_exits_0(bundle):
    flags = ["--workers", "2", "--shutdown-grace-s", "1", "--drain-s", "10"]
    with service(simulated(bundle, 1500, *flags), "bench.frontend") as (process, url):

        async def request_then_terminate() -> tuple[int, int]:
            async with httpx.AsyncClient(timeout=30) as client:
                answer = asyncio.ensure_future(
                    client.post(url + "/predict", files={"file": ("a.wav", wav_bytes(1.0))})
                )
                await asyncio.sleep(0.3)
                process.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.3)
                ready = await client.get(url + "/v2/health/ready")
                return (await answer).status_code, ready.status_code

        assert asyncio.run(request_then_terminate()) == (200, 503)
        assert process.wait(timeout=30) == 0


def test_a_dead_model_process_ends_the_service_non_zero(bundle):
    flags = ["--workers", "2", "--shutdown-grace-s", "1"]
    with service(simulated(bundle, 1, *flags), "bench.frontend") as (process, url):
        assert httpx.post(url + "/predict", content=wav_bytes(1.0)).status_code == 200
        model = model_pid(process.pid)
        assert model is not None
        os.kill(model, signal.SIGKILL)
        # The workers get SIGTERM: grace period, then drain; the supervisor then exits 1.
        assert process.wait(timeout=90) == 1


def test_a_bad_bundle_ends_start_up_with_one_line(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "service", "--model", str(tmp_path), "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0
    assert run.stderr.strip().splitlines()[-1].startswith("error: cannot serve")


def test_frames_split_anywhere_parse_the_same():
    clips = [np.arange(n, dtype=np.float32) / 7 for n in (3, 0, 5)]
    lengths, payload = wire.pack_clips(clips)
    stream = wire.frame({"op": "submit", "id": 1, "lengths": lengths}, payload)
    stream += wire.frame({"op": "cancel", "id": 2})
    for cut in range(len(stream) + 1):
        frames = wire.FrameBuffer()
        got = frames.feed(stream[:cut]) + frames.feed(stream[cut:])
        assert [h["id"] for h, _ in got] == [1, 2]
        back = wire.unpack_clips(got[0][0]["lengths"], got[0][1])
        assert all(np.array_equal(a, b) for a, b in zip(back, clips, strict=True))
    frames, got = wire.FrameBuffer(), []
    for i in range(0, len(stream), 7):  # a frame over many reads
        got += frames.feed(stream[i : i + 7])
    assert [h["id"] for h, _ in got] == [1, 2] and got[0][1] == payload
    with pytest.raises(ValueError, match="too large"):
        wire.FrameBuffer().feed(wire.PREFIX.pack(wire.MAX_HEADER_BYTES + 1, 0))


def test_workers_suit_the_host(tmp_path):
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("200000 100000\n")  # a 2-CPU container limit
    assert available_cores(cpu_max) == min(2, available_cores(tmp_path / "absent"))
    cpu_max.write_text("max 100000\n")
    assert available_cores(cpu_max) == available_cores(tmp_path / "absent")
    assert auto_workers(Settings(device="cpu"), cores=16) == 1  # the model's threads: the limit
    assert auto_workers(Settings(workers=3)) == 3


# --- stop signals, from the first instant, the same in both layouts --------------------------

LAYOUTS = {"one process": ["--workers", "1"], "supervisor": ["--workers", "2"]}


@contextmanager
def starting(
    args: list[str], env: dict[str, str] | None = None, port: int | None = None
) -> Iterator[Starting]:
    """`python -m bench.frontend serve ARGS` (the simulated engine) without waiting for it."""
    port = port or _free_port()
    log = tempfile.NamedTemporaryFile("w+", suffix=".log")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.frontend", *args, "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    try:
        yield Starting(process, f"http://127.0.0.1:{port}", Path(log.name))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()


class Starting:
    def __init__(self, process: subprocess.Popen, url: str, log: Path) -> None:
        self.process, self.url, self.log = process, url, log

    def wait_for_log(self, text: str, timeout_s: float = 60) -> None:
        wait_for(lambda: text in self.log.read_text(), timeout_s)

    def ready(self) -> bool:
        try:
            return httpx.get(self.url + "/v2/health/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False


@pytest.mark.parametrize(
    "layout, sig",
    [
        ("one process", signal.SIGTERM),
        ("supervisor", signal.SIGTERM),
        ("one process", signal.SIGINT),
        ("supervisor", signal.SIGINT),
        ("supervisor", signal.SIGHUP),
    ],
)
def test_a_signal_while_the_model_loads_stops_start_up(bundle, tmp_path, layout, sig):
    args = simulated(bundle, 1, "--load-s", "60", *LAYOUTS[layout])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"emodistill-{dead.pid}-x"  # left by a supervisor killed outright
    stale.mkdir()
    with starting(args, {"TMPDIR": str(tmp_path)}) as service_:
        service_.wait_for_log("loading the model")
        children = process_tree(service_.process.pid)[1:]
        service_.process.send_signal(sig)
        status = service_.process.wait(timeout=15)  # not the 60 s load
        log = service_.log.read_text()
    assert status == EXIT_STATUS[sig], log[-2000:]  # SIGTERM 0, SIGINT 130, SIGHUP 129
    assert "HTTP workers on" not in log and "Uvicorn running" not in log
    # The model process loading went with it, and so did the run directory (and a
    # supervisor removed the stale one as it started).
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in children), 5)
    if layout == "supervisor":
        assert not list(tmp_path.glob("emodistill-*"))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_second_signal_stops_at_once_without_draining(bundle, layout):
    flags = ["--shutdown-grace-s", "30", "--drain-s", "30", *LAYOUTS[layout]]
    with service(simulated(bundle, 20_000, *flags), "bench.frontend") as (process, url):

        async def in_flight_then_two_signals() -> float:
            async with httpx.AsyncClient(timeout=60) as client:
                answer = asyncio.ensure_future(client.post(url + "/predict", content=wav_bytes(1)))
                await asyncio.sleep(0.5)  # in the model for 20 s
                process.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.5)
                start = time.monotonic()
                process.send_signal(signal.SIGTERM)
                await asyncio.to_thread(process.wait, 15)
                took_s = time.monotonic() - start
                with contextlib.suppress(httpx.HTTPError):  # reset, or answered without the model
                    assert (await answer).status_code != 200  # the drain was skipped
                return took_s

        took_s = asyncio.run(in_flight_then_two_signals())
        assert process.returncode == 0
    assert took_s < 10  # neither the 30 s grace, the 20 s request nor the 30 s drain
