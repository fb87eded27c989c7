"""The service over HTTP: answers, exactness under batching, errors, auth, v2, metrics, load."""

from __future__ import annotations

import gc
import io
import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar

import httpx
import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from emodistill.bundle import MODEL_FP32, load_bundle
from emodistill.runtime import OnnxBackend
from service.app import create_app
from service.settings import Settings
from tests.service.conftest import posted_then_hung_up, serving, wav_bytes

LABELS = ["neutral", "angry", "sad", "happy"]


def client_for(bundle: Path, **settings) -> TestClient:
    return TestClient(create_app(Settings(model=bundle, **settings)))


def post_wav(client: TestClient, data: bytes, **kw):
    return client.post("/predict", content=data, headers={"content-type": "audio/wav", **kw})


def metric(client: TestClient | httpx.Client, name: str, **labels) -> float:
    """A sample's value from /metrics (0 if absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f"{name}{{{wanted}}}" if labels else f"{name} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_predict_answers_with_the_bundles_labels(bundle):
    with client_for(bundle) as client:
        raw = post_wav(client, wav_bytes(1.5))
        multipart = client.post(
            "/predict", files={"file": ("../../etc/x.wav", wav_bytes(1.5), "audio/wav")}
        )
    assert raw.status_code == multipart.status_code == 200
    body = raw.json()
    assert list(body["probabilities"]) == LABELS and body["label"] in LABELS
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert body["duration_s"] == pytest.approx(1.5, abs=1e-3)
    assert body["model"] == {
        "name": "emodistill",
        "version": "1",
        "calibrated": False,
        "trained_on": None,
        "note": None,
    }
    assert body["segments"] is None and body["segmentation"] == "whole"
    assert multipart.json()["probabilities"] == pytest.approx(body["probabilities"], abs=1e-6)


def test_concurrent_mixed_lengths_equal_each_clip_alone(bundle):
    """Exactness through HTTP: batching must not change an answer (fp32, 1e-4)."""
    rng = np.random.default_rng(0)
    clips = [
        wav_bytes(s, freq_hz=f)
        for s, f in zip(rng.uniform(0.3, 6.0, 24), rng.uniform(100, 400, 24), strict=True)
    ]
    with client_for(bundle, max_wait_ms=30, max_batch_size=8) as client:
        alone = [post_wav(client, c).json()["probabilities"] for c in clips]
        with ThreadPoolExecutor(24) as pool:
            together = list(pool.map(lambda c: post_wav(client, c).json()["probabilities"], clips))
        batched = metric(client, "emodistill_batch_size_sum") - metric(
            client, "emodistill_batch_size_count"
        )
    for a, b in zip(alone, together, strict=True):
        assert max(abs(a[k] - b[k]) for k in LABELS) <= 1e-4
    assert batched > 0  # some calls really held more than one clip


def test_streams_answer_exactly_as_one_call_on_every_core(bundle, monkeypatch):
    """The tiny model is laid out as two single-threaded calls at once (service/model.py);
    /metrics says so, and every answer is the one-stream service's. Within 1e-5, not bit for
    bit: concurrent requests share batches differently, and padding moves the last digits
    (tests/service/test_model.py shows one batch bit for bit on either layout)."""
    import service.model

    monkeypatch.setattr(service.model, "available_cores", lambda: 2)
    rng = np.random.default_rng(1)
    clips = [
        wav_bytes(s, freq_hz=f)
        for s, f in zip(rng.uniform(0.5, 4.0, 12), rng.uniform(100, 400, 12), strict=True)
    ]
    answers = {}
    for streams in (0, 1):
        with client_for(bundle, engine_streams=streams) as client:
            with ThreadPoolExecutor(12) as pool:
                answers[streams] = list(pool.map(lambda c: post_wav(client, c).json(), clips))
            laid_out = (
                metric(client, "emodistill_engine_streams"),
                metric(client, "emodistill_batch_audio_budget_seconds"),
            )
        assert laid_out == ((2.0, 24.0) if streams == 0 else (1.0, 96.0))
    for streams, one in zip(answers[0], answers[1], strict=True):
        assert (
            max(abs(streams["probabilities"][k] - one["probabilities"][k]) for k in LABELS) < 1e-5
        )
        assert streams["label"] == one["label"]


def _wav_float(x: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, x, 16_000, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"hello, this is text", "text/plain", 415),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "application/octet-stream", 415),
        (wav_bytes(1.0)[:60], "audio/wav", 400),
        (b"", "audio/wav", 422),
        (wav_bytes(0.05), "audio/wav", 422),
        (_wav_float(np.array([0.1, np.nan] * 4000, dtype=np.float32)), "audio/wav", 422),
        (wav_bytes(3.0), "audio/wav", 413),  # max_audio_s = 2 below
    ],
)
def test_bad_input_gets_a_clear_error_and_the_service_goes_on(bundle, body, content_type, status):
    with client_for(bundle, max_audio_s=2.0) as client:
        response = client.post("/predict", content=body, headers={"content-type": content_type})
        assert response.status_code == status, response.text
        assert response.json()["detail"]
        assert post_wav(client, wav_bytes(1.0)).status_code == 200


def test_silence_is_a_normal_answer(bundle):
    with client_for(bundle) as client:
        response = post_wav(client, _wav_float(np.zeros(16_000, dtype=np.float32)))
    assert response.status_code == 200 and response.json()["label"] in LABELS


def test_missing_file_field_and_oversized_uploads(bundle):
    with client_for(bundle, max_upload_mb=0.05) as client:
        missing = client.post("/predict", files={"other": ("a.wav", wav_bytes(0.5), "audio/wav")})
        declared = post_wav(client, wav_bytes(3.0))  # 96 kB with a Content-Length
        streamed = client.post(
            "/predict",
            content=iter([wav_bytes(3.0)[i : i + 4096] for i in range(0, 96_044, 4096)]),
            headers={"content-type": "audio/wav"},
        )  # chunked, no length
        assert post_wav(client, wav_bytes(0.5)).status_code == 200
    assert missing.status_code == 422 and "file" in missing.json()["detail"]
    assert declared.status_code == 413 and streamed.status_code == 413


def test_long_audio_is_scored_window_by_window(bundle):
    options = dict(segmentation="windows", window_s=2.0, hop_s=1.0, max_segment_s=2.0)
    with client_for(bundle, **options) as client:
        body = post_wav(client, wav_bytes(5.5)).json()
    segments = body["segments"]
    assert [(s["start_s"], s["end_s"]) for s in segments] == [
        (0, 2),
        (1, 3),
        (2, 4),
        (3, 5),
        (3.5, 5.5),
    ]
    weights = np.array([s["end_s"] - s["start_s"] for s in segments])
    for label in LABELS:
        mean = (
            sum(w * s["probabilities"][label] for w, s in zip(weights, segments, strict=True))
            / weights.sum()
        )
        assert body["probabilities"][label] == pytest.approx(mean, abs=1e-6)


def test_kserve_v2_routes(bundle):
    x = sf.read(io.BytesIO(wav_bytes(1.0)), dtype="float32")[0]
    with client_for(bundle) as client:
        assert client.get("/v2/health/live").json() == {"live": True}
        assert client.get("/v2/health/ready").json() == {"ready": True}
        meta = client.get("/v2/models/emodistill").json()
        assert meta["parameters"]["labels"] == LABELS and meta["versions"] == ["1"]
        assert client.get("/v2/models/other").status_code == 404
        request = {
            "inputs": [
                {
                    "name": "audio",
                    "shape": [2, len(x)],
                    "datatype": "FP32",
                    "data": np.concatenate([x, x]).tolist(),
                }
            ]
        }
        out = client.post("/v2/models/emodistill/infer", json=request).json()["outputs"][0]
        assert out["shape"] == [2, 4]
        via_predict = post_wav(client, wav_bytes(1.0)).json()["probabilities"]
        assert out["data"][:4] == pytest.approx([via_predict[k] for k in LABELS], abs=1e-4)
        bad = {"inputs": [{"name": "audio", "shape": [3], "datatype": "INT8", "data": [1, 2, 3]}]}
        assert client.post("/v2/models/emodistill/infer", json=bad).status_code == 422


def test_api_key_guards_model_work_and_metadata_only(bundle):
    """docs/service.md's rule: the key guards what runs or reveals the model; probes, the page
    (which asks for the key) and the API's description stay open."""
    with client_for(bundle, api_key="s3cret") as client:
        assert post_wav(client, wav_bytes(0.5)).status_code == 401
        assert post_wav(client, wav_bytes(0.5), authorization="Bearer wrong").status_code == 401
        assert post_wav(client, wav_bytes(0.5), authorization="Bearer s3cret").status_code == 200
        assert client.get("/v2/models/emodistill").status_code == 401
        assert client.post("/v2/models/emodistill/infer", json={}).status_code == 401
        open_routes = ("/v2/health/live", "/v2/health/ready", "/metrics", "/", "/docs")
        for open_route in (*open_routes, "/redoc", "/openapi.json"):
            assert client.get(open_route).status_code == 200


