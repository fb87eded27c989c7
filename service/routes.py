"""HTTP routes: /predict, KServe v2 (health, model metadata, infer), /metrics, the page.

Thin: each route checks the key, reads its bounded input, decodes or parses it in the worker
pool (never on the event loop), hands clips to `scoring.score_clips` and shapes the answer.
Errors are JSON with the status the failure deserves: `{"error": ...}` on the /v2 routes (the
Open Inference Protocol's object), `{"detail": ...}` elsewhere (service/app.py).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Callable
from functools import partial
from importlib import resources
from typing import Any, Literal, TypeVar

import numpy as np
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field
from starlette.requests import ClientDisconnect

from emodistill.audio_input import AudioInputError, AudioLimits, DecodedAudio, decode_upload
from emodistill.bundle import BundleMetadata, model_card
from emodistill.scoring import NonFiniteAnswerError, score_clips, window_plans
from emodistill.segments import ClipPlan, speech_plan

from . import __version__
from .app import ServiceState
from .batcher import BatcherClosedError, QueueFullError, RequestTooLargeError
from .model_client import ModelTimeoutError, ModelUnresponsiveError
from .settings import Settings
from .v2_request import BINARY_HEADER, OUTPUT, V2Limits, V2RequestError, parse_infer

log = logging.getLogger(__name__)
T = TypeVar("T")

router = APIRouter()
# What the OpenAPI page lists; any audio/* or video/* body is decoded (emodistill.decoder).
AUDIO_TYPES: tuple[str, ...] = ("audio/wav", "audio/flac", "audio/ogg", "audio/mpeg", "audio/mp4")
AUDIO_TYPES += ("audio/webm",)
AUDIO_TYPES += ("audio/aiff", "audio/amr", "video/mp4", "video/webm")
BINARY = {"schema": {"type": "string", "format": "binary"}}
PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": BINARY["schema"]},
                }
            },
            **{t: BINARY for t in AUDIO_TYPES},
        },
    }
}


class Segment(BaseModel):
    start_s: float
    end_s: float
    label: str
    probabilities: dict[str, float]


class Prediction(BaseModel):
    label: str
    probabilities: dict[str, float] = Field(
        description="Per label, in the bundle's order; for long audio the mean over segments "
        "weighted by their duration (silence, never scored, weighs nothing)."
    )
    duration_s: float
    speech_s: float | None = Field(
        None, description="How much of the audio was speech (long audio; null when not run)."
    )
    segmentation: Literal["whole", "speech", "windows"] = Field(
        description="whole: scored as one utterance; speech: cut at pauses; windows: fixed."
    )
    segments: list[Segment] | None = Field(
        None, description="For audio longer than max_segment_s: each segment's answer."
    )
    model: dict[str, Any] = Field(
        description="name, version, calibrated, trained_on (corpus, speakers, held-out UA/WA) "
        "and a note on what the model can and cannot do."
    )


def _state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


def _authorize(request: Request) -> None:
    key = _state(request).settings.api_key
    if key is None:
        return
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {key}".encode()):
        raise HTTPException(401, "missing or wrong API key", {"WWW-Authenticate": "Bearer"})


def _require_ready(request: Request) -> None:
    if not _state(request).ready:
        raise HTTPException(503, "model not ready", {"Retry-After": "1"})


async def _until_disconnect(request: Request, work: asyncio.Task) -> Any:
    """Await `work`, cancelling it if the client goes away (its clips then never run).

    The body has been read, so the next ASGI message can only be the disconnect: one task
    waits for it. (Polling `is_disconnected()` every 50 ms was 8 % of the event loop's time
    at 64 clients in a py-spy profile.)"""

    async def hung_up() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(hung_up())
    try:
        done, _ = await asyncio.wait({work, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        work.cancel()
        raise
    finally:
        watcher.cancel()
        if watcher.done() and not watcher.cancelled():
            watcher.exception()  # retrieved, so a failed receive is never logged as lost
    if work in done:
        return work.result()
    work.cancel()
    raise HTTPException(499, "client closed the request")


async def _score(
    request: Request, clips: list[np.ndarray], plans: list[ClipPlan]
) -> list[dict[str, Any]]:
    """Each clip's answer; all their spans are admitted to the queue together or not at all."""
    state = _state(request)
    meta = state.model.metadata
    temperature = meta.calibration.temperature if meta.calibration else 1.0
    work = asyncio.ensure_future(
        score_clips(clips, plans, state.queue, meta.labels, meta.sample_rate_hz, temperature)
    )
    try:
        answers = await _until_disconnect(request, work)
    except QueueFullError as err:
        raise HTTPException(
            503,
            "too many requests waiting; retry later",
            {"Retry-After": str(int(np.ceil(err.retry_after_s)))},
        ) from err
    except RequestTooLargeError as err:
        raise HTTPException(
            413,
            f"this request needs {err.clips} model calls (windows of window_s), more than the "
            f"whole queue holds ({err.max_queue}, max_queue): send shorter audio",
        ) from err
    except BatcherClosedError as err:
        raise HTTPException(503, "shutting down", {"Retry-After": "5"}) from err
    except ModelUnresponsiveError as err:
        retry = {"Retry-After": str(err.retry_after_s)}
        raise HTTPException(503, "the model is not answering; retry later", retry) from err
    except ModelTimeoutError as err:
        raise HTTPException(504, "the model stopped answering (model_timeout_s)") from err
    except NonFiniteAnswerError as err:
        state.meter.nonfinite.inc()
        log.error("the model answered NaN or infinity; the request got 500")
        raise HTTPException(500, "the model produced a non-finite answer for this input") from err
    except HTTPException:
        raise
    except Exception as err:  # the model failed on this batch; other requests go on
        raise HTTPException(500, "inference failed for this request") from err
    state.meter.audio.inc(sum(len(c) for c in clips) / meta.sample_rate_hz)
    return answers


