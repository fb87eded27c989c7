"""An HTTP worker's end of the model process (service/model_process.py), and its watchdog.

`ModelClient` stands in for the model and the batcher of a single-process service: it has
the bundle's `metadata`, the `provider` and `model_file` served, and `submit_many(clips)`,
which raises the batcher's own exceptions (queue full, too large, closed), so the routes
cannot tell the layouts apart. One connection per worker carries all its requests at once;
a request whose caller leaves sends `cancel`, so its clips never run.

Admission is counted here, before a clip is copied or sent: at most `max_clips` (max_queue)
clips of this worker are in flight, so a worker whose model process stops reading buffers
at most that much, never every request it receives.

The watchdog: every `heartbeat_s` the client pings the model process, whose event loop
answers at once with how long its model call in progress has run. The model is *stalled*
when nothing has come back for `timeout_s`, or its call has run longer than that (a frozen
or swapped-out process, a deadlock, a hung GPU kernel). While stalled, readiness fails
(`reachable`), new requests get `ModelUnresponsiveError` (503 with Retry-After), and the
requests waiting get `ModelTimeoutError` (504) and are cancelled. Answers coming back end
the stall: the service serves again as before. A stall longer than `exit_after_s` ends the
worker with MODEL_STALLED_STATUS; its supervisor then kills the model process and exits 1,
for the orchestrator to restart the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emodistill.bundle import BundleMetadata

from . import wire
from .batcher import BatcherClosedError, QueueFullError, RequestTooLargeError
from .settings import Settings

log = logging.getLogger("emodistill.service")
GREETING_TIMEOUT_S = 30.0  # the model process greets at once: it listens only once ready
MODEL_STALLED_STATUS = 3  # a worker's exit status: its model process stopped answering
HEARTBEAT_MAX_S = 1.0


class ModelUnresponsiveError(Exception):
    """The model process has not answered within the deadline: try again later (503)."""

    retry_after_s = 5


class ModelTimeoutError(Exception):
    """This request waited on a model process that stopped answering (504)."""


@dataclass(frozen=True)
class ClientLimits:
    max_clips: int  # clips of this worker in flight at once (settings.max_queue)
    timeout_s: float  # silence, or a model call running, longer than this: stalled
    exit_after_s: float  # stalled this long: the worker exits (MODEL_STALLED_STATUS)

    @property
    def heartbeat_s(self) -> float:
        return min(HEARTBEAT_MAX_S, self.timeout_s / 4)


def client_limits(settings: Settings) -> ClientLimits:
    return ClientLimits(settings.max_queue, settings.model_timeout_s, settings.model_stall_exit_s)


class ModelClient(wire.FramedProtocol):
    peer = "the model process"

    def __init__(self, limits: ClientLimits) -> None:
        super().__init__()
        self.limits = limits
        self.greeted: asyncio.Future[wire.Header] = asyncio.get_running_loop().create_future()
        self._ids = itertools.count()
        self._waiting: dict[int, asyncio.Future[tuple[wire.Header, bytes]]] = {}
        self._clips_in_flight = 0
        self._last_heard_s = time.monotonic()
        self._busy_s = 0.0  # the model call in progress at the last pong
        self._stalled_since: float | None = None
        self._watchdog: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, socket_path: str, limits: ClientLimits) -> ModelClient:
        """Connected to the model process, with its bundle's metadata and provider."""
        loop = asyncio.get_running_loop()
        _, client = await loop.create_unix_connection(lambda: cls(limits), socket_path)
        hello = await asyncio.wait_for(client.greeted, GREETING_TIMEOUT_S)
        client.metadata = BundleMetadata.model_validate(hello["metadata"])
        client.provider = hello["provider"]
        client.model_file = Path(hello["model_file"])
        client._watchdog = loop.create_task(client._watch(), name="model-watchdog")
        return client

    metadata: BundleMetadata
    provider: str
    model_file: Path

    @property
    def connected(self) -> bool:
        return self.transport is not None

    @property
    def reachable(self) -> bool:
        """Connected, and answering within the deadline (readiness)."""
        return self.connected and self._stalled_since is None

    @property
    def clips_in_flight(self) -> int:
        return self._clips_in_flight

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.greeted.done():
            self.greeted.set_exception(ConnectionError("the model process closed at once"))
        # No answer will come: every request waiting fails as a stopped batcher would (503).
        self._fail_waiting(BatcherClosedError("the model process is gone"))

    def on_frames(self, frames: list[tuple[wire.Header, bytes]]) -> None:
        self._last_heard_s = time.monotonic()
        for header, payload in frames:
            op = header.get("op")
            if op == "hello":
                self.greeted.set_result(header)
                continue
            if op == "pong":
                self._busy_s = float(header["busy_s"])
                continue
            answer = self._waiting.get(int(header["id"]))
            if answer is not None and not answer.done():
                answer.set_result((header, payload))

    async def submit_many(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        """float32 [T_i] clips -> each clip's logits [C], as `Batcher.submit_many`; admitted
        (or refused) here before a sample is copied."""
        if self.transport is None:
            raise BatcherClosedError("the model process is gone")
        if self._stalled_since is not None:
            raise ModelUnresponsiveError("the model process is not answering")
        if len(clips) > self.limits.max_clips:
            raise RequestTooLargeError(len(clips), self.limits.max_clips)
        if self._clips_in_flight + len(clips) > self.limits.max_clips:
            raise QueueFullError(1)
        self._clips_in_flight += len(clips)
        try:
            return await self._call(clips)
        finally:
            self._clips_in_flight -= len(clips)

    async def _call(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        request_id = next(self._ids)
        lengths, payload = wire.pack_clips(clips)
        answer = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = answer
        self.send(wire.frame({"op": "submit", "id": request_id, "lengths": lengths}, payload))
        del payload
        try:
            header, payload = await answer
        except (asyncio.CancelledError, ModelTimeoutError):
            # The caller left (cancelling the task cancels `answer` too), or the model stalled:
            # the model process drops the clips if they have not run.
            self.send(wire.frame({"op": "cancel", "id": request_id}))
            raise
        finally:
            self._waiting.pop(request_id, None)
        if "error" in header:
            raise wire.raised(header)
        logits = np.frombuffer(payload, wire.SAMPLE).reshape(header["shape"])
        return list(logits)

    async def _watch(self) -> None:
        """The heartbeat and the stall's consequences (see the module doc)."""
        limits = self.limits
        while self.transport is not None:
            self.send(wire.frame({"op": "ping"}))
            await asyncio.sleep(limits.heartbeat_s)
            now = time.monotonic()
            silent_s = now - self._last_heard_s
            stalled = silent_s > limits.timeout_s or self._busy_s > limits.timeout_s
            if stalled and self._stalled_since is None:
                self._stalled_since = now
                log.error(
                    "the model process has not answered for %.1f s (model call running "
                    "%.1f s): not ready; requests get 503, those waiting 504",
                    silent_s,
                    self._busy_s,
                )
                self._fail_waiting(ModelTimeoutError("the model process stopped answering"))
            elif not stalled and self._stalled_since is not None:
                log.warning(
                    "the model process answers again after %.1f s", now - self._stalled_since
                )
                self._stalled_since = None
            if self._stalled_since is not None and now - self._stalled_since >= limits.exit_after_s:
                log.critical(
                    "the model process has not answered for %.0f s (model_stall_exit_s): "
                    "exiting for the service to be restarted",
                    now - self._stalled_since,
                )
                logging.shutdown()
                os._exit(MODEL_STALLED_STATUS)

    def _fail_waiting(self, exc: BaseException) -> None:
        for answer in self._waiting.values():
            if not answer.done():
                answer.set_exception(exc)

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        if self.transport is not None:
            self.transport.close()
