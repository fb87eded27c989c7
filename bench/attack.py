"""Hostile clients against a live service, and whether it stays healthy.

    python bench/attack.py --url http://127.0.0.1:8000 [--key KEY] [--out FILE.json]
    python bench/attack.py --spawn models/demo/bundle [--out FILE.json]   # also SIGTERM
    python bench/attack.py --faults models/demo/bundle [--out FILE.json]  # processes' faults

Runs each attack in turn while a watcher polls /v2/health/live every 20 ms, and prints a
table: attack -> statuses -> seconds -> worst /v2/health/live latency -> healthy after.
Then the memory figures: the service's RSS (process_resident_memory_bytes from /metrics)
before and after 2,000 mixed requests, good and bad, and the number of slow clients (headers
trickling in) the service holds before a healthy request waits more than 1 s.

Attacks: bad inputs (not audio, truncated, NaN, ±3e38 samples, broken headers, a second file
part, v2 strings, shapes past 2^53, oversized JSON); decompression bombs (60 s of 8-channel
192 kHz FLAC silence, a WAV whose header claims gigabytes); a JSON tensor without the key;
slow clients (trickling headers and bodies); clients that hang up mid-upload; overload (64
concurrent long clips); and, with --spawn, SIGTERM while requests are in flight. Every loop is
bounded in count and time; traffic goes only to the URL given (use a loopback address).

--faults runs the faults of the processes themselves against both layouts, each on a fresh
service (bench/faults.py): signals at start-up and a second signal, the odd v2 inputs,
refused large requests across workers, a frozen, a killed model process, a killed supervisor.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import secrets
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import soundfile as sf

RATE_HZ = 16_000
V2_INFER = "/v2/models/{name}/infer"


def wav(samples: np.ndarray, rate_hz: int = RATE_HZ, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate_hz, format="WAV", subtype=subtype)
    return buffer.getvalue()


def speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE_HZ)) / RATE_HZ
    voiced = np.sin(2 * np.pi * (120 + 40 * np.sin(2 * np.pi * 0.5 * t)) * t)
    return (
        0.2 * voiced * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(len(t))
    ).astype(np.float32)


def header_only_wav(channels: int, rate_hz: int, data_bytes: int) -> bytes:
    fmt = struct.pack("<HHIIHH", 1, channels, rate_hz, rate_hz * 2 * max(channels, 1), 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", 4 + 8 + len(fmt) + 8 + data_bytes)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", data_bytes)
    )


class Watcher:
    """Polls /v2/health/live every 20 ms in a thread; the worst latency while it ran."""

    def __init__(self, url: str) -> None:
        self.url, self.worst_s, self.failures = url, 0.0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                start = time.perf_counter()
                try:
                    ok = client.get(self.url + "/v2/health/live").status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.worst_s = max(self.worst_s, time.perf_counter() - start)
                self.failures += not ok
                self._stop.wait(0.02)


class Attacks:
    def __init__(self, url: str, key: str | None, model: str) -> None:
        self.url, self.model = url, model
        self.auth = {"Authorization": f"Bearer {key}"} if key else {}
        self.host, self.port = urlsplit(url).hostname or "127.0.0.1", urlsplit(url).port or 80

    # --- helpers --------------------------------------------------------------------------
    def post(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> int:
        try:
            return httpx.post(
                self.url + path,
                content=body,
                headers={**self.auth, **(headers or {})},
                timeout=120,
            ).status_code
        except httpx.HTTPError as err:
            return -1 if not isinstance(err, httpx.RemoteProtocolError) else -2

    def predict(self, body: bytes, content_type: str = "audio/wav") -> int:
        return self.post("/predict", body, {"Content-Type": content_type})

    def v2(self, payload: object) -> int:
        return self.post(V2_INFER.format(name=self.model), json.dumps(payload).encode())

    def raw(self, data: bytes, then_close: bool = True) -> socket.socket:
        s = socket.create_connection((self.host, self.port), timeout=10)
        s.sendall(data)
        if then_close:
            s.close()
        return s

    def raw_status(self, data: bytes) -> int:
        """The status the server answers to raw bytes (-1: none within 10 s)."""
        with self.raw(data, then_close=False) as s:
            try:
                line = s.recv(64).split(b" ", 2)
                return int(line[1]) if len(line) > 1 else -1
            except (OSError, ValueError):
                return -1

    # --- the attacks: each returns the statuses it got ------------------------------------
    def bad_inputs(self) -> list[int]:
        loud = np.full(RATE_HZ, 3e38, np.float32)
        nan = np.full(RATE_HZ, np.nan, np.float32)
        good = wav(speechlike(1.0))
        tensor = {"name": "audio", "datatype": "FP32"}
        return [
            self.predict(b""),
            self.predict(b"this is not audio at all" * 100),
            self.predict(good[: len(good) // 2]),
            self.predict(wav(nan, subtype="FLOAT")),
            self.predict(wav(loud, subtype="FLOAT")),
            self.predict(header_only_wav(0, RATE_HZ, 3200) + b"\0" * 3200),
            self.predict(header_only_wav(1, 0, 3200) + b"\0" * 3200),
            self.predict(good, "text/plain"),
            self.v2({"inputs": [{**tensor, "shape": [1600], "data": ["0.1"] * 1600}]}),
            self.v2({"inputs": [{**tensor, "shape": [2**53, 2048], "data": []}]}),
            self.v2({"inputs": [{**tensor, "shape": [1, 1600], "data": [3e38] * 1600}]}),
            self.v2({"inputs": [{**tensor, "shape": [1], "data": "9" * 2_000_000}], "x": 1}),
            self.raw_status(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n"
            ),
        ]

    def bombs(self) -> list[int]:
        buffer = io.BytesIO()
        sf.write(buffer, np.zeros((60 * 192_000, 8), np.int16), 192_000, format="FLAC")
        flac = buffer.getvalue()  # ~60 KB on the wire, 92 M samples decoded
        claims_gigabytes = header_only_wav(2, 48_000, 0xFFFFFFF0 - 64) + b"\0" * 4096
        return [self.predict(flac, "audio/flac") for _ in range(3)] + [
            self.predict(claims_gigabytes)
        ]

    def unauthenticated_tensor(self) -> list[int]:
        body = json.dumps(
            {
                "inputs": [
                    {
                        "name": "a",
                        "shape": [1, 2_000_000],
                        "datatype": "FP32",
                        "data": [0.1] * 2_000_000,
                    }
                ]
            }
        ).encode()
        return [
            httpx.post(
                self.url + V2_INFER.format(name=self.model), content=body, timeout=60
            ).status_code
            for _ in range(3)
        ]

    def slow_clients(self, n: int = 50, seconds: float = 3.0) -> list[int]:
        held = [
            self.raw(b"POST /predict HTTP/1.1\r\nHost: x\r\n", then_close=False) for _ in range(n)
        ]
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for s in held:
                with contextlib.suppress(OSError):  # the server may have dropped it: good
                    s.sendall(b"X")
            time.sleep(0.5)
        statuses = [self.predict(wav(speechlike(1.0)))]
        for s in held:
            s.close()
        return statuses

    def hang_ups(self, n: int = 50) -> list[int]:
        body = wav(speechlike(2.0))
        head = (
            f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\n"
            f"Content-Length: {len(body)}\r\n"
        ).encode()
        auth = b"".join(f"{k}: {v}\r\n".encode() for k, v in self.auth.items())
        for _ in range(n):
            self.raw(head + auth + b"\r\n" + body[: len(body) // 3])
        return [self.predict(body)]

    def overload(self, clients: int = 64) -> list[int]:
        body = wav(speechlike(8.0))
        with ThreadPoolExecutor(clients) as pool:
            return list(pool.map(lambda _: self.predict(body), range(clients)))


def metric(url: str, name: str) -> float:
    for line in httpx.get(url + "/metrics", timeout=30).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return float("nan")


def mixed_requests(attacks: Attacks, n: int) -> Counter[int]:
    good = [wav(speechlike(s, seed=i)) for i, s in enumerate((0.5, 2.0, 6.0, 12.0))]
    bad = [
        b"",
        b"junk" * 50,
        good[1][:500],
        wav(np.full(RATE_HZ, 3e38, np.float32), subtype="FLOAT"),
    ]
    bodies = [good[i % 4] if i % 3 else bad[i % 4] for i in range(n)]
    with ThreadPoolExecutor(8) as pool:
        return Counter(pool.map(attacks.predict, bodies))


def slow_client_capacity(attacks: Attacks, step: int = 50, most: int = 2000) -> int:
    """Slow clients held open (headers trickling) before a healthy request waits > 1 s."""
    held: list[socket.socket] = []
    body = wav(speechlike(1.0))
    try:
        while len(held) < most:
            for _ in range(step):
                try:
                    held.append(
                        attacks.raw(b"GET /v2/health/live HTTP/1.1\r\nX: ", then_close=False)
                    )
                except OSError:
                    return len(held)
            start = time.perf_counter()
            ok = attacks.predict(body) == 200
            if not ok or time.perf_counter() - start > 1.0:
                return len(held)
        return len(held)
    finally:
        for s in held:
            s.close()


def run(url: str, key: str | None, server: subprocess.Popen | None) -> dict:
    model = httpx.get(url + "/v2", timeout=10).json().get("name", "emodistill")
    attacks = Attacks(url, key, model)
    plan: list[tuple[str, Callable[[], list[int]]]] = [
        ("bad inputs (13 kinds)", attacks.bad_inputs),
        ("decompression bombs", attacks.bombs),
        ("JSON tensor without the key", attacks.unauthenticated_tensor),
        ("50 slow clients, then a request", attacks.slow_clients),
        ("50 hang-ups mid-upload, then a request", attacks.hang_ups),
        ("overload: 64 × 8 s clips", attacks.overload),
    ]
    rows = []
    print(f"{'attack':42} {'statuses':34} {'s':>6} {'worst live ms':>14}  healthy after")
    for name, attack in plan:
        start = time.perf_counter()
        with Watcher(url) as watcher:
            statuses = attack()
        took_s = time.perf_counter() - start
        healthy = httpx.get(url + "/v2/health/ready", timeout=10).status_code == 200
        counts = dict(sorted(Counter(statuses).items()))
        rows.append(
            {
                "attack": name,
                "statuses": counts,
                "seconds": took_s,
                "worst_live_ms": 1000 * watcher.worst_s,
                "healthy_after": healthy,
            }
        )
        worst_ms = 1000 * watcher.worst_s
        print(f"{name:42} {json.dumps(counts):34} {took_s:6.1f} {worst_ms:14.1f}  {healthy}")
    rss_before = metric(url, "process_resident_memory_bytes")
    mixed = mixed_requests(attacks, 2000)
    rss_after = metric(url, "process_resident_memory_bytes")
    print(
        f"2,000 mixed requests {dict(sorted(mixed.items()))}: RSS {rss_before / 2**20:.0f} -> "
        f"{rss_after / 2**20:.0f} MB"
    )
    capacity = slow_client_capacity(attacks)
    print(f"slow clients held before a healthy request waits > 1 s: {capacity}")
    result = {
        "url": url,
        "rows": rows,
        "mixed_statuses": dict(mixed),
        "rss_before_mb": rss_before / 2**20,
        "rss_after_mb": rss_after / 2**20,
        "slow_client_capacity": capacity,
    }
    if server is not None:
        result["sigterm"] = sigterm(attacks, server)
    return result


def sigterm(attacks: Attacks, server: subprocess.Popen) -> dict:
    body = wav(speechlike(1.0))
    with ThreadPoolExecutor(30) as pool:
        futures = [pool.submit(attacks.predict, body) for _ in range(30)]
        server.send_signal(signal.SIGTERM)
        statuses = Counter(f.result() for f in futures)
    code = server.wait(timeout=120)
    print(f"SIGTERM with 30 requests in flight: {dict(statuses)}; exit status {code}")
    return {"statuses": dict(statuses), "exit_status": code}


def spawn(bundle: Path, key: str) -> tuple[str, subprocess.Popen]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "service", "--model", str(bundle), "--port", str(port)],
        env={**os.environ, "EMODISTILL_API_KEY": key},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/v2/health/ready", timeout=2).status_code == 200:
                return url, server
        except httpx.HTTPError:
            time.sleep(0.5)
    server.kill()
    sys.exit("error: the spawned service did not become ready")


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="a running service (use a loopback address)")
    target.add_argument("--spawn", type=Path, help="start python -m service on this bundle")
    target.add_argument(
        "--faults", type=Path, help="process faults, both layouts, on this bundle (faults.py)"
    )
    p.add_argument("--key", default=os.environ.get("EMODISTILL_API_KEY"))
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    if args.faults:
        from bench.faults import run_faults

        faults = run_faults(args.faults)
        if args.out:
            args.out.write_text(json.dumps(faults, indent=2) + "\n")
        return
    server = None
    url = args.url
    if args.spawn:
        args.key = args.key or secrets.token_hex(8)  # with a key, as in production
        url, server = spawn(args.spawn, args.key)
    try:
        result = run(url.rstrip("/"), args.key, server)
    finally:
        if server is not None and server.poll() is None:
            server.kill()
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
