"""The live segmenter finds the offline plan: for any speech layout and any frame sizes, its
utterance spans are speech_plan's spans on the whole audio, and it keeps bounded audio.

Speech detection is a stand-in here (each 32 ms chunk's samples carry its speech probability),
so that layouts with every trap (blips, short utterances on either side, speech longer than a
window, speech at the very end) are drawn by the hundred in a second; test_live.py runs the
real detector on real speech.
"""

from __future__ import annotations

import numpy as np
import pytest

from emodistill.live_segments import HOLD_LIMIT, LiveSegmenter
from emodistill.segments import CHUNK_SAMPLES, SegmentOptions, SpeechDetector, speech_plan

RATE = 16_000
OPTIONS = SegmentOptions("speech", window_s=4.0, hop_s=2.0, min_segment_s=1.0, max_segment_s=3.0)


class ChunkValueRun:
    """A VAD run whose probability for a chunk is the chunk's first sample."""

    def __init__(self) -> None:
        self.rest = np.zeros(0, np.float32)

    def push(self, samples: np.ndarray) -> np.ndarray:
        x = np.concatenate([self.rest, samples])
        n = len(x) // CHUNK_SAMPLES
        self.rest = x[n * CHUNK_SAMPLES :]
        return x[: n * CHUNK_SAMPLES : CHUNK_SAMPLES].copy()


class ChunkValueDetector(SpeechDetector):
    def __init__(self) -> None:  # no model: see ChunkValueRun
        pass

    def run(self) -> ChunkValueRun:  # type: ignore[override]
        return ChunkValueRun()


def layout(rng: np.random.Generator) -> np.ndarray:
    """Alternating quiet and speech of random lengths (chunks), as per-sample probabilities."""
    probs: list[float] = []
    while len(probs) < 600:
        probs += [0.05] * int(rng.choice([2, 5, 12, 40, 90]))  # pauses short and long
        speech = int(rng.choice([3, 10, 25, 40, 80, 200]))  # blips to speech past a window
        probs += list(rng.choice([0.9, 0.4], speech, p=[0.85, 0.15]))  # dips inside speech
    if rng.random() < 0.5:
        probs += [0.9] * 30  # speech up to the very end
    samples = np.repeat(np.array(probs, np.float32), CHUNK_SAMPLES)
    return samples[: len(samples) - int(rng.integers(0, CHUNK_SAMPLES))]


def run(samples: np.ndarray, sizes: np.ndarray) -> tuple[list[tuple[int, int]], LiveSegmenter]:
    seg = LiveSegmenter(OPTIONS, interim_samples=RATE, detector=ChunkValueDetector())
    spans, at, kept = [], 0, 0
    for size in sizes:
        steps = seg.push(samples[at : at + size])
        at += size
        spans += [(s.start, s.end) for s in steps if s.kind == "utterance"]
        kept = max(kept, len(seg.buffer))
        if at >= len(samples):
            break
    spans += [(s.start, s.end) for s in seg.finish() if s.kind == "utterance"]
    seg.max_kept = kept  # type: ignore[attr-defined]
    return spans, seg


@pytest.mark.parametrize("seed", range(40))
def test_live_spans_are_the_offline_plan(seed):
    rng = np.random.default_rng(seed)
    samples = layout(rng)
    sizes = rng.integers(1, 6000, size=len(samples))
    spans, seg = run(samples, sizes)
    offline = speech_plan(samples, RATE, OPTIONS, ChunkValueDetector())
    if offline.mode == "speech":
        assert spans == offline.spans
        assert seg.speech_s == offline.speech_s
    # Memory: the held regions, the open speech's window, and a frame.
    bound = (HOLD_LIMIT + 1) * OPTIONS.max_segment_s * RATE + OPTIONS.window_s * RATE + 6000
    assert seg.max_kept <= bound  # type: ignore[attr-defined]


def test_a_short_utterance_waits_for_its_next_neighbour():
    # 2 s of speech, 1.2 s pause, a 0.5 s blip, 0.4 s pause, 1.5 s of speech: the blip is
    # nearer the next utterance, so it can only be placed once that one is heard.
    chunk_s = CHUNK_SAMPLES / RATE
    parts = [(0.5, 0.05), (2.0, 0.9), (1.2, 0.05), (0.5, 0.9), (0.4, 0.05), (1.5, 0.9)]
    parts += [(4.0, 0.05)]
    probs = np.concatenate([np.full(round(s / chunk_s), p, np.float32) for s, p in parts])
    samples = np.repeat(probs, CHUNK_SAMPLES)
    seg = LiveSegmenter(OPTIONS, detector=ChunkValueDetector())
    emitted = []  # (span, samples heard when it was handed out)
    for at in range(0, len(samples), 1600):
        steps = seg.push(samples[at : at + 1600])
        emitted += [((s.start, s.end), seg.n) for s in steps if s.kind == "utterance"]
    emitted += [((s.start, s.end), seg.n) for s in seg.finish() if s.kind == "utterance"]
    offline = speech_plan(samples, RATE, OPTIONS, ChunkValueDetector())
    assert [span for span, _ in emitted] == offline.spans and len(offline.spans) == 2
    blip_start, next_start = round(3.7 * RATE), round(4.6 * RATE)
    (_, first_at), ((joined_start, _), joined_at) = emitted
    assert joined_start < blip_start  # joined its next neighbour
    assert joined_at > next_start  # and was handed out only once that one was heard
    assert first_at < next_start + RATE  # the first utterance did not wait for the end
