"""The FastAPI application: start-up, middleware and wiring. Routes live in routes.py.

Start-up (lifespan) loads and checks the bundle, starts the batcher and warms the model
up; /v2/health/ready answers 200 only after that. Shutdown drains requests in flight.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emodistill.runtime import OnnxBackend

from . import __version__
from .batcher import Batcher
from .metrics import ServiceMetrics, model_labels
from .model_client import ModelClient, client_limits
from .model_process import BackendFactory, ServedModel, batcher_config, warm_up
from .settings import Settings

log = logging.getLogger("emodistill.service")
T = TypeVar("T")


@dataclass
class ServiceState:
    settings: Settings
    backend: ServedModel | None = None
    # The batcher in one process; the model process's client in a worker of several.
    batcher: Batcher | ModelClient | None = None
    metrics: ServiceMetrics | None = None
    # Decoding, resampling and request parsing, off the event loop (settings.decode_workers).
    workers: ThreadPoolExecutor | None = None
    # Requests reading or decoding a body at once (settings.max_uploads); the others wait
    # before reading theirs, so TCP holds their bytes, not this process.
    upload_slots: asyncio.Semaphore | None = None
    ready: bool = False  # the model is loaded and warm: requests are served
    # SIGTERM came: readiness fails so balancers stop sending, but requests are still served
    # until the grace period ends (service/server.py).
    terminating: bool = False
    started_s: float = field(default_factory=time.perf_counter)

    @property
    def model_reachable(self) -> bool:
        """False once a worker's model process is gone or stalled (its requests then get 503)."""
        return not isinstance(self.batcher, ModelClient) or self.batcher.reachable

    # Typed views for the routes, which run only after start-up has set every part.
    @property
    def model(self) -> ServedModel:
        return _started(self.backend)

    @property
    def queue(self) -> Batcher | ModelClient:
        if self.batcher is None:
            raise RuntimeError("the service has not started: start-up (lifespan) sets this")
        return self.batcher

    @property
    def meter(self) -> ServiceMetrics:
        return _started(self.metrics)

    @property
    def pool(self) -> ThreadPoolExecutor:
        return _started(self.workers)

    @property
    def uploads(self) -> asyncio.Semaphore:
        return _started(self.upload_slots)


def _started(part: T | None) -> T:
    if part is None:
        raise RuntimeError("the service has not started: start-up (lifespan) sets this")
    return part


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


def error_body(path: str, message: str) -> dict[str, str]:
    """The error object: the Open Inference Protocol's `{"error": ...}` on its /v2 routes
    (its clients read nothing else), FastAPI's `{"detail": ...}` elsewhere."""
    return {"error": message} if path.startswith("/v2") else {"detail": message}


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse(
        error_body(request.url.path, str(exc.detail)),
        status_code=exc.status_code,
        headers=exc.headers,
    )


class RequestMetrics:
    """Requests by route and status, and latency, for /metrics. Plain ASGI: the decorator
    form (BaseHTTPMiddleware) spawned a task and re-streamed every response, about a tenth
    of the event loop's time per request in a py-spy profile."""

    def __init__(self, app: ASGIApp, state: ServiceState, routes: list[BaseRoute]):
        self.app, self.state, self.routes = app, state, routes

    def _route_path(self, scope: Scope) -> str:
        for route in self.routes:
            if route.matches(scope)[0] == Match.FULL:
                return str(getattr(route, "path", "unmatched"))
        return "unmatched"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.state.metrics is None:
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
            self.state.metrics.requests.labels(path, str(status)).inc()
            self.state.metrics.latency.labels(path).observe(time.perf_counter() - start)


async def _start_in_process(
    state: ServiceState, backend_factory: BackendFactory, multiprocess: bool
) -> None:
    """The model and its batcher live in this process (one process, or layout=replicas)."""
    settings = state.settings
    backend = backend_factory(settings.model, settings.device, settings.int8)
    state.backend = backend
    metrics = state.metrics = ServiceMetrics(model_labels(backend), multiprocess)

    def on_batch(*batch: Any) -> None:
        metrics.on_batch(*batch)
        if multiprocess:  # no gauge callbacks there: the depth is written after each batch
            metrics.queue_depth.set(batcher.queue_depth)

    config = batcher_config(settings, backend.metadata.sample_rate_hz)
    batcher = Batcher(backend, config, on_batch=on_batch)
    state.batcher = batcher
    if not multiprocess:
        metrics.track_queue(lambda: batcher.queue_depth)
    await batcher.start()
    await asyncio.get_running_loop().run_in_executor(None, warm_up, backend, settings)


async def _start_worker(state: ServiceState, model_socket: str) -> None:
    """One of several HTTP workers: the model and its batcher are in the model process."""
    client = await ModelClient.connect(model_socket, client_limits(state.settings))
    state.backend = state.batcher = client
    state.metrics = ServiceMetrics(model_labels(client), multiprocess=True)


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
    state = ServiceState(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if model_socket is None:
            await _start_in_process(state, backend_factory, multiprocess)
        else:
            await _start_worker(state, model_socket)
        state.workers = ThreadPoolExecutor(settings.decode_workers, thread_name_prefix="decode")
        state.upload_slots = asyncio.Semaphore(settings.max_uploads)
        state.ready = True
        log.info("ready after %.2f s", time.perf_counter() - state.started_s)
        try:
            yield
        finally:
            state.ready = False
            if isinstance(state.batcher, Batcher):
                await state.batcher.stop(drain=True)
            elif state.batcher is not None:
                await state.batcher.close()  # every answer has come: the requests drained
            state.workers.shutdown(wait=False)

    from . import routes  # routes read `app.state.service`

    app = FastAPI(
        title="emodistill",
        version=__version__,
        lifespan=lifespan,
        description="Speech emotion recognition from audio alone (EmoDistill student).",
    )
    app.state.service = state
    app.include_router(routes.router)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    # Added inner to outer: the body limit, then CORS, then metrics (which so see every 413).
    app.add_middleware(BodyLimit, max_bytes=int(settings.max_upload_mb * 1024 * 1024))
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
        )
    app.add_middleware(RequestMetrics, state=state, routes=list(routes.router.routes))
    return app
