"""HTTP routes: /predict, KServe v2 (health, model metadata, infer), /metrics, the page.

Thin adapters over the one pipeline (emodistill.pipeline): each route checks the key, reads
its bounded input, prepares it in the worker pool (decoding, speech detection and parsing never
run on the event loop), hands the spans to the queue (`pipeline.run_async`) and shapes the
answer. Errors are raised, never answered here: service/errors.py maps each to its status.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Callable
from functools import partial
from importlib import resources
from typing import Any, TypeVar

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.requests import ClientDisconnect

from emodistill.bundle import BundleMetadata
from emodistill.pipeline import Prepared
from emodistill.prediction import Prediction

from . import __version__
from .errors import answer_for
from .state import Service, ServiceDep
from .v2_request import BINARY_HEADER, DIMENSIONS_OUTPUT, OUTPUT, V2Limits, parse_infer
from .wire import ModelFailedError

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


# The dependencies are `async def` although they never await: FastAPI runs a plain `def`
# dependency in its thread pool, three thread hand-offs per request for a few attribute reads
# (an AnyIO worker thread woken for each; py-spy, issue 26).


async def authorize(service: ServiceDep, request: Request) -> None:
    """401 unless the request carries the key (when one is set)."""
    key = service.settings.api_key
    if key is None:
        return
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {key}".encode()):
        raise HTTPException(401, "missing or wrong API key", {"WWW-Authenticate": "Bearer"})


async def require_ready(service: ServiceDep) -> None:
    if not service.lifecycle.ready:
        raise HTTPException(503, "model not ready", {"Retry-After": "1"})


# The key, then readiness, checked before a byte of the body is read.
GUARDED = [Depends(authorize), Depends(require_ready)]


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


async def _answers(
    request: Request, service: Service, prepared: list[Prepared]
) -> list[Prediction]:
    """Each input's answer; all their spans are admitted to the queue together or not at all."""
    work = asyncio.ensure_future(service.pipeline.run_async(prepared, service.queue))
    try:
        answers: list[Prediction] = await _until_disconnect(request, work)
    except Exception as err:
        if answer_for(err) is None and not isinstance(err, HTTPException):
            # The model failed on this batch (service/errors.py answers 500); others go on.
            raise ModelFailedError(f"{type(err).__name__}: {err}") from err
        raise
    audio_s = sum(len(p.samples) for p in prepared) / service.pipeline.rate_hz
    service.metrics.audio.inc(audio_s)
    return answers


async def _in_workers(service: Service, work: Callable[[], T]) -> T:
    """`work` in the worker pool: decoding and parsing never hold up the event loop."""
    return await asyncio.get_running_loop().run_in_executor(service.pool, work)


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
    dependencies=GUARDED,
    summary="Emotion probabilities of one clip (multipart 'file' or a raw audio body)",
)
async def predict(request: Request, service: ServiceDep) -> Prediction:
    async with service.uploads:  # bodies in memory at once: at most max_uploads
        data, content_type = await _upload(request)
        # Decoding and speech detection in a worker thread, off the event loop.
        prepared = await _in_workers(service, partial(service.pipeline.prepare, data, content_type))
        del data  # the decoded samples are all that is kept
    return (await _answers(request, service, [prepared]))[0]


# --- KServe v2 / Open Inference Protocol -------------------------------------------------------


@router.get("/v2/health/live", summary="The process is up")
async def live() -> dict[str, bool]:
    return {"live": True}


@router.get("/v2/health/ready", summary="The model is loaded and warm")
async def ready(service: ServiceDep) -> JSONResponse:
    return JSONResponse({"ready": service.ready}, status_code=200 if service.ready else 503)


@router.get("/v2", summary="Server metadata (Open Inference Protocol)")
async def server_metadata() -> dict[str, Any]:
    return {"name": "emodistill", "version": __version__, "extensions": ["binary_tensor_data"]}


@router.get(
    "/v2/models/{name}/ready",
    summary="Whether the model is ready (needs the key: it names the model)",
    dependencies=[Depends(authorize)],
)
async def model_ready(service: ServiceDep, name: str) -> JSONResponse:
    _model_or_404(service, name)
    is_ready = service.ready
    return JSONResponse({"name": name, "ready": is_ready}, status_code=200 if is_ready else 503)


