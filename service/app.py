"""The FastAPI application: start-up, middleware and wiring. Routes live in routes.py.

Start-up (lifespan) loads and checks the bundle, starts the batcher, warms the model up and
builds the `Service` the routes use (service/state.py), whole; /v2/health/ready answers 200
only after that. Shutdown drains requests in flight. Errors: service/errors.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.datastructures import State
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emodistill.pipeline import Pipeline
from emodistill.runtime import OnnxBackend

from . import __version__, errors, routes, stream
from .batcher import Batcher
from .errors import error_body
from .heap import freeze_start_up, thaw
from .metrics import ServiceMetrics, model_labels
from .model import BackendFactory, ServedModel, batcher_config, decode_workers, warm_up
from .model_client import ModelClient, client_limits
from .settings import Settings
from .state import Lifecycle, Service

log = logging.getLogger("emodistill.service")


class BodyLimit:
    """413 as soon as a body passes `max_bytes`, by Content-Length or while it streams in,
    so an oversized upload is never read into memory. Raised as an HTTPException from the
    body stream, which FastAPI passes through its own body parsing unchanged."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            response = JSONResponse(error_body(scope["path"], TOO_LARGE), status_code=413)
            return await response(scope, receive, send)
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, TOO_LARGE)
            return message

        await self.app(scope, limited, send)


TOO_LARGE = "upload larger than the limit (max_upload_mb)"


class RequestMetrics:
    """Requests by route and status, and latency, for /metrics. Plain ASGI: the decorator
    form (BaseHTTPMiddleware) spawned a task and re-streamed every response, about a tenth
    of the event loop's time per request in a py-spy profile."""

    def __init__(self, app: ASGIApp, app_state: State, routes: list[BaseRoute]):
        self.app, self.app_state, self.routes = app, app_state, routes

    def _route_path(self, scope: Scope) -> str:
        for route in self.routes:
            if route.matches(scope)[0] == Match.FULL:
                return str(getattr(route, "path", "unmatched"))
        return "unmatched"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        service: Service | None = getattr(self.app_state, "service", None)
        if scope["type"] != "http" or service is None:  # before start-up: nothing to count
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 500  # unless a response starts: an exception escaped the app

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            # The router records the matched route in the scope it was given (this one); a
            # request answered before routing (413 by Content-Length) is matched here.
            path = getattr(scope.get("route"), "path", None) or self._route_path(scope)
            service.metrics.requests.labels(path, str(status)).inc()
            service.metrics.latency.labels(path).observe(time.perf_counter() - start)


@dataclass(frozen=True)
class _Model:
    """What start-up makes of the model in either layout."""

    model: ServedModel
    queue: Batcher | ModelClient
    metrics: ServiceMetrics
    settings: Settings  # as laid out for the model (service/model.py's lay_out), in process


async def _start_in_process(
    settings: Settings, backend_factory: BackendFactory, multiprocess: bool
) -> _Model:
    """The model and its batcher live in this process (one process, or layout=replicas)."""
    backend = backend_factory(settings.model, settings.device, settings.int8)
    loop = asyncio.get_running_loop()
    backend, settings = await loop.run_in_executor(None, warm_up, backend, settings)
    metrics = ServiceMetrics(model_labels(backend), multiprocess)
    metrics.note_layout(settings.engine_streams, settings.max_batch_audio_s)

    def on_batch(*batch: Any) -> None:
        metrics.on_batch(*batch)
        if multiprocess:  # no gauge callbacks there: the depth is written after each batch
            metrics.queue_depth.set(batcher.queue_depth)

    config = batcher_config(settings, backend.metadata.sample_rate_hz)
    batcher = Batcher(backend, config, on_batch=on_batch)
    if not multiprocess:
        metrics.track_queue(lambda: batcher.queue_depth)
    await batcher.start()
    return _Model(backend, batcher, metrics, settings)


async def _start_worker(model_socket: str, settings: Settings) -> _Model:
    """One of several HTTP workers: the model and its batcher are in the model process."""
    client = await ModelClient.connect(model_socket, client_limits(settings))
    metrics = ServiceMetrics(model_labels(client), multiprocess=True)
    return _Model(client, client, metrics, settings)


def create_app(
    settings: Settings,
    backend_factory: BackendFactory = OnnxBackend,
    model_socket: str | None = None,
    multiprocess: bool = False,
) -> FastAPI:
    """The service for `settings`; `backend_factory(bundle, device, int8)` is swappable in
    tests. With `model_socket`, an HTTP worker of a multi-process service: the model answers
    from the model process listening there (service/processes.py). `multiprocess`: one of
    several processes, whose metrics are summed (service/metrics.py)."""
    lifecycle = Lifecycle()
    started_s = time.perf_counter()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if model_socket is None:
            started = await _start_in_process(settings, backend_factory, multiprocess)
        else:
            started = await _start_worker(model_socket, settings)
        queue = started.queue
        threads = decode_workers(started.settings)
        pool = ThreadPoolExecutor(threads, thread_name_prefix="decode")
        app.state.service = Service(
            settings=settings,
            model=started.model,
            queue=queue,
            pipeline=Pipeline(started.model.metadata, settings.inference_options()),
            metrics=started.metrics,
            pool=pool,
            uploads=asyncio.Semaphore(settings.max_uploads),
            lifecycle=lifecycle,
            model_reachable=(lambda: queue.reachable)
            if isinstance(queue, ModelClient)
            else (lambda: True),
        )
        freeze_start_up()
        lifecycle.ready = True
        log.info("ready after %.2f s", time.perf_counter() - started_s)
        try:
            yield
        finally:
            lifecycle.ready = False
            thaw()
            if isinstance(queue, Batcher):
                await queue.stop(drain=True)
            else:
                await queue.close()  # every answer has come: the requests drained
            pool.shutdown(wait=False)

    app = FastAPI(
        title="emodistill",
        version=__version__,
        lifespan=lifespan,
        description="Speech emotion recognition from audio alone (EmoDistill student).",
    )
    app.state.settings = settings
    app.state.lifecycle = lifecycle  # the server flips `terminating` on SIGTERM
    app.include_router(routes.router)
    stream.install(app, lifecycle)  # WS /stream, ended with session.ended on SIGTERM
    errors.install(app)  # first: its catch-all runs inside every other middleware
    # Added inner to outer: the body limit, then CORS, then metrics (which so see every 413).
    app.add_middleware(BodyLimit, max_bytes=int(settings.max_upload_mb * 1024 * 1024))
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
        )
    app.add_middleware(RequestMetrics, app_state=app.state, routes=list(routes.router.routes))
    return app
