"""Hostile clients: each test reproduces one attack against the service.

The upload, header and disconnect tests speak raw HTTP over real sockets to a real uvicorn.
"""

from __future__ import annotations

import http.client
import io
import json
import logging
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from emodistill import pipeline
from emodistill.runtime import OnnxBackend
from service.app import create_app
from service.settings import Settings
from tests.service.conftest import serving, wav_bytes
from tests.service.test_app import client_for, metric, post_wav, wait_for

ROOT = Path(__file__).resolve().parents[2]

KEY = "s3cret"
V2_INFER = "/v2/models/emodistill/infer"


def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def _raw(url: str, head: str, body: bytes = b"", read_timeout_s: float = 5.0) -> bytes:
    """Send `head` (and `body`), then whatever the server answers within the timeout."""
    with socket.create_connection(_address(url)) as s:
        s.sendall(head.encode() + body)
        s.settimeout(read_timeout_s)
        try:
            return s.recv(65536)
        except TimeoutError:
            return b""


def _v2_json(clips: np.ndarray) -> dict:
    return {
        "id": "r1",
        "inputs": [
            {
                "name": "audio",
                "shape": list(clips.shape),
                "datatype": "FP32",
                "data": clips.reshape(-1).tolist(),
            }
        ],
    }


def _tone(seconds: float, rate_hz: int = 16_000) -> np.ndarray:
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


# --- 1. decoding is off the event loop and bounded by the samples it would decode ------------


def test_decoding_never_holds_up_other_requests(bundle, monkeypatch):
    real = pipeline.decode_upload

    def slow_decode(*args, **kw):
        time.sleep(1.5)  # a decode that takes long, as a bomb or a long file does
        return real(*args, **kw)

    monkeypatch.setattr(pipeline, "decode_upload", slow_decode)
    with (
        serving(create_app(Settings(model=bundle, warmup=False))) as url,
        ThreadPoolExecutor(1) as pool,
    ):
        upload = pool.submit(httpx.post, url + "/predict", content=wav_bytes(0.5), timeout=60)
        time.sleep(0.3)  # the upload is decoding now
        worst_s = 0.0
        while not upload.done():
            start = time.perf_counter()
            assert httpx.get(url + "/v2/health/live", timeout=10).status_code == 200
            worst_s = max(worst_s, time.perf_counter() - start)
            time.sleep(0.05)
        assert upload.result().status_code == 200
    assert worst_s < 0.5  # the decode runs in the worker pool, not on the event loop


def test_many_channels_at_a_high_rate_are_refused_from_the_header(bundle):
    # 3 s × 8 channels × 48 kHz of silence: 10 KB of FLAC, 1.15 M samples to decode.
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros((3 * 48_000, 8), np.float32), 48_000, format="FLAC")
    with client_for(bundle, max_decoded_samples=1_000_000) as client:
        response = client.post("/predict", content=buffer.getvalue())
    assert response.status_code == 413
    assert "8 channels" in response.json()["detail"]
    assert "max_decoded_samples" in response.json()["detail"]


# --- 2. the v2 route checks the key before the body; bounded JSON; binary tensors --------------


def test_v2_without_the_key_is_refused_before_its_body_is_read(bundle):
    with serving(create_app(Settings(model=bundle, api_key=KEY, warmup=False))) as url:
        head = (
            f"POST {V2_INFER} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 20000000\r\n\r\n"
        )
        answer = _raw(url, head)  # no byte of the 20 MB body is ever sent
    assert answer.startswith(b"HTTP/1.1 401")


def test_v2_json_past_its_cap_is_413_before_parsing(bundle):
    with serving(create_app(Settings(model=bundle, max_json_mb=1, warmup=False))) as url:
        head = (
            f"POST {V2_INFER} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 5000000\r\n\r\n"
        )
        answer = _raw(url, head)
    assert answer.startswith(b"HTTP/1.1 413")


def test_v2_errors_never_echo_the_input(bundle):
    filler = "9" * 1_000_000
    bad = {"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": filler}], "x": 1}
    with client_for(bundle) as client:
        response = client.post(V2_INFER, content=json.dumps(bad))
    assert response.status_code == 422
    assert len(response.content) < 2000 and "999999" not in response.text