async def _in_workers(request: Request, work: Callable[[], T]) -> T:
    """`work` in the worker pool: decoding and parsing never hold up the event loop."""
    pool = _state(request).pool
    return await asyncio.get_running_loop().run_in_executor(pool, work)


async def _body(request: Request) -> bytes:
    """The whole body (BodyLimit bounds it); a client that hangs up mid-upload is a 499."""
    try:
        return await request.body()
    except ClientDisconnect as err:
        raise _hung_up() from err


def _hung_up() -> HTTPException:
    log.debug("client closed the connection during its upload")
    return HTTPException(499, "client closed the request during its upload")


async def _upload(request: Request) -> tuple[bytes, str | None]:
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        return await _body(request), content_type or None
    try:
        form = await request.form(max_files=2, max_fields=8)
    except ClientDisconnect as err:
        raise _hung_up() from err
    uploads = form.getlist("file")
    if len(uploads) > 1:
        raise HTTPException(422, "multipart upload has more than one 'file' part; send one")
    if not uploads or isinstance(uploads[0], str):
        raise HTTPException(422, "multipart upload needs a file field named 'file'")
    # Read in memory (bounded by max_upload_mb); the client's file name is never used.
    return await uploads[0].read(), uploads[0].content_type


@router.post(
    "/predict",
    response_model=Prediction,
    openapi_extra=PREDICT_BODY,
    summary="Emotion probabilities of one clip (multipart 'file' or a raw audio body)",
)
async def predict(request: Request) -> Prediction:
    _authorize(request)
    _require_ready(request)
    state = _state(request)
    meta = state.model.metadata
    limits = AudioLimits(
        sample_rate_hz=meta.sample_rate_hz,
        max_duration_s=state.settings.max_audio_s,
        max_decoded_samples=state.settings.max_decoded_samples,
    )
    async with state.uploads:  # bodies in memory at once: at most max_uploads
        data, content_type = await _upload(request)
        try:
            work = partial(_decode_and_plan, data, limits, content_type, state.settings)
            decoded, plan = await _in_workers(request, work)
        except AudioInputError as err:
            raise HTTPException(err.status_code, err.detail) from err
        del data  # the decoded samples are all that is kept
    answer = (await _score(request, [decoded.samples], [plan]))[0]
    return Prediction(**answer, duration_s=decoded.duration_s, model=model_card(meta))


def _decode_and_plan(
    data: bytes, limits: AudioLimits, content_type: str | None, settings: Settings
) -> tuple[DecodedAudio, ClipPlan]:
    """In a worker thread: the upload's samples, and the spans to score (speech detection
    runs here, off the event loop)."""
    decoded = decode_upload(data, limits, content_type)
    options = settings.segment_options
    plan = speech_plan(decoded.samples, limits.sample_rate_hz, options)
    return decoded, plan


# --- KServe v2 / Open Inference Protocol -------------------------------------------------------


@router.get("/v2/health/live", summary="The process is up")
async def live() -> dict[str, bool]:
    return {"live": True}


@router.get("/v2/health/ready", summary="The model is loaded and warm")
async def ready(request: Request) -> JSONResponse:
    state = _state(request)
    is_ready = state.ready and not state.terminating and state.model_reachable
    return JSONResponse({"ready": is_ready}, status_code=200 if is_ready else 503)


