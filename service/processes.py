"""The service's processes: one, or a supervisor with N HTTP workers and a model process.

One Python process parses, decodes and answers with one event loop: about one core of
frontend work, far less than a GPU scores (docs/benchmarks.md, "Frontend"). With
`workers` > 1 the supervisor (this module):

1. makes a private run directory (metrics files, the model's socket);
2. `layout=shared-model`: starts the model process (service/model_process.py), which loads
   and warms the model, and waits until it serves (or exits with its start-up error);
3. binds the listening socket once and starts `workers` HTTP processes that all accept on it
   (as uvicorn's own --workers does); each runs the same app (service/app.py) with a
   ModelClient for the model, or, `layout=replicas`, with its own model;
4. on SIGTERM/SIGINT passes the signal to every worker (each fails readiness, keeps serving
   for shutdown_grace_s, then drains), waits for them, then stops the model process;
5. if any child dies unasked, stops the others and exits non-zero: the orchestrator (compose,
   Kubernetes) restarts the whole service, never half of one.

Knows nothing of HTTP routes or models beyond the factory it passes on.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from . import model_process
from .model import BackendFactory
from .model_process import startup_error
from .settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("emodistill.service")
METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client reads it at import
MODEL_SOCKET = "model.sock"
START_TIMEOUT_S = 600.0  # the model's load and warm-up (a large model on a cold disk)


def available_cores(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota
    (a container's or a Kubernetes pod's CPU limit, which the affinity does not show)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return cores
    if quota == "max":
        return cores
    return max(1, min(cores, int(int(quota) / int(period))))


def auto_workers(settings: Settings, cores: int | None = None) -> int:
    """workers=0: how many HTTP processes suit this host (docs/benchmarks.md, section 7).

    With a GPU the frontend is the limit: a worker per core but one, which the model
    process's event loop and the GPU's feeding need. On the CPU the model's own threads are
    the limit: one process (two workers served the tiny demo no faster on 2 cores, 343
    against 344 req/s in alternating rounds: python -m bench.layouts).
    """
    if settings.workers:
        return settings.workers
    cores = cores or available_cores()
    if settings.device != "cpu" and _gpu_visible():
        return max(1, cores - 1)
    return 1


def _gpu_visible() -> bool:
    """Whether onnxruntime's CUDA provider can attach here (emodistill.gpu's diagnosis: the
    build, the driver, the libraries), without loading a model."""
    import onnxruntime as ort

    from emodistill.gpu import CudaUnavailable, diagnose_cuda

    try:
        diagnose_cuda(ort)
    except CudaUnavailable:
        return False
    return True


def listening_socket(settings: Settings) -> socket.socket:
    """The one TCP socket every worker accepts on."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run_worker(
    settings: Settings, backend_factory: BackendFactory, sock: socket.socket, model_socket: str
) -> None:
    """An HTTP worker's entry: the app on the shared socket, the model behind model_socket
    (empty: this worker's own model, layout=replicas)."""
    from .app import create_app

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = create_app(settings, backend_factory, model_socket or None, multiprocess=True)
    # uvicorn raises the signal it stopped for again once its shutdown is done: SIGINT
    # (Ctrl-C, or forwarded by the supervisor) would end a finished worker with a traceback.
    with contextlib.suppress(KeyboardInterrupt):
        _run_server(app, settings, [sock])


def _run_server(app: FastAPI, settings: Settings, sockets: list[socket.socket] | None) -> None:
    """uvicorn with every bound of `settings` and the graceful SIGTERM (service/server.py),
    on `sockets` when given (bound by the supervisor), else on settings.host:port."""
    from .server import GracefulServer, server_config

    server = GracefulServer(
        server_config(app, settings), settings.shutdown_grace_s, app.state.lifecycle
    )
    server.run(sockets=sockets)


