"""The model process: one model and one batcher per device, fed by every HTTP worker.

HTTP, uploads, decoding and speech detection scale across worker processes
(service/processes.py), but a GPU runs one batch at a time best when it sees every request:
here the clips of all workers meet in one `Batcher`, so batches stay as large and as
length-grouped as in one process. Workers send clips over a Unix socket (service/wire.py)
and get logits back; a worker whose caller leaves sends `cancel`, and its clips are dropped
before they run, as in one process. A worker's `ping` is answered at once from the event
loop with how long the batch in the model has been running (`pong`, `busy_s`): the workers'
watchdog (service/model_client.py) so tells a frozen process or a hung model call from a
busy one.

Also records the batch metrics (size, wait, inference time, queue depth) into the shared
multiprocess metrics directory. Knows nothing of HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from multiprocessing.connection import Connection

import numpy as np

from emodistill.bundle import BundleError
from emodistill.gpu import CudaUnavailable

from . import wire
from .batcher import Batcher, BatcherClosedError
from .children import die_with_parent
from .heap import freeze_start_up
from .metrics import ServiceMetrics, model_labels
from .model import BackendFactory, ModelBackend, batcher_config, warm_up
from .settings import Settings

log = logging.getLogger("emodistill.model")


class TimedModel:
    """The backend, noting when each call in progress began (read by `busy_s`)."""

    def __init__(self, backend: ModelBackend) -> None:
        self.backend = backend
        # Written by the batcher's threads (one per batch in flight), each under its own key.
        self._started_s: dict[int, float] = {}

    def infer(self, clips: list[np.ndarray]) -> np.ndarray:
        call = threading.get_ident()
        self._started_s[call] = time.monotonic()
        try:
            return self.backend.infer(clips)
        finally:
            del self._started_s[call]

    @property
    def busy_s(self) -> float:
        """How long the oldest model call in progress has run (0: none)."""
        started = list(self._started_s.values())
        return time.monotonic() - min(started) if started else 0.0


class ModelServer:
    """Answers `submit` frames from any number of worker connections through one batcher."""

    def __init__(self, backend: ModelBackend, settings: Settings, metrics: ServiceMetrics):
        self.backend, self.metrics = backend, metrics
        config = batcher_config(settings, backend.metadata.sample_rate_hz)
        self.timed = TimedModel(backend)
        self.batcher = Batcher(self.timed, config, on_batch=self._on_batch)
        self.hello = wire.frame(
            {
                "op": "hello",
                "metadata": backend.metadata.model_dump(mode="json"),
                "provider": backend.provider,
                "model_file": str(backend.model_file),
            }
        )

    def _on_batch(
        self, size: int, padded_samples: int, queue_wait_s: list[float], infer_s: float, ok: bool
    ) -> None:
        self.metrics.on_batch(size, padded_samples, queue_wait_s, infer_s, ok)
        self.metrics.queue_depth.set(self.batcher.queue_depth)

    def connection(self) -> WorkerConnection:
        """The protocol of one worker's connection (asyncio.start_unix_server's factory)."""
        return WorkerConnection(self)


class WorkerConnection(wire.FramedProtocol):
    """One HTTP worker: its requests are queued as their frames arrive and answered from the
    batcher's callbacks, with no task per request (the model process serves every worker
    from one event loop, so its cost per request bounds the whole service)."""

    peer = "an HTTP worker"

    def __init__(self, server: ModelServer):
        super().__init__()
        self.server = server
        self.pending: dict[int, list[asyncio.Future[np.ndarray]]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.send(self.server.hello)

    def connection_lost(self, exc: Exception | None) -> None:
        # The worker is gone: nobody waits for its clips, which never run.
        for futures in self.pending.values():
            self.server.batcher.forget(futures)
        self.pending.clear()
        super().connection_lost(exc)

    def on_frames(self, frames: list[tuple[wire.Header, bytes]]) -> None:
        for header, payload in frames:
            if header["op"] == "ping":
                self.send(wire.frame({"op": "pong", "busy_s": self.server.timed.busy_s}))
                continue
            request_id = int(header["id"])
            if header["op"] == "cancel":
                futures = self.pending.pop(request_id, None)
                if futures is not None:
                    self.server.batcher.forget(futures)
            else:
                self._submit(request_id, wire.unpack_clips(header["lengths"], payload))
        self.server.metrics.queue_depth.set(self.server.batcher.queue_depth)

    def _submit(self, request_id: int, clips: list[np.ndarray]) -> None:
        try:
            futures = self.server.batcher.enqueue(clips)
        except Exception as exc:
            self.send(wire.frame(wire.error_header(request_id, exc)))
            return
        self.pending[request_id] = futures
        left = len(futures)

        def one_done(done: asyncio.Future[np.ndarray]) -> None:
            nonlocal left
            left -= 1
            if self.pending.get(request_id) is not futures:
                return  # answered already, or cancelled by its worker
            failed = done.cancelled() or done.exception() is not None
            if failed or left == 0:
                del self.pending[request_id]
            if failed:
                # One clip's batch failed: the rest of the request's clips need not run.
                self.server.batcher.forget(futures)
                error = (None if done.cancelled() else done.exception()) or BatcherClosedError(
                    "cancelled in the model process"
                )
                self.send(wire.frame(wire.error_header(request_id, error)))
            elif left == 0:
                logits = np.stack([f.result() for f in futures]).astype(wire.SAMPLE, copy=False)
                answer = {"id": request_id, "shape": list(logits.shape)}
                self.send(wire.frame(answer, logits.tobytes()))

        for future in futures:
            future.add_done_callback(one_done)


async def _serve(
    backend: ModelBackend, settings: Settings, socket_path: str, ready: Connection
) -> None:
    loop = asyncio.get_running_loop()
    backend, settings = await loop.run_in_executor(None, warm_up, backend, settings)
    metrics = ServiceMetrics(model_labels(backend), multiprocess=True)
    metrics.note_layout(settings.engine_streams, settings.max_batch_audio_s)
    server = ModelServer(backend, settings, metrics)
    await server.batcher.start()
    unix = await loop.create_unix_server(server.connection, socket_path)
    stop = asyncio.Event()
    # The supervisor sends SIGTERM once every HTTP worker has drained: nothing is queued then,
    # but whatever is still in flight finishes before the process ends.
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    freeze_start_up()
    ready.send(None)
    log.info("model process ready on %s", socket_path)
    await stop.wait()
    unix.close()
    await server.batcher.stop(drain=True)


def startup_error(settings: Settings, err: BundleError | CudaUnavailable) -> str:
    """The one line that ends a start-up the model cannot make."""
    if isinstance(err, BundleError):
        return f"cannot serve {settings.model}: {err}"
    return f"device={settings.device}, but CUDA is unavailable: {err}"


def main(
    settings: Settings,
    backend_factory: BackendFactory,
    socket_path: str,
    ready: Connection,
    supervisor_pid: int,
) -> None:
    """The model process's entry (spawned by service/processes.py). Sends None on `ready`
    once it serves, or the start-up error's text and exits. Until it serves, SIGTERM ends it
    at once (the default action): a stop during the load needs nothing finished."""
    die_with_parent(supervisor_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the supervisor, which stops
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        backend = backend_factory(settings.model, settings.device, settings.int8)
    except (BundleError, CudaUnavailable) as err:
        ready.send(startup_error(settings, err))
        raise SystemExit(1) from err
    asyncio.run(_serve(backend, settings, socket_path, ready))
