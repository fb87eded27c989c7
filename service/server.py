"""The HTTP server around the app: connection limits and timeouts, and a graceful stop.

uvicorn bounds idle keep-alive connections and concurrent connections (503 beyond), but holds
a connection forever while its headers trickle in, lets a header block grow without limit, and
waits forever for a slow body. `GuardedProtocol` adds those bounds to uvicorn's httptools
protocol: a deadline for each header block (408), a size limit on it (431), and a deadline for
each request body (408), and one limit on open connections for the whole service, counted
in shared memory across worker processes (503 with Retry-After and the service's JSON error
beyond it). `GracefulServer` turns a stop signal (SIGTERM, SIGINT, SIGHUP) into: not ready at
once, keep accepting for a grace period (so a load balancer or Kubernetes can stop sending),
then stop accepting and let the requests in flight finish; a second signal stops at once. The
process then exits with the first signal's status (`EXIT_STATUS`), not by the signal.

Knows nothing of models; reads only the settings and the app's readiness flag.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .settings import Settings
from .state import Lifecycle

if TYPE_CHECKING:
    from multiprocessing.context import BaseContext
    from multiprocessing.sharedctypes import Synchronized

    from starlette.types import Receive, Scope, Send

log = logging.getLogger("emodistill.service")
HEADER_END = b"\r\n\r\n"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# The exit status after a requested stop, in both layouts: SIGTERM (an orchestrator's stop)
# is success; Ctrl-C and a hang-up report themselves as a shell would (128 + the signal),
# without the process dying by them (so the supervisor still cleans up).
EXIT_STATUS = {signal.SIGTERM: 0, signal.SIGINT: 128 + signal.SIGINT, signal.SIGHUP: 129}
OVER_LIMIT_RETRY_AFTER_S = 1


class ConnectionCount(Protocol):
    """Open connections of the whole service: in shared memory with several workers (every
    worker counts into it), a plain count in one process."""

    value: int

    def get_lock(self) -> AbstractContextManager[Any]: ...


class OwnCount:
    """One process's count: one event loop updates it, so no lock (and no semaphore, whose
    multiprocessing resource tracker would be a child process of its own)."""

    def __init__(self) -> None:
        self.value = 0

    def get_lock(self) -> AbstractContextManager[Any]:
        return contextlib.nullcontext()


def shared_connection_count(context: BaseContext) -> ConnectionCount:
    """A count in shared memory, for the workers of `context`'s processes."""
    count: Synchronized[int] = context.Value("i", 0)
    return count


@dataclass
class StopRequests:
    """The stop signals a process has received, in order."""

    received: list[int] = field(default_factory=list)

    def note(self, sig: int) -> int:
        """Records `sig`; how many have come."""
        self.received.append(sig)
        return len(self.received)

    @property
    def exit_status(self) -> int:
        return EXIT_STATUS.get(signal.Signals(self.received[0]), 1) if self.received else 0


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout_s: float
    max_header_bytes: int
    body_timeout_s: float
    max_connections: int


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body deadlines and a header size limit."""

    limits: ClassVar[ConnectionLimits]
    open_connections: ClassVar[ConnectionCount]

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._counted = False
        self._awaiting_headers = True
        self._header_bytes = 0
        self._tail = b""  # the last bytes seen, for a header end split across reads
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        with self.open_connections.get_lock():
            self.open_connections.value += 1
        self._counted = True
        # A connection that never sends a full header block is dropped, idle or trickling.
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        if self._counted:
            self._counted = False
            with self.open_connections.get_lock():
                self.open_connections.value -= 1
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._awaiting_headers:
            if self._header_timer is None:
                self._arm_header_timer()  # the next request on a kept-alive connection
            seen = self._tail + data
            end = seen.find(HEADER_END)
            header_bytes = self._header_bytes + (
                end - len(self._tail) + 4 if end >= 0 else len(data)
            )
            if header_bytes > self.limits.max_header_bytes:
                self._refuse(431, "request header fields too large")
                return
            self._header_bytes = 0 if end >= 0 else header_bytes
            self._tail = b"" if end >= 0 else seen[-3:]
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        self._header_bytes, self._tail = 0, b""
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        self._body_timer = self.loop.call_later(self.limits.body_timeout_s, self._body_too_slow)
        if self.open_connections.value <= self.limits.max_connections:
            super().on_headers_complete()
            return
        # Over the service-wide limit: this request is answered by `over_limit` (uvicorn's
        # own limit answers plain text without Retry-After, and counts one worker only).
        app, self.app = self.app, over_limit
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def on_message_complete(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        self._awaiting_headers = True  # the timer starts with the next request's first byte
        super().on_message_complete()

    def _arm_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(
            self.limits.header_timeout_s, self._refuse, 408, "request headers not received in time"
        )

    def _body_too_slow(self) -> None:
        self._body_timer = None
        if self.cycle is not None and not self.cycle.response_started:
            self.cycle.disconnected = True  # the app's next receive() is a disconnect
            self.cycle.message_event.set()
        self._refuse(408, "request body not received in time")

    def _refuse(self, status: int, reason: str) -> None:
        """Answer `status` (unless a response has begun) and close the connection."""
        self._cancel_timers()
        if self.transport.is_closing():
            return
        if self.cycle is None or not self.cycle.response_started:
            body = f'{{"detail": "{reason}"}}'.encode()
            self.transport.write(
                f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
                + body
            )
        self.transport.close()

    def _cancel_timers(self) -> None:
        for timer in (self._header_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._body_timer = None


async def over_limit(scope: Scope, receive: Receive, send: Send) -> None:
    """503 past max_connections, in the service's JSON error shape, and close."""
    from .errors import error_body

    body = json.dumps(error_body(scope["path"], "too many open connections; retry later"))
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(OVER_LIMIT_RETRY_AFTER_S).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body.encode()})


