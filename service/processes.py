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
4. on SIGTERM/SIGINT/SIGHUP, from its first instant: during start-up, stops it (no worker
   starts); once serving, sends SIGTERM to every worker (each fails readiness, keeps serving
   for shutdown_grace_s, then drains), waits for them, then stops the model process; a second
   signal kills every child at once. The exit status is the signal's (server.EXIT_STATUS: 0
   for SIGTERM), as in one process;
5. if any child dies unasked, stops the others and exits non-zero (1): the orchestrator
   (compose, Kubernetes) restarts the whole service, never half of one. A worker whose model
   process stopped answering exits so (service/model_client.py's watchdog).

Every child dies with the supervisor, however it ends (service/children.py).

Knows nothing of HTTP routes or models beyond the factory it passes on.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import time
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import TYPE_CHECKING

from . import model_process
from .children import die_with_parent, make_run_dir, remove_stale_run_dirs
from .host import available_cores
from .model import BackendFactory, warm_up
from .model_client import MODEL_STALLED_STATUS
from .model_process import startup_error
from .server import STOP_SIGNALS, ConnectionCount, StopRequests, shared_connection_count
from .settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("emodistill.service")
METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client reads it at import
MODEL_SOCKET = "model.sock"
START_TIMEOUT_S = 600.0  # the model's load and warm-up (a large model on a cold disk)


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
    """The one TCP socket every worker accepts on, bound but not yet listening: bound first,
    so that a port in use ends start-up before the model loads; listening only once workers
    accept, so that no client waits in the backlog through the model's load."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as err:
        sock.close()
        where = f"{settings.host}:{settings.port}"
        raise SystemExit(f"error: cannot listen on {where}: {err.strerror}") from None
    sock.set_inheritable(True)
    return sock


def run_worker(
    settings: Settings,
    backend_factory: BackendFactory,
    sock: socket.socket,
    model_socket: str,
    connections: ConnectionCount,
    supervisor_pid: int,
) -> None:
    """An HTTP worker's entry: the app on the shared socket, the model behind model_socket
    (empty: this worker's own model, layout=replicas)."""
    die_with_parent(supervisor_pid)
    # Ctrl-C reaches the whole process group; the supervisor answers it for every worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from .app import create_app

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = create_app(settings, backend_factory, model_socket or None, multiprocess=True)
    _run_server(app, settings, [sock], StopRequests(), connections, supervised=True)


def _run_server(
    app: FastAPI,
    settings: Settings,
    sockets: list[socket.socket] | None,
    stops: StopRequests,
    connections: ConnectionCount | None = None,
    supervised: bool = False,
) -> None:
    """uvicorn with every bound of `settings` and the graceful stop (service/server.py), on
    `sockets` when given (bound by the supervisor), else on settings.host:port."""
    from .server import GracefulServer, server_config

    config = server_config(app, settings, connections)
    server = GracefulServer(
        config, settings.shutdown_grace_s, app.state.lifecycle, stops, supervised
    )
    server.run(sockets=sockets)


class Supervisor:
    def __init__(
        self, settings: Settings, backend_factory: BackendFactory, workers: int, stops: StopRequests
    ):
        self.settings, self.backend_factory, self.workers = settings, backend_factory, workers
        self.stops = stops
        self.context = multiprocessing.get_context("spawn")  # no forked threads or sessions
        remove_stale_run_dirs()
        self.run_dir = make_run_dir()
        self.connections = shared_connection_count(self.context)  # one limit for every worker
        self.model: BaseProcess | None = None
        self.http: list[BaseProcess] = []

    @property
    def stopping(self) -> bool:
        return bool(self.stops.received)

    def on_signal(self, sig: int, frame: FrameType | None) -> None:
        """A stop signal, from the first instant: the first stops start-up or starts every
        worker's graceful stop; a second kills every child at once (no drain)."""
        if self.stops.note(sig) == 1:
            log.info("signal %d: stopping", sig)
            self.forward()
        else:
            log.warning("signal %d again: stopping at once, without draining", sig)
            for process in [*self.http, *([self.model] if self.model else [])]:
                if process.pid is not None and process.is_alive():
                    process.kill()

    def start_model(self) -> str | None:
        """Starts the model process; its socket once it serves, None if a stop signal came
        first. Raises SystemExit with the model's own start-up error."""
        path = str(self.run_dir / MODEL_SOCKET)
        theirs, ours = self.context.Pipe(duplex=False)
        self.model = self.context.Process(
            target=model_process.main,
            args=(self.settings, self.backend_factory, path, ours, os.getpid()),
            name="emodistill-model",
        )
        self.model.start()
        ours.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        # Short polls, so that a stop signal (noted by on_signal) ends the wait at once.
        while not theirs.poll(0.05):
            if self.stopping:
                return None
            if time.monotonic() > deadline:
                raise SystemExit(f"error: the model did not start within {START_TIMEOUT_S:.0f} s")
        try:
            error = theirs.recv()
        except EOFError:
            if self.stopping:
                return None
            raise SystemExit("error: the model process died during start-up") from None
        if error is not None:
            raise SystemExit(f"error: {error}")
        return None if self.stopping else path

    def start_workers(self, sock: socket.socket, model_socket: str) -> None:
        sock.listen(2048)
        host, port = sock.getsockname()[:2]
        for index in range(self.workers):
            if self.stopping:
                break
            process = self.context.Process(
                target=run_worker,
                args=(
                    self.settings,
                    self.backend_factory,
                    sock,
                    model_socket,
                    self.connections,
                    os.getpid(),
                ),
                name=f"emodistill-http-{index}",
            )
            process.start()
            self.http.append(process)
        sock.close()  # the workers hold it now
        if self.stopping:
            self.forward()  # a worker started as the signal came has not had it
            return
        log.info("%d HTTP workers on http://%s:%d", self.workers, host, port)

    def forward(self) -> None:
        """Each worker runs its own graceful stop (SIGTERM; repeats change nothing there)."""
        for process in self.http:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGTERM)

    def watch(self) -> int:
        """Until every worker has ended: the stop signal's status after a requested stop
        (server.EXIT_STATUS), 1 if a child died."""
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
                if any(p.exitcode == MODEL_STALLED_STATUS for p in died):
                    # A frozen model process drains nothing: it goes first, and the workers'
                    # requests waiting on it end at once (503).
                    self.kill_model()
                self.forward()
                self._mark_dead(died)
                return 1
        return self.stops.exit_status

    def stop_model(self) -> None:
        if self.model is not None and self.model.is_alive():
            self.model.terminate()  # SIGTERM: it finishes what is in flight
            self.model.join(timeout=self.settings.drain_s + 5)
            self.kill_model()

    def kill_model(self) -> None:
        if self.model is not None and self.model.is_alive():
            self.model.kill()
            self.model.join(timeout=5)

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


class StartupInterrupted(Exception):
    """A stop signal came while the model loaded or warmed up (one process)."""


def serve(
    settings: Settings, backend_factory: BackendFactory, stops: StopRequests | None = None
) -> int:
    """The service for `settings` in as many processes as `auto_workers` says; returns the
    exit status (server.EXIT_STATUS after a stop signal, in both layouts). `stops`: the stop
    signals that came before (service/__main__.py notes them while it imports). A model that
    cannot be served ends start-up with one line (SystemExit)."""
    stops = stops or StopRequests()
    if stops.received:
        return stops.exit_status

    def during_start_up(sig: int, frame: FrameType | None) -> None:
        stops.note(sig)
        raise StartupInterrupted

    # From the first instant: a signal while the model loads stops start-up.
    for sig in STOP_SIGNALS:
        signal.signal(sig, during_start_up)
    try:
        workers = auto_workers(settings)
    except StartupInterrupted:
        return stops.exit_status
    if workers > 1:
        for sig in STOP_SIGNALS:  # noted; the supervisor acts on it once it exists
            signal.signal(sig, lambda sig, frame: stops.note(sig))
        return serve_many(settings, backend_factory, workers, stops)
    from emodistill.bundle import BundleError
    from emodistill.gpu import CudaUnavailable

    from .app import create_app

    # The model is loaded and warmed here, before the server, so that a bad bundle or a GPU
    # that cannot be had ends start-up with one line and a non-zero exit rather than a
    # lifespan traceback, and so that a stop signal meanwhile ends start-up at once.
    try:
        backend = backend_factory(settings.model, settings.device, settings.int8)
        backend, laid_out = warm_up(backend, settings)
    except (BundleError, CudaUnavailable) as err:
        raise SystemExit(f"error: {startup_error(settings, err)}") from None
    except StartupInterrupted:
        log.info("signal %d during start-up: stopped before serving", stops.received[0])
        return stops.exit_status
    for sig in STOP_SIGNALS:  # until uvicorn's own handlers: noted, seen as the server starts
        signal.signal(sig, lambda sig, frame: stops.note(sig))
    if stops.received:
        return stops.exit_status
    warm = laid_out.model_copy(update={"warmup": False})  # laid out and warmed above
    _run_server(create_app(warm, backend_factory=lambda *_: backend), settings, None, stops)
    if len(stops.received) > 1:
        # Stop at once: not even for a model call in progress, whose thread the interpreter
        # would otherwise wait for at exit.
        logging.shutdown()
        os._exit(stops.exit_status)
    return stops.exit_status


def serve_many(
    settings: Settings, backend_factory: BackendFactory, workers: int, stops: StopRequests
) -> int:
    """The multi-process service (see the module doc); returns the exit status."""
    supervisor = Supervisor(settings, backend_factory, workers, stops)
    for sig in STOP_SIGNALS:
        signal.signal(sig, supervisor.on_signal)
    if stops.received:  # came during the few lines before
        supervisor.cleanup()
        return stops.exit_status
    metrics_dir = supervisor.run_dir / "metrics"
    metrics_dir.mkdir()
    os.environ[METRICS_DIR_VARIABLE] = str(metrics_dir)  # inherited by every child
    try:
        sock = listening_socket(settings)
        model_socket = supervisor.start_model() if settings.layout == "shared-model" else ""
        if model_socket is None or supervisor.stopping:
            sock.close()
            log.info("signal %d during start-up: stopped before serving", stops.received[0])
            return stops.exit_status
        supervisor.start_workers(sock, model_socket)
        return supervisor.watch()
    finally:
        supervisor.cleanup()