def test_guards_and_the_service_lookup_never_use_the_thread_pool(bundle, monkeypatch):
    """The key, readiness and the Service lookup run on the event loop (async dependencies):
    a `def` dependency would cost /predict a thread hand-off each (issue 26's profile). The
    guards still answer: 401 before the model, 503 while not ready, 200 with the key."""
    import fastapi.dependencies.utils as dependency_utils

    pooled: list[str] = []
    original = dependency_utils.run_in_threadpool

    async def noting(call, *args, **kw):
        pooled.append(getattr(call, "__name__", repr(call)))
        return await original(call, *args, **kw)

    monkeypatch.setattr(dependency_utils, "run_in_threadpool", noting)
    key = {"authorization": "Bearer s3cret"}
    with client_for(bundle, api_key="s3cret") as client:
        clip = wav_bytes(0.5)
        assert post_wav(client, clip).status_code == 401
        multipart = client.post(
            "/predict", files={"file": ("a.wav", clip, "audio/wav")}, headers=key
        )
        assert multipart.status_code == 200
        assert post_wav(client, clip, **key).json() == multipart.json()
        client.app.state.lifecycle.ready = False
        not_ready = post_wav(client, clip, **key)
        assert (not_ready.status_code, not_ready.headers["retry-after"]) == (503, "1")
        client.app.state.lifecycle.ready = True
        assert client.get("/v2/models/emodistill", headers=key).status_code == 200
    assert pooled == []