def test_v2_binary_tensor_data_answers_as_json_does(bundle):
    clips = np.stack([_tone(1.0), 0.5 * _tone(1.0)])
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "audio",
                    "shape": list(clips.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": clips.nbytes},
                }
            ]
        }
    ).encode()
    with client_for(bundle) as client:
        as_json = client.post(V2_INFER, json=_v2_json(clips))
        as_binary = client.post(
            V2_INFER,
            content=header + clips.astype("<f4").tobytes(),
            headers={"Inference-Header-Content-Length": str(len(header))},
        )
    assert as_json.status_code == as_binary.status_code == 200
    a = np.array(as_json.json()["outputs"][0]["data"])
    b = np.array(as_binary.json()["outputs"][0]["data"])
    assert np.max(np.abs(a - b)) == 0.0  # the same float32 samples either way


# --- 4. a client that hangs up mid-upload is a 499, with no traceback -------------------------


def test_hanging_up_mid_upload_is_a_499_and_no_traceback(bundle, caplog):
    app = create_app(Settings(model=bundle, warmup=False))
    with caplog.at_level(logging.INFO), serving(app) as url, httpx.Client(base_url=url) as http:
        for _ in range(3):
            head = (
                "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\n"
                "Content-Length: 100000\r\n\r\n"
            )
            with socket.create_connection(_address(url)) as s:
                s.sendall(head.encode() + wav_bytes(0.5)[:1000])
        wait_for(
            lambda: metric(http, "emodistill_requests_total", route="/predict", status="499") == 3
        )
        assert metric(http, "emodistill_requests_total", route="/predict", status="500") == 0
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


# --- 5. every answer is a number ---------------------------------------------------------------


def test_extreme_but_finite_samples_are_refused_with_the_reason(bundle):
    loud = np.full(16_000, 3e38, np.float32)
    loud[::2] = -3e38
    buffer = io.BytesIO()
    sf.write(buffer, loud, 16_000, format="WAV", subtype="FLOAT")
    with client_for(bundle) as client:
        wav = post_wav(client, buffer.getvalue())
        v2 = client.post(V2_INFER, json=_v2_json(loud[None, :]))
    assert wav.status_code == 422 and "full scale" in wav.json()["detail"]
    assert v2.status_code == 422 and "full scale" in v2.json()["error"]


class NaNBackend(OnnxBackend):
    def infer(self, clips):
        return np.full((len(clips), len(self.labels)), np.nan, np.float32)


def test_a_non_finite_model_answer_is_a_500_and_counted(bundle):
    app = create_app(Settings(model=bundle, warmup=False), backend_factory=NaNBackend)
    with TestClient(app) as client:
        response = post_wav(client, wav_bytes(0.5))
        assert response.status_code == 500 and "non-finite" in response.json()["detail"]
        assert metric(client, "emodistill_nonfinite_answers_total") == 1


# --- 6. a request is admitted whole or refused whole -------------------------------------------


class CountingBackend(OnnxBackend):
    clips_run = 0

    def infer(self, clips):
        CountingBackend.clips_run += len(clips)
        return super().infer(clips)


def test_a_request_larger_than_the_queue_is_413_and_costs_no_compute(bundle):
    CountingBackend.clips_run = 0
    app = create_app(
        Settings(model=bundle, max_queue=4, warmup=False), backend_factory=CountingBackend
    )
    with TestClient(app) as client:
        response = post_wav(client, wav_bytes(62.0))  # 12 windows of 10 s, hop 5 s
    assert response.status_code == 413 and "max_queue" in response.json()["detail"]
    assert CountingBackend.clips_run == 0


# --- 10. smaller ones ---------------------------------------------------------------------------


def test_v2_shapes_that_overflow_and_numbers_as_strings_are_refused(bundle):
    huge = {"inputs": [{"name": "a", "shape": [2**53, 2048], "datatype": "FP32", "data": []}]}
    strings = {
        "inputs": [{"name": "a", "shape": [1600], "datatype": "FP32", "data": ["0.1"] * 1600}]
    }
    with client_for(bundle) as client:
        assert client.post(V2_INFER, json=huge).status_code in (413, 422)
        assert client.post(V2_INFER, json=strings).status_code == 422


def test_a_second_file_part_is_refused(bundle):
    files = [("file", ("a.wav", wav_bytes(0.5))), ("file", ("b.wav", wav_bytes(0.6)))]
    with client_for(bundle) as client:
        response = client.post("/predict", files=files)
    assert response.status_code == 422 and "more than one" in response.json()["detail"]


