"""The frames between HTTP workers and the model process (service/model_process.py), over a
Unix socket: one home for the format both ends read and write.

A frame is `!II` (header bytes, payload bytes), a JSON header, then the payload. Requests:
`{"op": "submit", "id": N, "lengths": [...]}` with the clips' float32 samples back to back,
and `{"op": "cancel", "id": N}` when the request's caller has left. Answers: `{"id": N,
"shape": [B, W]}` with float32 outputs (logits, W = C; or the logits then the dimensions,
W = C + D: the model process never reads which), or `{"id": N, "error": KIND, ...}` naming the
batcher's exception (ERRORS). The model process opens each connection with a `hello` frame
(the bundle's metadata, the provider and file it serves). The worker's watchdog sends
`{"op": "ping"}`; the model process answers `{"op": "pong", "busy_s": S}` at once, S being
how long its model call in progress has run (0: none).

Both ends are this project's own processes on one host: the limits below guard against a
bug, not an attacker (who cannot reach the socket).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import struct
from typing import Any, cast

import numpy as np

from .batcher import BatcherClosedError, QueueFullError, RequestTooLargeError

log = logging.getLogger(__name__)
PREFIX = struct.Struct("!II")
SAMPLE = np.dtype("<f4")
MAX_HEADER_BYTES = 1 << 20
# A frame's payload: at most a full queue of max_audio_s clips is admitted by the HTTP side.
MAX_PAYLOAD_BYTES = 1 << 34
Header = dict[str, Any]


def frame(header: Header, payload: bytes = b"") -> bytes:
    encoded = json.dumps(header, separators=(",", ":")).encode()
    return PREFIX.pack(len(encoded), len(payload)) + encoded + payload


class FrameBuffer:
    """Frames out of a byte stream that arrives in pieces (asyncio.Protocol.data_received):
    parsed in place, with no await per frame."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._needed = 0  # bytes the incomplete frame in the buffer needs in all

    def feed(self, data: bytes) -> list[tuple[Header, bytes]]:
        """The frames `data` completes (raises ValueError on a frame over the limits)."""
        if self._buffer:
            # A large frame arrives in many reads: append, and parse once it is whole.
            self._buffer += data
            if len(self._buffer) < self._needed:
                return []
            source = bytes(self._buffer)
        else:
            source = data  # most reads hold whole frames: parse them from `data` itself
        frames, start, end = [], 0, len(source)
        self._needed = 0
        view = memoryview(source)
        while end - start >= PREFIX.size:
            header_bytes, payload_bytes = PREFIX.unpack_from(view, start)
            if header_bytes > MAX_HEADER_BYTES or payload_bytes > MAX_PAYLOAD_BYTES:
                raise ValueError(f"frame too large: {header_bytes} + {payload_bytes} bytes")
            payload_at = start + PREFIX.size + header_bytes
            if end < payload_at + payload_bytes:
                self._needed = payload_at + payload_bytes - start
                break
            header = json.loads(source[start + PREFIX.size : payload_at])
            frames.append((header, source[payload_at : payload_at + payload_bytes]))
            start = payload_at + payload_bytes
        self._buffer = bytearray(source[start:])
        return frames


class FramedProtocol(asyncio.Protocol):
    """A connection of frames, both ends' base: `on_frames` gets each read's whole frames;
    a frame over the limits closes the connection."""

    peer = "the other process"  # for the log

    def __init__(self) -> None:
        self.frames = FrameBuffer()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.frames.feed(data)
        except ValueError:
            log.exception("unreadable frame from %s; closing the connection", self.peer)
            if self.transport is not None:
                self.transport.close()
            return
        self.on_frames(frames)

    def on_frames(self, frames: list[tuple[Header, bytes]]) -> None:
        raise NotImplementedError

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


def pack_clips(clips: list[np.ndarray]) -> tuple[list[int], bytes]:
    """float32 [T_i] clips -> (their lengths, their samples back to back)."""
    return [len(c) for c in clips], b"".join(np.asarray(c, SAMPLE).tobytes() for c in clips)


def unpack_clips(lengths: list[int], payload: bytes) -> list[np.ndarray]:
    samples = np.frombuffer(payload, SAMPLE)
    if sum(lengths) != len(samples) or any(n < 0 for n in lengths):
        raise ValueError(f"lengths {sum(lengths)} do not match {len(samples)} samples")
    ends = itertools.accumulate(lengths)
    return [samples[end - n : end] for n, end in zip(lengths, ends, strict=True)]


def error_header(request_id: int, exc: BaseException) -> Header:
    """The answer that carries `exc` to the HTTP worker (see `raise_error`)."""
    if isinstance(exc, QueueFullError):
        return {"id": request_id, "error": "queue_full", "retry_after_s": exc.retry_after_s}
    if isinstance(exc, RequestTooLargeError):
        return {"id": request_id, "error": "too_large", "clips": exc.clips, "max": exc.max_queue}
    if isinstance(exc, BatcherClosedError):
        return {"id": request_id, "error": "closed", "message": str(exc)}
    return {"id": request_id, "error": "failed", "message": f"{type(exc).__name__}: {exc}"}


class ModelFailedError(RuntimeError):
    """The model's batch failed in the model process (the HTTP worker answers 500)."""


def raised(header: Header) -> BaseException:
    """The exception an error answer stands for: the batcher's own, so routes handle the
    worker's answers exactly as they handle a batcher in their own process."""
    kind = header["error"]
    if kind == "queue_full":
        return QueueFullError(int(header["retry_after_s"]))
    if kind == "too_large":
        return RequestTooLargeError(int(header["clips"]), int(header["max"]))
    if kind == "closed":
        return BatcherClosedError(str(header.get("message", "")))
    return ModelFailedError(str(header.get("message", "")))
