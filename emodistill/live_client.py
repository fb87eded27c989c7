"""`emodistill.stream(...)`: a live stream's events, from a server or in-process.

    async for event in emodistill.stream("ws://host:8000/stream", "call.wav", realtime=True):
        print(event.type, getattr(event, "label", ""))
    async for event in emodistill.stream(emodistill.load(bundle), frames_of_pcm):
        ...

The source is a file (decoded at the model's rate and sent as float32, at real time or as
fast as the server reads), float32 samples, or an iterable (sync or async) of raw frames in
the configuration's encoding. The target is a `ws://` or `wss://` URL (the `websockets`
package, which the service extra brings), or a `Recognizer` (the same session in this
process: `load(bundle).stream(frames)`). Events are the typed models of emodistill.live.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel

from emodistill.audio import SAMPLE_RATE_HZ, load_audio
from emodistill.live import EVENT, SAMPLE_BYTES, SessionEnded, StreamConfig, StreamError

if TYPE_CHECKING:
    from emodistill.recognizer import Recognizer

Source = str | Path | np.ndarray | Iterable[bytes] | AsyncIterable[bytes]
# The subprotocol every client offers; the key travels as a second one, never in the URL.
SUBPROTOCOL = "emodistill.v1"
KEY_PREFIX = "emodistill.bearer."


async def stream(
    target: str | Recognizer,
    source: Source,
    *,
    realtime: bool = False,
    frame_ms: float = 100.0,
    api_key: str | None = None,
    config: StreamConfig | None = None,
    **config_fields: Any,
) -> AsyncIterator[BaseModel]:
    """Every event of one stream, session.ended (or an error event) last."""
    config = config or StreamConfig(**config_fields)
    if isinstance(source, str | Path | np.ndarray):
        samples = source if isinstance(source, np.ndarray) else load_audio(source)
        config = config.model_copy(update={"encoding": "f32le", "sample_rate_hz": SAMPLE_RATE_HZ})
        source = _pieces(np.asarray(samples, "<f4").tobytes(), config, frame_ms)
    frames = _paced(source, config, realtime)
    if isinstance(target, str):
        async for event in _remote(target, frames, config, api_key):
            yield event
    else:
        async for event in target.stream(frames, config):
            yield event


def _pieces(data: bytes, config: StreamConfig, frame_ms: float) -> Iterable[bytes]:
    step = SAMPLE_BYTES[config.encoding] * max(1, round(config.sample_rate_hz * frame_ms / 1000))
    return (data[i : i + step] for i in range(0, len(data), step))


async def _paced(
    frames: Iterable[bytes] | AsyncIterable[bytes], config: StreamConfig, realtime: bool
) -> AsyncIterator[bytes]:
    """The frames, each no sooner than its audio would have been spoken when `realtime`."""
    bytes_per_s = SAMPLE_BYTES[config.encoding] * config.sample_rate_hz
    sent, start = 0, time.monotonic()
    async for frame in _each(frames):
        # As fast as allowed still yields between frames: a send that fits the socket's
        # buffer never waits, and one stream would hold up the others of this process.
        wait_s = start + sent / bytes_per_s - time.monotonic() if realtime else 0.0
        await asyncio.sleep(max(0.0, wait_s))
        sent += len(frame)
        yield frame


async def _each(frames: Iterable[bytes] | AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    if isinstance(frames, AsyncIterable):
        async for frame in frames:
            yield frame
    else:
        for frame in frames:
            yield frame


async def _remote(
    url: str, frames: AsyncIterator[bytes], config: StreamConfig, api_key: str | None
) -> AsyncIterator[BaseModel]:
    from websockets.asyncio.client import connect

    protocols = [SUBPROTOCOL, *([KEY_PREFIX + api_key] if api_key else [])]
    async with connect(url, subprotocols=protocols, max_size=None) as ws:  # type: ignore[arg-type]
        await ws.send(config.model_dump_json(exclude_none=True))

        async def send_all() -> None:
            async for frame in frames:
                await ws.send(frame)
            await ws.send(json.dumps({"type": "end"}))

        sender = asyncio.ensure_future(send_all())
        try:
            async for message in ws:
                event = EVENT.validate_json(message)
                yield event
                if isinstance(event, SessionEnded | StreamError):
                    return
        finally:
            sender.cancel()
            if sender.done() and not sender.cancelled():
                sender.exception()  # a send after the server closed: the events say why


async def run_local(
    recognizer: Recognizer, frames: AsyncIterable[bytes] | Iterable[bytes], config: StreamConfig
) -> AsyncIterator[BaseModel]:
    """One stream through a loaded model in this process (Recognizer.stream)."""
    from emodistill.live import BackendQueue, LiveSession

    pipeline = recognizer.pipeline
    session = LiveSession(pipeline, BackendQueue(pipeline, recognizer.backend), config)

    async def feed() -> None:
        try:
            async for frame in _each(frames):
                await session.push(frame)
            await session.finish("end")
        except Exception as err:
            await session.fail(err)

    feeder = asyncio.ensure_future(feed())
    try:
        yield session.started({})
        async for event in session.events():
            yield event
    finally:
        feeder.cancel()
