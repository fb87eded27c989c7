"""`WS /stream`: a live call's emotion, utterance by utterance, equal to `/predict`'s answer.

A thin adapter over emodistill.live's session (the protocol is in docs/streaming.md, and as
AsyncAPI in service/static/asyncapi.yaml, served at GET /asyncapi.yaml): the key
and the stream limit are checked before the upgrade (refused with an HTTP status); then a
config message, binary audio frames, `{"type": "end"}`. Every span goes to the service's
queue (the batcher, or the model process), so all streams share batches. The reader waits
while the session's events are untaken, so a client faster than the stream is processed is
held by TCP, never buffered. Ends: the client's end (1000), an idle stream (4408), a stream
past max_stream_s (4413), SIGTERM after the grace period (1001), each after session.ended;
a protocol violation is an `error` event and its close code, with no session.ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, WebSocket
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.types import Message
from starlette.websockets import WebSocketDisconnect, WebSocketState

from emodistill.errors import AudioError
from emodistill.live import LiveSession, StreamConfig, StreamError
from emodistill.live_client import KEY_PREFIX, SUBPROTOCOL
from emodistill.prediction import ModelCard

from .batcher import BatcherClosedError, QueueFullError
from .routes import authorize
from .state import Lifecycle, Service, ServiceDep

log = logging.getLogger("emodistill.service")
router = APIRouter()

# Close codes (RFC 6455 §7.4; 4xxx: this protocol's, after the HTTP statuses they echo).
NORMAL, GOING_AWAY, UNSUPPORTED, BAD_DATA, POLICY, TOO_BIG = 1000, 1001, 1003, 1007, 1008, 1009
INTERNAL, TRY_LATER, BAD_CONFIG, IDLE, TOO_LONG = 1011, 1013, 4400, 4408, 4413


@dataclass
class Ending:
    """How a stream ends: `code` for the close, `reason` for session.ended and the close."""

    code: int
    reason: str


class Streams:
    """The open streams of this process, so SIGTERM can end them with their answer."""

    def __init__(self) -> None:
        self.open: set[StreamConnection] = set()

    async def end_all(self) -> None:
        await asyncio.gather(
            *(s.stop(Ending(GOING_AWAY, "server shutting down")) for s in self.open)
        )


def install(app: FastAPI, lifecycle: Lifecycle) -> None:
    """The route, and the registry its streams join, ended when SIGTERM's grace is over."""
    streams = app.state.streams = Streams()
    lifecycle.before_drain.append(streams.end_all)
    app.include_router(router)


def _key_given(websocket: WebSocket, key: str) -> bool:
    """The key as a bearer header, or as a subprotocol (browsers set no headers)."""
    header = websocket.headers.get("authorization", "")
    offered = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",")]
    tokens = [header.removeprefix("Bearer ")] if header.startswith("Bearer ") else []
    tokens += [p.removeprefix(KEY_PREFIX) for p in offered if p.startswith(KEY_PREFIX)]
    return any(hmac.compare_digest(t.encode(), key.encode()) for t in tokens)


async def _refuse(websocket: WebSocket, service: Service, status: int, reason: str) -> None:
    service.metrics.streams_refused.labels(reason).inc()
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(JSONResponse({"detail": reason}, status))
    else:
        await websocket.close(POLICY, reason)


@router.get(
    "/model",
    response_model=ModelCard,
    dependencies=[Depends(authorize)],
    summary="The model served: name, version, calibration, training data, note",
)
async def model_card(service: ServiceDep) -> ModelCard:
    """What the page shows before the first upload or stream."""
    return service.pipeline.card


@router.get(
    "/asyncapi.yaml",
    response_class=Response,
    responses={200: {"content": {"application/yaml": {}}}},
    summary="WS /stream's protocol, as an AsyncAPI 3.0 document",
    description="OpenAPI lists no WebSocket routes: the live stream `WS /stream` (a config "
    "message, binary audio frames, `end`; events from `session.started` to `session.ended`; "
    "its close codes and its key) is described by this AsyncAPI document, and in prose in "
    "docs/streaming.md. Needs no key, like /docs.",
)
async def asyncapi() -> Response:
    # Packaged with the service (service/static), so the image serves it; docs/asyncapi.yaml
    # links to it.
    document = (resources.files("service") / "static" / "asyncapi.yaml").read_bytes()
    return Response(document, media_type="application/yaml")