@pytest.mark.parametrize("channels, rate_hz", [(0, 16_000), (1, 0)])
def test_broken_headers_do_not_show_heap_addresses(bundle, channels, rate_hz):
    fmt = struct.pack("<HHIIHH", 1, channels, rate_hz, rate_hz * 2 * max(channels, 1), 2, 16)
    data = b"\0\0" * 1600
    wav = (
        b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data)) + b"WAVE"
        + b"fmt " + struct.pack("<I", len(fmt)) + fmt
        + b"data" + struct.pack("<I", len(data)) + data
    )  # fmt: skip
    with client_for(bundle) as client:
        response = post_wav(client, wav)
    assert 400 <= response.status_code < 500
    assert " at 0x" not in response.text


def test_413_by_content_length_is_counted_under_its_route(bundle):
    with serving(create_app(Settings(model=bundle, max_upload_mb=1, warmup=False))) as url:
        head = (
            "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\n"
            "Content-Length: 5000000\r\n\r\n"
        )
        assert _raw(url, head).startswith(b"HTTP/1.1 413")
        with httpx.Client(base_url=url) as http:
            assert metric(http, "emodistill_requests_total", route="/predict", status="413") == 1


# --- 3. timeouts, header limits, connection limit (real sockets) -------------------------------


def _served(bundle, **settings):
    return serving(create_app(Settings(model=bundle, warmup=False, **settings)))


def _answer_and_close_s(sock: socket.socket, timeout_s: float = 10.0) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    start, answer = time.monotonic(), b""
    sock.settimeout(timeout_s)
    while chunk := sock.recv(65536):
        answer += chunk
    return answer, time.monotonic() - start


def test_an_idle_connection_and_trickling_headers_are_dropped_with_408(bundle):
    with _served(bundle, header_timeout_s=0.5) as url:
        with socket.create_connection(_address(url)) as idle:
            answer, took_s = _answer_and_close_s(idle)
        assert answer.startswith(b"HTTP/1.1 408") and took_s < 3
        with socket.create_connection(_address(url)) as slow:
            slow.sendall(b"POST /predict HTTP/1.1\r\n")
            start = time.monotonic()
            try:
                for _ in range(30):  # one header byte every 0.1 s: never a full block
                    slow.sendall(b"X")
                    time.sleep(0.1)
            except OSError:
                pass  # closed on us
            answer, _ = _answer_and_close_s(slow)
        assert answer.startswith(b"HTTP/1.1 408") and time.monotonic() - start < 3


def test_an_oversized_header_block_is_431(bundle):
    with _served(bundle, max_header_kb=4) as url, socket.create_connection(_address(url)) as s:
        s.sendall(b"GET /v2/health/live HTTP/1.1\r\nX-Big: " + b"a" * 8192)
        answer, _ = _answer_and_close_s(s)
    assert answer.startswith(b"HTTP/1.1 431")


def test_a_body_that_trickles_in_is_dropped_with_408(bundle):
    with _served(bundle, body_timeout_s=1.0) as url, socket.create_connection(_address(url)) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        start = time.monotonic()
        try:
            for _ in range(40):
                s.sendall(b"R")
                time.sleep(0.1)
        except OSError:
            pass
        answer, _ = _answer_and_close_s(s)
        assert answer.startswith(b"HTTP/1.1 408") and time.monotonic() - start < 4


def test_past_the_connection_limit_requests_get_503(bundle):
    with _served(bundle, max_connections=3) as url:
        held = [socket.create_connection(_address(url)) for _ in range(3)]
        try:
            time.sleep(0.2)
            response = httpx.get(url + "/v2/health/live", timeout=10)
        finally:
            for s in held:
                s.close()
        assert response.status_code == 503
        assert response.json() == {"error": "too many open connections; retry later"}
        assert int(response.headers["retry-after"]) >= 1
        wait_for(lambda: httpx.get(url + "/v2/health/live", timeout=10).status_code == 200)


# --- 8. SIGTERM: not ready at once, still serving through the grace period, then drained --------