@router.get("/v2", summary="Server metadata (Open Inference Protocol)")
async def server_metadata() -> dict[str, Any]:
    return {"name": "emodistill", "version": __version__, "extensions": ["binary_tensor_data"]}


@router.get("/v2/models/{name}/ready", summary="Whether the model is ready (needs the key)")
async def model_ready(request: Request, name: str) -> JSONResponse:
    _authorize(request)  # it names the model: not for a caller without the key
    _model_or_404(request, name)
    state = _state(request)
    is_ready = state.ready and not state.terminating and state.model_reachable
    return JSONResponse({"name": name, "ready": is_ready}, status_code=200 if is_ready else 503)


def _is_count(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts '²', which int() refuses."""
    return text.isascii() and text.isdigit()


def _model_or_404(request: Request, name: str) -> BundleMetadata:
    meta = _state(request).model.metadata
    if name != meta.name:
        raise HTTPException(404, f"no model named {name!r}; this service serves {meta.name!r}")
    return meta


@router.get("/v2/models/{name}", summary="Model metadata (KServe v2)")
async def model_metadata(request: Request, name: str) -> dict[str, Any]:
    _authorize(request)
    meta = _model_or_404(request, name)
    backend = _state(request).model
    return {
        "name": meta.name,
        "versions": [meta.version],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "audio", "datatype": "FP32", "shape": [-1, -1]}],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, len(meta.labels)]}],
        "parameters": {
            "labels": meta.labels,
            "sample_rate_hz": meta.sample_rate_hz,
            # Which onnxruntime provider and bundle file answer, so a client can tell a GPU
            # deployment from one that fell back to the CPU.
            "provider": backend.provider,
            "model_file": backend.model_file.name,
            # What it learned from and whether its probabilities are calibrated.
            **{k: v for k, v in model_card(meta).items() if k not in ("name", "version")},
            "calibration": meta.calibration.model_dump() if meta.calibration else None,
        },
    }


INFER_BODY = {
    "requestBody": {
        "required": True,
        "description": "A KServe v2 inference request: one FP32 input of shape [samples] or "
        "[clips, samples] at the model's rate, its samples in `data`, or after the JSON as "
        "binary float32 (header Inference-Header-Content-Length, the JSON's byte length; the "
        "input's parameters.binary_data_size, the samples' byte length).",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}


@router.post(
    "/v2/models/{name}/infer",
    openapi_extra=INFER_BODY,
    summary="Score float32 samples at the model's rate (JSON or binary tensor data)",
)
async def infer(request: Request, name: str) -> Response:
    # The key, readiness and model are checked before a byte of the body is read.
    _authorize(request)
    _require_ready(request)
    meta = _model_or_404(request, name)
    settings = _state(request).settings
    limits = V2Limits(
        rate_hz=meta.sample_rate_hz,
        max_audio_s=settings.max_audio_s,
        max_json_bytes=int(settings.max_json_mb * 1024 * 1024),
    )
    header_length = request.headers.get(BINARY_HEADER)
    declared = request.headers.get("content-length", "")
    if header_length is None and _is_count(declared) and int(declared) > limits.max_json_bytes:
        raise HTTPException(413, "JSON request larger than max_json_mb; send binary data")
    async with _state(request).uploads:  # bodies in memory at once: at most max_uploads
        body = await _body(request)
        try:
            parsed = await _in_workers(request, partial(parse_infer, body, header_length, limits))
        except V2RequestError as err:
            raise HTTPException(err.status_code, err.detail) from err
        del body
    s = _state(request).settings
    plans = window_plans(parsed.clips, meta.sample_rate_hz, s.window_s, s.hop_s)
    answers = await _score(request, parsed.clips, plans)
    probs = np.array([[a["probabilities"][k] for k in meta.labels] for a in answers], "<f4")
    output: dict[str, Any] = {"name": OUTPUT, "datatype": "FP32", "shape": list(probs.shape)}
    answer = {
        "model_name": meta.name,
        "model_version": meta.version,
        "id": parsed.id,
        "parameters": {"labels": meta.labels},
        "outputs": [output],
    }
    if not parsed.binary_output:
        output["data"] = probs.reshape(-1).tolist()
        return JSONResponse(answer)
    output["parameters"] = {"binary_data_size": probs.nbytes}
    header = json.dumps(answer).encode()
    return Response(
        header + probs.tobytes(),
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(len(header))},
    )


# --- operations and the page -------------------------------------------------------------------


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    m = _state(request).meter
    return Response(m.render(), media_type=m.content_type)


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page() -> HTMLResponse:
    return HTMLResponse((resources.files("service") / "static" / "index.html").read_text())