@router.websocket("/stream", name="stream")
async def stream(websocket: WebSocket) -> None:
    service: Service = websocket.app.state.service
    streams: Streams = websocket.app.state.streams
    settings = service.settings
    if settings.api_key is not None and not _key_given(websocket, settings.api_key):
        return await _refuse(websocket, service, 401, "missing or wrong API key")
    if not service.ready:
        return await _refuse(websocket, service, 503, "not ready")
    if len(streams.open) >= settings.max_streams:
        return await _refuse(websocket, service, 503, "too many streams (max_streams)")
    offered = websocket.headers.get("sec-websocket-protocol", "")
    await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
    connection = StreamConnection(websocket, service)
    streams.open.add(connection)
    service.metrics.streams_open.inc()
    try:
        await connection.run()
    finally:
        streams.open.discard(connection)
        service.metrics.streams_open.dec()


class StreamConnection:
    """One accepted WebSocket: the config, the frames, the events, the close."""

    def __init__(self, websocket: WebSocket, service: Service) -> None:
        self.ws, self.service, self.settings = websocket, service, service.settings
        self.session: LiveSession | None = None
        self.stopped: asyncio.Future[Ending] = asyncio.get_running_loop().create_future()
        self.sender: asyncio.Task[None] | None = None
        self.reader: asyncio.Task[Ending]
        self.finished = asyncio.Event()  # the close has been sent

    # --- the whole stream ------------------------------------------------------------------

    async def run(self) -> None:
        reader = self.reader = asyncio.ensure_future(self._read())
        await asyncio.wait({reader})  # cancelled when the events failed (their error is out)
        ending: Ending | None = None
        if not reader.cancelled():
            try:
                ending = reader.result()
            except WebSocketDisconnect:
                pass  # the client left: nothing more to send
            except _Violation as v:
                await self._error(v.code, v.reason, v.close_code)
        sender = self.sender
        if ending is not None and self.session is not None and sender is not None:
            if not sender.done():
                await self.session.finish(ending.reason)
                await asyncio.wait({sender})  # session.ended sent (or an error instead)
            if not sender.cancelled() and sender.exception() is None:
                await self._close(ending.code, ending.reason)
        elif ending is not None:
            await self._close(ending.code, ending.reason)
        if sender is not None:
            sender.cancel()
        self.finished.set()

    async def stop(self, ending: Ending) -> None:
        """End the stream from outside (SIGTERM): session.ended, then the close."""
        if not self.stopped.done():
            self.stopped.set_result(ending)
        await self.finished.wait()

    async def _read(self) -> Ending:
        config = await self._config()
        s = self.settings
        session = self.session = LiveSession(
            self.service.pipeline,
            self.service.queue,
            config,
            default_interim_ms=s.interim_ms,
            executor=self.service.pool,
        )
        session.on_utterance = self.service.metrics.stream_delay.observe
        session.on_interim = self.service.metrics.stream_interims.inc
        limits = {
            "max_stream_s": s.max_stream_s,
            "idle_s": s.stream_idle_s,
            "max_frame_bytes": s.max_frame_kb * 1024,
            "min_interim_ms": s.min_interim_ms,
        }
        await self._send(session.started(limits).model_dump_json())
        self.sender = asyncio.ensure_future(self._send_events(session))
        started_s = time.monotonic()
        while True:
            wall_left = s.max_stream_s - (time.monotonic() - started_s)
            message = await self._next(min(s.stream_idle_s, max(wall_left, 0.0)))
            if isinstance(message, Ending):
                return message
            if message is None:
                if time.monotonic() - started_s >= s.max_stream_s:
                    return self._refused(TOO_LONG, "max_stream_s reached")
                return self._refused(IDLE, f"idle for {s.stream_idle_s:g} s (stream_idle_s)")
            if "bytes" in message and message["bytes"] is not None:
                await self._audio(session, message["bytes"])
                if session.duration_s >= s.max_stream_s:
                    return self._refused(TOO_LONG, "max_stream_s reached")
            elif _message_type(message.get("text")) == "end":
                return Ending(NORMAL, "end")
            elif _message_type(message.get("text")) == "config":
                raise _Violation("config_again", "the config is sent once, first", POLICY)
            else:
                raise _Violation(
                    "not_audio", "expected binary audio or {'type': 'end'}", UNSUPPORTED
                )

    async def _next(self, timeout_s: float) -> Message | Ending | None:
        """The next message; an Ending when stopped from outside; None after `timeout_s`."""
        receive: asyncio.Future[Any] = asyncio.ensure_future(self.ws.receive())
        done, _ = await asyncio.wait(
            {receive, self.stopped}, timeout=timeout_s, return_when="FIRST_COMPLETED"
        )
        if receive not in done:
            receive.cancel()
            return self.stopped.result() if self.stopped.done() else None
        message = receive.result()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        return message

    def _refused(self, code: int, reason: str) -> Ending:
        self.service.metrics.streams_refused.labels(reason.split(" ")[0]).inc()
        return Ending(code, reason)

    async def _config(self) -> StreamConfig:
        message = await self._next(self.settings.stream_idle_s)
        if isinstance(message, Ending):
            raise _Violation("shutting_down", message.reason, message.code)
        if message is None:
            raise _Violation("no_config", "no config message in time", IDLE)
        if message.get("bytes") is not None:
            raise _Violation("audio_before_config", "send the config message first", POLICY)
        try:
            config = StreamConfig.model_validate_json(message.get("text") or "")
        except ValidationError as err:
            raise _Violation("bad_config", _first_error(err), BAD_CONFIG) from err
        problem = self._outside_limits(config)
        if problem:
            raise _Violation("config_outside_limits", problem, BAD_CONFIG)
        return config

    def _outside_limits(self, config: StreamConfig) -> str | None:
        s = self.settings
        if config.interim_ms is not None and 0 < config.interim_ms < s.min_interim_ms:
            return f"interim_ms under the service's min_interim_ms ({s.min_interim_ms:g})"
        if (config.window_s or 0) > s.window_s or (config.max_segment_s or 0) > s.max_segment_s:
            return (
                "window_s and max_segment_s at most the service's "
                f"({s.window_s:g}, {s.max_segment_s:g})"
            )
        window = config.window_s or s.window_s
        if config.hop_s is not None and config.hop_s < window / 4:
            return "hop_s at least window_s / 4"
        try:
            LiveSession(self.service.pipeline, self.service.queue, config)
        except ValidationError as err:
            return _first_error(err)
        return None

    async def _audio(self, session: LiveSession, data: bytes) -> None:
        if len(data) > self.settings.max_frame_kb * 1024:
            raise _Violation(
                "frame_too_large", f"frames at most {self.settings.max_frame_kb} KB", TOO_BIG
            )
        try:
            await session.push(data)
        except AudioError as err:
            raise _Violation("bad_samples", str(err), BAD_DATA) from err

    # --- events out ------------------------------------------------------------------------

    async def _send_events(self, session: LiveSession) -> None:
        try:
            async for event in session.events():
                if event.type == "utterance.end":  # type: ignore[attr-defined]
                    self.service.metrics.stream_utterances.inc()
                await self._send(event.model_dump_json())
        except (QueueFullError, BatcherClosedError) as err:
            await self._error("overloaded", str(err), TRY_LATER, from_sender=True)
        except WebSocketDisconnect:
            pass
        except Exception as err:
            log.error("a stream's scoring failed", exc_info=err)
            await self._error(
                "model_failed", "inference failed for this stream", INTERNAL, from_sender=True
            )

    async def _send(self, text: str) -> None:
        if self.ws.application_state == WebSocketState.CONNECTED:
            await self.ws.send_text(text)

    async def _error(
        self, code: str, reason: str, close_code: int, from_sender: bool = False
    ) -> None:
        """An error event and its close; no session.ended follows."""
        if self.sender is not None and not from_sender:
            self.sender.cancel()
        self.service.metrics.streams_refused.labels(code).inc()
        event = StreamError(code=code, reason=reason, close_code=close_code)
        await self._send(event.model_dump_json())
        await self._close(close_code, reason)
        if from_sender:
            self.reader.cancel()  # it may wait for room the events will never make
            raise asyncio.CancelledError  # the sender ends here: run() sees no session.ended

    async def _close(self, code: int, reason: str) -> None:
        if self.ws.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):  # the client left
                await self.ws.close(code, reason[:120])  # a close reason is at most 123 bytes


class _Violation(Exception):
    def __init__(self, code: str, reason: str, close_code: int) -> None:
        super().__init__(reason)
        self.code, self.reason, self.close_code = code, reason, close_code


def _message_type(text: str | None) -> str | None:
    try:
        message = json.loads(text or "")
    except ValueError:
        return None
    return message.get("type") if isinstance(message, dict) else None


def _first_error(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(x) for x in first["loc"])
    return f"{where}: {first['msg']}" if where else first["msg"]