def test_sigterm_keeps_serving_through_the_grace_period_then_exits_cleanly(bundle):
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "service", "--model", str(bundle), "--port", str(port),
         "--shutdown-grace-s", "2", "--warmup", "false"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: _ready(url), timeout_s=60)
        with ThreadPoolExecutor(30) as pool:
            # 30 requests on their way as the signal comes: none may be reset.
            futures = [
                pool.submit(httpx.post, url + "/predict", content=wav_bytes(0.5), timeout=60)
                for _ in range(30)
            ]
            server.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            assert httpx.get(url + "/v2/health/ready", timeout=5).status_code == 503
            late = httpx.post(url + "/predict", content=wav_bytes(0.5), timeout=30)
            assert late.status_code == 200  # still accepted during the grace period
            assert [f.result().status_code for f in futures] == [200] * 30
        # Then it drains and ends with status 0, as the multi-process layout does (not by the
        # signal, which uvicorn would raise again), with no traceback.
        assert server.wait(timeout=30) == 0
        assert "Traceback" not in server.stderr.read()
    finally:
        server.kill()
        server.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/v2/health/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_bodies_in_memory_are_bounded_by_max_uploads(bundle, monkeypatch):
    real, entered, gate = pipeline.decode_upload, [], threading.Event()

    def gated_decode(*args, **kw):
        entered.append(1)
        gate.wait(30)
        return real(*args, **kw)

    monkeypatch.setattr(pipeline, "decode_upload", gated_decode)
    app = create_app(Settings(model=bundle, warmup=False, max_uploads=1, decode_workers=2))
    with serving(app) as url, ThreadPoolExecutor(2) as pool:
        first = pool.submit(httpx.post, url + "/predict", content=wav_bytes(0.5), timeout=60)
        wait_for(lambda: len(entered) == 1)
        second = pool.submit(httpx.post, url + "/predict", content=wav_bytes(0.6), timeout=60)
        time.sleep(0.5)
        assert len(entered) == 1  # the second body waits unread, though a worker is free
        gate.set()
        assert first.result().status_code == second.result().status_code == 200
    assert len(entered) == 2


# --- two cheap requests that crashed a handler; the model's readiness names it only with the key


def _exchange(conn: http.client.HTTPConnection, path: str, body: bytes, headers: dict) -> tuple:
    conn.request("POST", path, body=body, headers=headers)
    answer = conn.getresponse()
    return answer.status, answer.getheader("content-type"), answer.read()


def test_deep_nesting_and_non_ascii_digits_are_4xx_json_and_the_connection_lives_on(bundle):
    tensor = {"name": "audio", "shape": [1600], "datatype": "FP32"}
    deep = json.dumps({"inputs": [{**tensor, "data": "X"}]}).encode()
    deep = deep.replace(b'"X"', b"[" * 1000 + b"0.1" + b"]" * 1000)  # 2 KB, 1,000 deep
    good = json.dumps({"inputs": [{**tensor, "data": [0.1] * 1600}]}).encode()
    json_type = {"Content-Type": "application/json"}
    with _served(bundle) as url:
        host, port = _address(url)
        conn = http.client.HTTPConnection(host, port, timeout=30)
        try:
            sent = [
                (deep, json_type),
                # '²' (latin-1 0xB2 on the wire), which str.isdigit() accepts and int() refuses
                (good, {**json_type, "Inference-Header-Content-Length": "\u00b2"}),
                (good, {"Content-Type": "application/json", "Content-Length": str(len(good))}),
            ]
            answers = [_exchange(conn, V2_INFER, body, headers) for body, headers in sent]
        finally:
            conn.close()
    (deep_status, deep_type, deep_body), (digit_status, digit_type, digit_body) = answers[:2]
    assert deep_status == 400 and deep_type == "application/json"
    assert "nested deeper" in json.loads(deep_body)["error"]
    assert digit_status == 400 and digit_type == "application/json"
    assert "byte count" in json.loads(digit_body)["error"]
    assert answers[2][0] == 200  # the same keep-alive connection still serves


def test_model_readiness_needs_the_key_and_names_nothing_without_it(bundle):
    with client_for(bundle, api_key=KEY) as client:
        for name in ("emodistill", "not-the-model"):
            response = client.get(f"/v2/models/{name}/ready")
            assert response.status_code == 401
            assert "emodistill" not in response.text
        with_key = client.get(
            "/v2/models/emodistill/ready", headers={"Authorization": f"Bearer {KEY}"}
        )
        assert with_key.status_code == 200 and with_key.json()["ready"] is True