class SlowBackend(OnnxBackend):
    """The real model, slow, failing on a marker sample."""

    def infer(self, clips):
        time.sleep(0.2)
        if any(abs(float(c[0]) - 0.123) < 1e-6 for c in clips):
            raise RuntimeError("model exploded")
        return super().infer(clips)


def test_full_queue_answers_503_with_retry_after_and_failures_stay_local(bundle):
    app = create_app(
        Settings(model=bundle, max_queue=1, max_batch_size=1, max_wait_ms=0, warmup=False),
        backend_factory=SlowBackend,
    )
    with TestClient(app) as client, ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: post_wav(client, wav_bytes(0.5)), range(6)))
        codes = sorted(r.status_code for r in answers)
        assert 503 in codes and 200 in codes
        assert all(r.headers.get("retry-after") for r in answers if r.status_code == 503)
        boom = np.full(8000, 0.123, dtype=np.float32)
        assert post_wav(client, _wav_float(boom)).status_code == 500
        assert post_wav(client, wav_bytes(0.5)).status_code == 200  # the service went on
        assert metric(client, "emodistill_inference_failures_total") == 1
        # Every answer is counted under its route and status, unmatched paths too.
        assert client.get("/nowhere").status_code == 404
        for code in (200, 500, 503):
            sent = sum(r.status_code == code for r in answers) + (code != 503)
            assert (
                metric(client, "emodistill_requests_total", route="/predict", status=str(code))
                == sent
            )
        assert metric(client, "emodistill_requests_total", route="unmatched", status="404") == 1


def test_bounded_load_every_request_answered_and_counted(bundle):
    n = 300
    with client_for(bundle, max_wait_ms=10, max_batch_size=16) as client:
        with ThreadPoolExecutor(32) as pool:
            codes = list(
                pool.map(
                    lambda i: post_wav(client, wav_bytes(0.3 + (i % 7) * 0.2)).status_code, range(n)
                )
            )
        counted = metric(client, "emodistill_requests_total", route="/predict", status="200")
        clips = metric(client, "emodistill_batch_size_sum")
    assert codes == [200] * n
    assert counted == n and clips == n  # none lost, none doubled


