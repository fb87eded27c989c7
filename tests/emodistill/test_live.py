"""The live session in-process (`load(bundle).stream()`, `python -m emodistill.listen`): the
real detector on real speech, answered as `predict` answers the whole recording."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import numpy as np
import pytest

import emodistill
from emodistill.live import Interim, SessionEnded, UtteranceEnd
from tests.emodistill.test_segments import make_conversation

PROBABILITY_TOLERANCE = 1e-5  # float32 logits in other batches, softmax in float64


@pytest.fixture(scope="module")
def conversation(require_espeak) -> np.ndarray:
    return make_conversation()[0]


def pcm_frames(samples: np.ndarray, seed: int) -> list[bytes]:
    data = samples.astype("<f4").tobytes()
    cuts = np.sort(np.random.default_rng(seed).integers(0, len(data), 200))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def test_stream_in_process_is_predict(bundle, conversation):
    rec = emodistill.load(bundle, device="cpu")
    offline = rec.predict(conversation)

    async def events() -> list:
        return [e async for e in rec.stream(pcm_frames(conversation, 0), encoding="f32le")]

    got = asyncio.run(events())
    ends = [e for e in got if isinstance(e, UtteranceEnd)]
    assert offline.segments is not None and len(ends) == len(offline.segments) == 5
    for end, seg in zip(ends, offline.segments, strict=True):
        assert (end.start_s, end.end_s, end.label) == (seg.start_s, seg.end_s, seg.label)
        for k, p in seg.probabilities.items():
            assert end.probabilities[k] == pytest.approx(p, abs=PROBABILITY_TOLERANCE)
    ended = got[-1]
    assert isinstance(ended, SessionEnded) and ended.prediction is not None
    answer = ended.prediction
    assert (answer.label, answer.speech_s, answer.duration_s) == (
        offline.label,
        offline.speech_s,
        offline.duration_s,
    )
    for k, p in offline.probabilities.items():
        assert answer.probabilities[k] == pytest.approx(p, abs=PROBABILITY_TOLERANCE)


@pytest.mark.parametrize("which", ["bundle_with_dimensions", "dimensions_only_bundle"])
def test_stream_events_carry_the_dimensions(which, request, conversation):
    """Every interim and utterance.end has the dimensions of the span, as /predict's segment
    has them; a dimensions-only bundle's events have no label or probabilities at all."""
    rec = emodistill.load(request.getfixturevalue(which), device="cpu")
    offline = rec.predict(conversation)

    async def events() -> list:
        frames = pcm_frames(conversation, 1)
        return [e async for e in rec.stream(frames, encoding="f32le", interim_ms=500)]

    got = asyncio.run(events())
    ends = [e for e in got if isinstance(e, UtteranceEnd)]
    interims = [e for e in got if isinstance(e, Interim)]
    assert offline.segments is not None and len(ends) == len(offline.segments) and interims
    for end, seg in zip(ends, offline.segments, strict=True):
        assert end.dimensions is not None and seg.dimensions is not None
        for name, value in seg.dimensions.model_dump().items():
            assert getattr(end.dimensions, name) == pytest.approx(value, abs=PROBABILITY_TOLERANCE)
    assert all(e.dimensions is not None for e in interims)
    ended = got[-1]
    assert isinstance(ended, SessionEnded) and ended.prediction is not None
    assert ended.prediction.dimensions is not None
    categories = {"label", "probabilities"}
    if not rec.labels:
        for event in [*ends, *interims, ended]:
            text = event.model_dump_json()
            assert not categories & set(json.loads(text)), text
    else:
        assert all(categories <= set(json.loads(e.model_dump_json())) for e in ends)


def test_listen_prints_a_line_per_event_from_stdin(bundle, conversation):
    pcm = (np.clip(conversation, -1, 1) * 32767).astype("<i2").tobytes()
    run = subprocess.run(
        [sys.executable, "-m", "emodistill.listen", "-", "--bundle", str(bundle)],
        input=pcm,
        capture_output=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    events = [json.loads(line) for line in run.stdout.decode().splitlines()]
    types = [e["type"] for e in events]
    assert types[0] == "session.started" and types[-1] == "session.ended"
    assert types.count("utterance.end") == 5


def test_listen_says_what_went_wrong_in_one_line(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "emodistill.listen", str(tmp_path / "nope.wav"), "--url", "ws://x"],
        capture_output=True,
        timeout=60,
    )
    assert run.returncode == 1
    assert run.stderr.decode().count("\n") == 1 and "emodistill listen:" in run.stderr.decode()
