"""The running service as the routes see it, built whole at start-up.

`Service` holds every part a route needs (settings, model, queue, pipeline, metrics, the
decoding pool, the upload slots); start-up (service/app.py's lifespan) builds it complete
before the first request and routes reach it through the `ServiceDep` dependency. What
changes while it runs (ready, terminating) is `Lifecycle`, created with the app, so that
the server's signal handling can flip it before and after start-up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from emodistill.pipeline import Pipeline, Queue

from .metrics import ServiceMetrics
from .model import ServedModel
from .settings import Settings


@dataclass
class Lifecycle:
    ready: bool = False  # the model is loaded and warm: requests are served
    # SIGTERM came: readiness fails so balancers stop sending, but requests are still served
    # until the grace period ends (service/server.py).
    terminating: bool = False
    # Run when the grace period ends, before the server drains (open live streams send
    # session.ended then close: service/stream.py).
    before_drain: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


@dataclass(frozen=True)
class Service:
    settings: Settings
    model: ServedModel
    # The batcher in one process; the model process's client in a worker of several.
    queue: Queue
    pipeline: Pipeline
    metrics: ServiceMetrics
    # Decoding, resampling and request parsing, off the event loop (settings.decode_workers).
    pool: ThreadPoolExecutor
    # Requests reading or decoding a body at once (settings.max_uploads); the others wait
    # before reading theirs, so TCP holds their bytes, not this process.
    uploads: asyncio.Semaphore
    lifecycle: Lifecycle
    # False once a worker's model process is gone (its requests then get 503); always True
    # where the model is in this process.
    model_reachable: Callable[[], bool]

    @property
    def ready(self) -> bool:
        life = self.lifecycle
        return life.ready and not life.terminating and self.model_reachable()


async def get_service(request: Request) -> Service:
    """The service built at start-up (uvicorn runs no request before the lifespan's start).
    `async` though it never awaits, so FastAPI calls it on the event loop, not in its thread
    pool (service/routes.py, authorize)."""
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]
