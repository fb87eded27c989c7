"""The one map from what went wrong to what the client is answered.

The runtime raises errors that say what went wrong (emodistill.errors), the queue says when it
cannot take work (service/batcher.py), the v2 parser when a request is malformed; `ERRORS`
gives each class its status, its message and, where a retry helps, Retry-After. The handlers
registered here answer them all as JSON: the Open Inference Protocol's `{"error": ...}` on its
/v2 routes, FastAPI's `{"detail": ...}` elsewhere. Anything else a route raises is a JSON 500
that says nothing of the code (the traceback goes to the log, once, and is counted).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emodistill.errors import (
    AudioFormatError,
    AudioTooLargeError,
    AudioTooLongError,
    AudioTooShortError,
    BadSamplesError,
    CorruptAudioError,
    NonFiniteAnswerError,
    NotAudioError,
    UnsupportedCodecError,
)

from .batcher import BatcherClosedError, QueueFullError, RequestTooLargeError
from .model_client import ModelTimeoutError, ModelUnresponsiveError
from .v2_request import V2RequestError
from .wire import ModelFailedError

log = logging.getLogger("emodistill.service")


@dataclass(frozen=True)
class Answer:
    """How one class of error is answered: `detail` None says the error's own message."""

    status: int
    detail: Callable[[BaseException], str] | str | None = None
    retry_after_s: Callable[[BaseException], int] | None = None


def _too_many_windows(err: BaseException) -> str:
    assert isinstance(err, RequestTooLargeError)
    return (
        f"this request needs {err.clips} model calls (windows of window_s), more than the "
        f"whole queue holds ({err.max_queue}, max_queue): send shorter audio"
    )


def _queue_retry_s(err: BaseException) -> int:
    assert isinstance(err, QueueFullError)
    return math.ceil(err.retry_after_s)


def _model_retry_s(err: BaseException) -> int:
    assert isinstance(err, ModelUnresponsiveError)
    return int(err.retry_after_s)


ERRORS: dict[type[Exception], Answer] = {
    NotAudioError: Answer(415),
    UnsupportedCodecError: Answer(415),
    CorruptAudioError: Answer(400),
    AudioTooLongError: Answer(413),
    AudioTooLargeError: Answer(413),
    AudioTooShortError: Answer(422),
    AudioFormatError: Answer(422),
    BadSamplesError: Answer(422),
    RequestTooLargeError: Answer(413, _too_many_windows),
    QueueFullError: Answer(503, "too many requests waiting; retry later", _queue_retry_s),
    BatcherClosedError: Answer(503, "shutting down", lambda _: 5),
    NonFiniteAnswerError: Answer(500, "the model produced a non-finite answer for this input"),
    ModelFailedError: Answer(500, "inference failed for this request"),
    # The model process's watchdog (service/model_client.py): stalled now, or for too long.
    ModelUnresponsiveError: Answer(503, "the model is not answering; retry later", _model_retry_s),
    ModelTimeoutError: Answer(504, "the model stopped answering (model_timeout_s)"),
}
INTERNAL_ERROR = "internal error; the service logged it"


def answer_for(err: BaseException) -> Answer | None:
    """The entry of `err`'s class or its nearest mapped base class; None: not ours."""
    for cls in type(err).__mro__:
        if cls in ERRORS:
            return ERRORS[cls]
    return None


def error_body(path: str, message: str) -> dict[str, str]:
    """The error object: the Open Inference Protocol's `{"error": ...}` on its /v2 routes
    (its clients read nothing else), FastAPI's `{"detail": ...}` elsewhere."""
    return {"error": message} if path.startswith("/v2") else {"detail": message}


def _respond(
    request: Request, status: int, message: str, headers: Mapping[str, str] | None
) -> Response:
    return JSONResponse(error_body(request.url.path, message), status, headers=headers)


async def _mapped(request: Request, err: Exception) -> Response:
    answer = answer_for(err)
    if answer is None:
        return await _unexpected(request, err)
    if isinstance(err, NonFiniteAnswerError):
        log.error("the model answered NaN or infinity; the request got 500")
        request.app.state.service.metrics.nonfinite.inc()
    if answer.detail is None:
        message = str(err)
    else:
        message = answer.detail if isinstance(answer.detail, str) else answer.detail(err)
    retry = answer.retry_after_s
    headers = None if retry is None else {"Retry-After": str(retry(err))}
    return _respond(request, answer.status, message, headers)


async def _v2_request(request: Request, err: Exception) -> Response:
    assert isinstance(err, V2RequestError)
    return _respond(request, err.status_code, err.detail, None)


async def _http(request: Request, err: Exception) -> Response:
    assert isinstance(err, HTTPException)
    return _respond(request, err.status_code, str(err.detail), err.headers)


async def _unexpected(request: Request, err: Exception) -> Response:
    """Any other exception: logged once with its traceback, counted, answered as JSON."""
    log.error("unexpected error on %s", request.url.path, exc_info=err)
    service = getattr(request.app.state, "service", None)
    if service is not None:
        service.metrics.internal_errors.inc()
    return _respond(request, 500, INTERNAL_ERROR, None)


class CatchAll:
    """The last resort, inside every other middleware: an exception no handler took becomes
    a JSON 500 and the request ends normally, so the server neither logs it again nor drops
    the keep-alive connection. (Starlette's own 500 handler re-raises after answering.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def noting_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, noting_send)
        except Exception as err:
            if started:
                raise  # half an answer is out: only the server can end it
            response = await _unexpected(Request(scope, receive), err)
            await response(scope, receive, send)


def install(app: FastAPI) -> None:
    """Registers every handler on `app`, and the catch-all (add it before other middleware,
    so that it runs innermost)."""
    for cls in ERRORS:
        app.add_exception_handler(cls, _mapped)
    app.add_exception_handler(V2RequestError, _v2_request)
    app.add_exception_handler(HTTPException, _http)
    app.add_middleware(CatchAll)