class Supervisor:
    def __init__(self, settings: Settings, backend_factory: BackendFactory, workers: int):
        self.settings, self.backend_factory, self.workers = settings, backend_factory, workers
        self.context = multiprocessing.get_context("spawn")  # no forked threads or sessions
        self.run_dir = Path(tempfile.mkdtemp(prefix="emodistill-"))
        self.model: BaseProcess | None = None
        self.http: list[BaseProcess] = []
        self.stopping = False

    def start_model(self) -> str:
        """Starts the model process; its socket once it serves. Raises SystemExit with the
        model's own start-up error."""
        path = str(self.run_dir / MODEL_SOCKET)
        theirs, ours = self.context.Pipe(duplex=False)
        self.model = self.context.Process(
            target=model_process.main,
            args=(self.settings, self.backend_factory, path, ours),
            name="emodistill-model",
        )
        self.model.start()
        ours.close()
        if not theirs.poll(START_TIMEOUT_S):
            raise SystemExit(f"error: the model did not start within {START_TIMEOUT_S:.0f} s")
        try:
            error = theirs.recv()
        except EOFError:
            raise SystemExit("error: the model process died during start-up") from None
        if error is not None:
            raise SystemExit(f"error: {error}")
        return path

    def start_workers(self, model_socket: str) -> None:
        try:
            sock = listening_socket(self.settings)
        except OSError as err:
            where = f"{self.settings.host}:{self.settings.port}"
            raise SystemExit(f"error: cannot listen on {where}: {err.strerror}") from None
        host, port = sock.getsockname()[:2]
        for index in range(self.workers):
            process = self.context.Process(
                target=run_worker,
                args=(self.settings, self.backend_factory, sock, model_socket),
                name=f"emodistill-http-{index}",
            )
            process.start()
            self.http.append(process)
        sock.close()  # the workers hold it now
        log.info("%d HTTP workers on http://%s:%d", self.workers, host, port)

    def forward(self, sig: int, frame: FrameType | None) -> None:
        """SIGTERM/SIGINT: each worker runs its own graceful shutdown."""
        self.stopping = True
        for process in self.http:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, sig)

    def watch(self) -> int:
        """Until every worker has ended: 0 after a requested stop, 1 if a child died."""
        children = [*self.http, *([self.model] if self.model else [])]
        by_sentinel = {p.sentinel: p for p in children}
        while any(p.is_alive() for p in self.http):
            ended = wait([p.sentinel for p in children if p.is_alive()], timeout=1.0)
            if ended and not self.stopping:
                # By its sentinel: a child just killed may not be reaped (is_alive) yet.
                died = [by_sentinel[s] for s in ended if isinstance(s, int)]
                for process in died:
                    process.join(timeout=5)
                    log.error(
                        "%s exited (%s); stopping the service", process.name, process.exitcode
                    )
                self.forward(signal.SIGTERM, None)
                self._mark_dead(died)
                return 1
        return 0

    def stop_model(self) -> None:
        if self.model is not None and self.model.is_alive():
            self.model.terminate()  # SIGTERM: it finishes what is in flight
            self.model.join(timeout=self.settings.drain_s + 5)
            if self.model.is_alive():
                self.model.kill()

    def _mark_dead(self, processes: list[BaseProcess]) -> None:
        from prometheus_client import multiprocess

        for process in processes:
            if process.pid is not None:
                multiprocess.mark_process_dead(process.pid, str(self.run_dir / "metrics"))

    def cleanup(self) -> None:
        for process in self.http:
            process.join(timeout=self.settings.shutdown_grace_s + self.settings.drain_s + 5)
            if process.is_alive():
                process.kill()
        self.stop_model()
        shutil.rmtree(self.run_dir, ignore_errors=True)


def serve(settings: Settings, backend_factory: BackendFactory) -> int:
    """The service for `settings` in as many processes as `auto_workers` says; returns the
    exit status. A model that cannot be served ends start-up with one line (SystemExit)."""
    workers = auto_workers(settings)
    if workers > 1:
        return serve_many(settings, backend_factory, workers)
    from emodistill.bundle import BundleError
    from emodistill.gpu import CudaUnavailable

    from .app import create_app

    # The model is loaded here, before the server, so that a bad bundle or a GPU that cannot
    # be had ends start-up with one line and a non-zero exit rather than a lifespan traceback.
    try:
        backend = backend_factory(settings.model, settings.device, settings.int8)
    except (BundleError, CudaUnavailable) as err:
        raise SystemExit(f"error: {startup_error(settings, err)}") from None
    _run_server(create_app(settings, backend_factory=lambda *_: backend), settings, None)
    return 0


def serve_many(settings: Settings, backend_factory: BackendFactory, workers: int) -> int:
    """The multi-process service (see the module doc); returns the exit status."""
    supervisor = Supervisor(settings, backend_factory, workers)
    metrics_dir = supervisor.run_dir / "metrics"
    metrics_dir.mkdir()
    os.environ[METRICS_DIR_VARIABLE] = str(metrics_dir)  # inherited by every child
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, supervisor.forward)
    try:
        model_socket = supervisor.start_model() if settings.layout == "shared-model" else ""
        supervisor.start_workers(model_socket)
        return supervisor.watch()
    finally:
        supervisor.cleanup()
