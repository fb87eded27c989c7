"""An HTTP worker's end of the model process (service/model_process.py).

`ModelClient` stands in for the model and the batcher of a single-process service: it has
the bundle's `metadata`, the `provider` and `model_file` served, and `submit_many(clips)`,
which raises the batcher's own exceptions (queue full, too large, closed), so the routes
cannot tell the layouts apart. One connection per worker carries all its requests at once;
a request whose caller leaves sends `cancel`, so its clips never run.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import numpy as np

from emodistill.bundle import BundleMetadata

from . import wire
from .batcher import BatcherClosedError

GREETING_TIMEOUT_S = 30.0  # the model process greets at once: it listens only once ready


class ModelClient(wire.FramedProtocol):
    peer = "the model process"

    def __init__(self) -> None:
        super().__init__()
        self.greeted: asyncio.Future[wire.Header] = asyncio.get_running_loop().create_future()
        self._ids = itertools.count()
        self._waiting: dict[int, asyncio.Future[tuple[wire.Header, bytes]]] = {}

    @classmethod
    async def connect(cls, socket_path: str) -> ModelClient:
        """Connected to the model process, with its bundle's metadata and provider."""
        loop = asyncio.get_running_loop()
        _, client = await loop.create_unix_connection(cls, socket_path)
        hello = await asyncio.wait_for(client.greeted, GREETING_TIMEOUT_S)
        client.metadata = BundleMetadata.model_validate(hello["metadata"])
        client.provider = hello["provider"]
        client.model_file = Path(hello["model_file"])
        return client

    metadata: BundleMetadata
    provider: str
    model_file: Path

    @property
    def connected(self) -> bool:
        return self.transport is not None

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.greeted.done():
            self.greeted.set_exception(ConnectionError("the model process closed at once"))
        # No answer will come: every request waiting fails as a stopped batcher would (503).
        for answer in self._waiting.values():
            if not answer.done():
                answer.set_exception(BatcherClosedError("the model process is gone"))

    def on_frames(self, frames: list[tuple[wire.Header, bytes]]) -> None:
        for header, payload in frames:
            if header.get("op") == "hello":
                self.greeted.set_result(header)
                continue
            answer = self._waiting.get(int(header["id"]))
            if answer is not None and not answer.done():
                answer.set_result((header, payload))

    async def submit_many(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        """float32 [T_i] clips -> each clip's logits [C], as `Batcher.submit_many`."""
        if self.transport is None:
            raise BatcherClosedError("the model process is gone")
        request_id = next(self._ids)
        lengths, payload = wire.pack_clips(clips)
        answer = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = answer
        self.send(wire.frame({"op": "submit", "id": request_id, "lengths": lengths}, payload))
        try:
            header, payload = await answer
        except asyncio.CancelledError:
            # The caller left (cancelling the task cancels `answer` too): the model process
            # drops the clips if they have not run.
            answered = answer.done() and not answer.cancelled()
            if not answered:
                self.send(wire.frame({"op": "cancel", "id": request_id}))
            raise
        finally:
            self._waiting.pop(request_id, None)
        if "error" in header:
            raise wire.raised(header)
        logits = np.frombuffer(payload, wire.SAMPLE).reshape(header["shape"])
        return list(logits)

    async def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