def test_corrupt_bundle_stops_start_up_with_one_message(bundle, tmp_path):
    broken = tmp_path / "bundle"
    subprocess.run(["cp", "-r", str(bundle), str(broken)], check=True)
    with (broken / MODEL_FP32).open("ab") as f:
        f.write(b"junk")
    done = subprocess.run(
        [sys.executable, "-m", "service", "--model", str(broken), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert f"{MODEL_FP32}: sha256" in done.stderr and "Traceback" not in done.stderr


def test_openapi_and_page(bundle):
    with client_for(bundle) as client:
        schema = client.get("/openapi.json").json()
        assert "/predict" in schema["paths"] and "/v2/models/{name}/infer" in schema["paths"]
        assert client.get("/docs").status_code == 200
        page = client.get("/")
    assert page.status_code == 200 and "Record" in page.text and "predict" in page.text
    assert load_bundle(bundle).labels == LABELS
    assert json.loads((bundle / "bundle.json").read_text())["name"] == "emodistill"


class GatedBackend(OnnxBackend):
    """A real model behind a gate: every call waits until the test opens it. Records the
    batch sizes it was called with."""

    made: ClassVar[list[GatedBackend]] = []

    def __init__(self, bundle, *args):
        super().__init__(bundle, *args)
        self.entered, self.gate = threading.Event(), threading.Event()
        self.calls: list[int] = []
        GatedBackend.made.append(self)

    def infer(self, clips):
        self.calls.append(len(clips))
        self.entered.set()
        assert self.gate.wait(timeout=30), "the test never opened the gate"
        return super().infer(clips)


def wait_for(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_a_client_that_hangs_up_over_real_http_never_reaches_the_model(bundle):
    """Through uvicorn and a real socket: a request whose client closes the connection while
    its clip waits is dropped from the queue (never run) and counted as 499; the request
    ahead of it is still answered."""
    app = create_app(
        Settings(model=bundle, max_batch_size=1, warmup=False, engine_streams=1),
        backend_factory=GatedBackend,
    )
    with serving(app) as url, httpx.Client(base_url=url) as http, ThreadPoolExecutor(1) as pool:
        backend = GatedBackend.made[-1]
        first = pool.submit(httpx.post, url + "/predict", content=wav_bytes(0.5), timeout=60)
        assert backend.entered.wait(timeout=30)  # the model is busy with the first clip

        def depth() -> float:
            return float(metric(http, "emodistill_queue_depth"))

        with posted_then_hung_up(url, wav_bytes(0.7)):
            wait_for(lambda: depth() == 1)  # the second clip waits behind the first
        wait_for(lambda: depth() == 0)  # hung up: dropped from the queue
        backend.gate.set()
        assert first.result(timeout=60).status_code == 200
        assert backend.calls == [1]  # the dropped clip never reached the model
        wait_for(
            lambda: metric(http, "emodistill_requests_total", route="/predict", status="499") == 1
        )


def test_start_up_objects_are_frozen_while_serving_and_thawed_after(bundle: Path) -> None:
    # A full collection then never walks what start-up made (service/heap.py).
    assert gc.get_freeze_count() == 0
    with client_for(bundle, warmup=False) as client:
        assert client.get("/v2/health/ready").status_code == 200
        frozen = gc.get_freeze_count()
        assert frozen > 10_000  # the modules, the app, the session: not a token few
    assert gc.get_freeze_count() == 0


@pytest.mark.parametrize(("warm_up_s", "threads"), [(4.0, 1), (0.01, 2)])
def test_the_decoding_threads_follow_the_model_as_laid_out(
    bundle: Path, monkeypatch: pytest.MonkeyPatch, warm_up_s: float, threads: int
) -> None:
    """A model whose warm-up says its calls hold both cores gets one decoding thread (and
    batches in arrival order); a light one, two (service/model.py's resolve_autos)."""
    import service.model

    monkeypatch.setattr(service.model, "available_cores", lambda: 2)

    def slow_or_fast(bundle: Path, device: str, int8: bool) -> OnnxBackend:
        backend = OnnxBackend(bundle, "cpu")
        monkeypatch.setattr(backend, "warm_up", lambda batch_size, seconds: warm_up_s)
        return backend

    app = create_app(Settings(model=bundle, device="cpu"), backend_factory=slow_or_fast)
    with TestClient(app) as client:
        assert client.get("/v2/health/ready").status_code == 200
        assert app.state.service.pool._max_workers == threads
        reply = client.post(
            "/predict", content=wav_bytes(1.0), headers={"content-type": "audio/wav"}
        )
        assert reply.status_code == 200
