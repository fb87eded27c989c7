"""`WS /stream` through the multi-worker layout (`python -m service --workers 2`, the model in
its own process): the offline answer still; SIGTERM ends an open stream with session.ended
and close 1001 once the grace period is over."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import numpy as np
import pytest
from websockets.asyncio.client import connect

import emodistill
from emodistill.live import SessionEnded, UtteranceEnd
from tests.service.test_processes import service
from tests.service.test_stream import (
    assert_same_answer,
    assert_segments_equal,
    random_frames,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def conversation(require_espeak):
    from tests.emodistill.test_segments import make_conversation

    return make_conversation()[0]


def test_streams_through_two_workers_are_the_offline_answer_and_sigterm_ends_them(
    bundle, conversation
):
    flags = ["--model", str(bundle), "--workers", "2", "--shutdown-grace-s", "1"]
    with service([*flags, "--api-key", "k"]) as (process, url):
        offline = predict_with_key(url, conversation)
        ws = url.replace("http://", "ws://") + "/stream"

        async def one(seed: int) -> list:
            frames = random_frames(conversation, seed)
            return [e async for e in emodistill.stream(ws, frames, api_key="k", encoding="f32le")]

        async def both() -> list[list]:
            return list(await asyncio.gather(one(3), one(4)))

        for events in asyncio.run(both()):
            ends = [e for e in events if isinstance(e, UtteranceEnd)]
            assert_segments_equal(ends, offline["segments"])
            assert isinstance(events[-1], SessionEnded) and events[-1].prediction is not None
            assert_same_answer(events[-1].prediction.model_dump(mode="json"), offline)

        async def open_then_terminate() -> tuple[dict, int | None, float]:
            protocols = ["emodistill.v1", "emodistill.bearer.k"]
            async with connect(ws, subprotocols=protocols) as client:  # type: ignore[list-item]
                await client.send('{"type": "config", "encoding": "f32le"}')
                await client.recv()
                for second in range(8):  # 8 s, a second a frame
                    piece = conversation[second * 16_000 : (second + 1) * 16_000]
                    await client.send(piece.astype("<f4").tobytes())
                signalled = time.monotonic()
                process.send_signal(signal.SIGTERM)
                last = None
                async for message in client:
                    last = message
                took = time.monotonic() - signalled
                return json.loads(last or "{}"), client.close_code, took

        ended, code, took = asyncio.run(open_then_terminate())
        assert ended["type"] == "session.ended" and ended["reason"] == "server shutting down"
        assert ended["prediction"] is not None  # what it heard, answered
        assert code == 1001 and took >= 1.0  # after the grace period
        assert process.wait(timeout=60) == 0


def predict_with_key(url: str, samples: np.ndarray) -> dict:
    import io

    import httpx
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, samples, 16_000, format="WAV", subtype="FLOAT")
    answer = httpx.post(
        url + "/predict",
        content=buffer.getvalue(),
        headers={"Content-Type": "audio/wav", "Authorization": "Bearer k"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()