def protocol_for(
    settings: Settings, open_connections: ConnectionCount | None = None
) -> type[GuardedProtocol]:
    """The protocol with `settings`' bounds; `open_connections` is shared by every worker of
    a service (one process: its own)."""
    limits = ConnectionLimits(
        header_timeout_s=settings.header_timeout_s,
        max_header_bytes=settings.max_header_kb * 1024,
        body_timeout_s=settings.body_timeout_s,
        max_connections=settings.max_connections,
    )
    count = open_connections if open_connections is not None else OwnCount()
    return type(
        "GuardedProtocolWithLimits",
        (GuardedProtocol,),
        {"limits": limits, "open_connections": count},
    )


def server_config(
    app: Any, settings: Settings, open_connections: ConnectionCount | None = None
) -> uvicorn.Config:
    """uvicorn's configuration for `app` with every connection bound of `settings`."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=protocol_for(settings, open_connections),
        timeout_keep_alive=int(settings.keep_alive_s),
        timeout_graceful_shutdown=int(settings.drain_s),
        # A live stream's frames: larger than max_frame_kb is answered by the route (an error
        # event, 1009); far larger, the server closes first. Few frames wait unread: beyond
        # them TCP holds a client that sends faster than the stream is processed.
        ws_max_size=4 * settings.max_frame_kb * 1024,
        ws_max_queue=4,
        log_level="info",
    )


class GracefulServer(uvicorn.Server):
    """A stop signal: not ready at once, keep serving for `grace_s`, then uvicorn's own
    shutdown (stop accepting, finish what is in flight). A second signal stops at once, unless
    `supervised` (a worker of several: the terminal's Ctrl-C and the supervisor's SIGTERM may
    both arrive; the supervisor kills its workers for a stop at once). Every signal is noted
    in `stops`, whose first gives the exit status; none is raised again after shutdown."""

    def __init__(
        self,
        config: uvicorn.Config,
        grace_s: float,
        lifecycle: Lifecycle,
        stops: StopRequests,
        supervised: bool = False,
    ) -> None:
        super().__init__(config)
        self.grace_s, self.lifecycle, self.stops = grace_s, lifecycle, stops
        self.supervised = supervised

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn's own raises the signal again after shutdown, so that one process would end
        # by it (status 143) where a supervisor exits 0.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        count = self.stops.note(sig)
        if count > 1:
            if not self.supervised:
                log.warning("signal %d again: stopping at once, without draining", sig)
                self.should_exit = self.force_exit = True
            return
        self.lifecycle.terminating = True  # readiness fails now: the balancer stops sending
        if not self.started or self.grace_s <= 0:
            self.should_exit = True  # nothing served yet, or no grace asked for
            return
        log.info("signal %d: not ready; still serving for %.1f s, then draining", sig, self.grace_s)
        loop = asyncio.get_event_loop()
        loop.call_soon_threadsafe(loop.call_later, self.grace_s, self._end_grace)

    def _end_grace(self) -> None:
        """The grace period is over: the lifecycle's hooks (live streams end with their
        answer), then uvicorn's shutdown (which would cut a WebSocket with 1012)."""

        async def hooks_then_exit() -> None:
            hooks = [hook() for hook in self.lifecycle.before_drain]
            try:
                if hooks:
                    gathered = asyncio.gather(*hooks, return_exceptions=True)
                    await asyncio.wait_for(gathered, HOOKS_S)
            except TimeoutError:
                log.warning("end-of-grace hooks took over %.0f s; draining anyway", HOOKS_S)
            finally:
                self.should_exit = True

        self._hooks = asyncio.ensure_future(hooks_then_exit())


# How long the end-of-grace hooks may take (a stream's last utterances are being scored).
HOOKS_S = 10.0
