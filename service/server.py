"""The HTTP server around the app: connection limits and timeouts, and a graceful SIGTERM.

uvicorn bounds idle keep-alive connections and concurrent connections (503 beyond), but holds
a connection forever while its headers trickle in, lets a header block grow without limit, and
waits forever for a slow body. `GuardedProtocol` adds those bounds to uvicorn's httptools
protocol: a deadline for each header block (408), a size limit on it (431), and a deadline for
each request body (408). `GracefulServer` turns SIGTERM into: not ready at once, keep
accepting for a grace period (so a load balancer or Kubernetes can stop sending), then stop
accepting and let the requests in flight finish.

Knows nothing of models; reads only the settings and the app's readiness flag.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from types import FrameType
from typing import Any, ClassVar

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .settings import Settings
from .state import Lifecycle

log = logging.getLogger("emodistill.service")
HEADER_END = b"\r\n\r\n"


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout_s: float
    max_header_bytes: int
    body_timeout_s: float


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body deadlines and a header size limit."""

    limits: ClassVar[ConnectionLimits]

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._awaiting_headers = True
        self._header_bytes = 0
        self._tail = b""  # the last bytes seen, for a header end split across reads
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # A connection that never sends a full header block is dropped, idle or trickling.
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
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
        super().on_headers_complete()

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


def protocol_for(settings: Settings) -> type[GuardedProtocol]:
    limits = ConnectionLimits(
        header_timeout_s=settings.header_timeout_s,
        max_header_bytes=settings.max_header_kb * 1024,
        body_timeout_s=settings.body_timeout_s,
    )
    return type("GuardedProtocolWithLimits", (GuardedProtocol,), {"limits": limits})


def server_config(app: Any, settings: Settings) -> uvicorn.Config:
    """uvicorn's configuration for `app` with every connection bound of `settings`."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=protocol_for(settings),
        timeout_keep_alive=int(settings.keep_alive_s),
        limit_concurrency=settings.max_connections,
        timeout_graceful_shutdown=int(settings.drain_s),
        # A live stream's frames: larger than max_frame_kb is answered by the route (an error
        # event, 1009); far larger, the server closes first. Few frames wait unread: beyond
        # them TCP holds a client that sends faster than the stream is processed.
        ws_max_size=4 * settings.max_frame_kb * 1024,
        ws_max_queue=4,
        log_level="info",
    )


class GracefulServer(uvicorn.Server):
    """SIGTERM/SIGINT: not ready at once, keep serving for `grace_s`, then uvicorn's own
    shutdown (stop accepting, finish what is in flight). A second signal stops at once."""

    def __init__(self, config: uvicorn.Config, grace_s: float, lifecycle: Lifecycle) -> None:
        super().__init__(config)
        self.grace_s, self.lifecycle = grace_s, lifecycle
        self._terminating = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._terminating or self.grace_s <= 0:
            super().handle_exit(sig, frame)
            return
        self._terminating = True
        self.lifecycle.terminating = True  # readiness fails now: the balancer stops sending
        log.info("signal %d: not ready; still serving for %.1f s, then draining", sig, self.grace_s)
        loop = asyncio.get_event_loop()
        loop.call_soon_threadsafe(loop.call_later, self.grace_s, self._end_grace, sig, frame)

    def _end_grace(self, sig: int, frame: FrameType | None) -> None:
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
                super(GracefulServer, self).handle_exit(sig, frame)

        self._hooks = asyncio.ensure_future(hooks_then_exit())


# How long the end-of-grace hooks may take (a stream's last utterances are being scored).
HOOKS_S = 10.0