def _is_count(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts '²', which int() refuses."""
    return text.isascii() and text.isdigit()


def _model_or_404(service: Service, name: str) -> BundleMetadata:
    meta = service.model.metadata
    if name != meta.name:
        raise HTTPException(404, f"no model named {name!r}; this service serves {meta.name!r}")
    return meta


@router.get(
    "/v2/models/{name}", summary="Model metadata (KServe v2)", dependencies=[Depends(authorize)]
)
async def model_metadata(service: ServiceDep, name: str) -> dict[str, Any]:
    meta = _model_or_404(service, name)
    backend = service.model
    outputs = []
    if meta.labels:  # every bundle but a dimensions-only one
        outputs.append({"name": OUTPUT, "datatype": "FP32", "shape": [-1, len(meta.labels)]})
    if meta.dimensions is not None:  # names, scale and CCC: in the card's `dimensions`
        dims = meta.dimension_names
        outputs.append({"name": DIMENSIONS_OUTPUT, "datatype": "FP32", "shape": [-1, len(dims)]})
    return {
        "name": meta.name,
        "versions": [meta.version],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "audio", "datatype": "FP32", "shape": [-1, -1]}],
        "outputs": outputs,
        "parameters": {
            "labels": meta.labels,
            "sample_rate_hz": meta.sample_rate_hz,
            # Which onnxruntime provider and bundle file answer, so a client can tell a GPU
            # deployment from one that fell back to the CPU.
            "provider": backend.provider,
            "model_file": backend.model_file.name,
            # What it learned from and whether its probabilities are calibrated.
            **service.pipeline.card.model_dump(exclude={"name", "version"}),
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
    dependencies=GUARDED,
    summary="Score float32 samples at the model's rate (JSON or binary tensor data)",
)
async def infer(request: Request, name: str, service: ServiceDep) -> Response:
    meta = _model_or_404(service, name)  # before a byte of the body is read
    settings = service.settings
    limits = V2Limits(
        rate_hz=meta.sample_rate_hz,
        max_audio_s=settings.max_audio_s,
        max_json_bytes=int(settings.max_json_mb * 1024 * 1024),
    )
    header_length = request.headers.get(BINARY_HEADER)
    declared = request.headers.get("content-length", "")
    if header_length is None and _is_count(declared) and int(declared) > limits.max_json_bytes:
        raise HTTPException(413, "JSON request larger than max_json_mb; send binary data")
    async with service.uploads:  # bodies in memory at once: at most max_uploads
        body = await _body(request)
        parsed = await _in_workers(service, partial(parse_infer, body, header_length, limits))
        del body
    prepared = [service.pipeline.windowed(clip) for clip in parsed.clips]
    answers = await _answers(request, service, prepared)
    tensors: dict[str, np.ndarray] = {}
    if meta.labels:  # every bundle but a dimensions-only one
        rows = [[a.probabilities[k] for k in meta.labels] for a in answers if a.probabilities]
        tensors[OUTPUT] = np.array(rows, "<f4")
    parameters: dict[str, Any] = {"labels": meta.labels}
    if meta.dimensions is not None:  # the second output, in the bundle's dimension order
        names = meta.dimension_names
        dims = [[getattr(a.dimensions, k) for k in names] for a in answers if a.dimensions]
        tensors[DIMENSIONS_OUTPUT] = np.array(dims, "<f4").reshape(len(answers), len(names))
        parameters["dimensions"] = names
    outputs: list[dict[str, Any]] = [
        {"name": k, "datatype": "FP32", "shape": list(v.shape)} for k, v in tensors.items()
    ]
    answer = {
        "model_name": meta.name,
        "model_version": meta.version,
        "id": parsed.id,
        "parameters": parameters,
        "outputs": outputs,
    }
    if not parsed.binary_output:
        for output, values in zip(outputs, tensors.values(), strict=True):
            output["data"] = values.reshape(-1).tolist()
        return JSONResponse(answer)
    for output, values in zip(outputs, tensors.values(), strict=True):
        output["parameters"] = {"binary_data_size": values.nbytes}
    header = json.dumps(answer).encode()
    return Response(
        header + b"".join(v.tobytes() for v in tensors.values()),
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(len(header))},
    )


# --- operations and the page -------------------------------------------------------------------


@router.get("/metrics", include_in_schema=False)
async def metrics(service: ServiceDep) -> Response:
    m = service.metrics
    return Response(m.render(), media_type=m.content_type)


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page() -> HTMLResponse:
    return HTMLResponse((resources.files("service") / "static" / "index.html").read_text())
