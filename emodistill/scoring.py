"""From one clip's samples to its answer: windows for long audio, probabilities, aggregate.

Clips up to `window_s` are scored whole. Longer ones are cut into windows of `window_s`
every `hop_s` (the last window ends at the clip's end), scored concurrently through the
batcher, and aggregated as the duration-weighted mean of window probabilities.
Knows nothing of HTTP; the batcher is any object with `async submit_many(clips) -> logits`.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

# Long audio is scored in windows of WINDOW_S every HOP_S: IEMOCAP utterances are mostly
# under 10 s. The service's settings and the Python API default to these.
WINDOW_S = 10.0
HOP_S = 5.0
# Windows per model call, and padded audio per call (longest × count): bounds memory.
MAX_BATCH_SIZE = 32
MAX_BATCH_AUDIO_S = 64.0


class Submitter(Protocol):
    async def submit_many(self, clips: list[np.ndarray]) -> list[np.ndarray]: ...


class NonFiniteAnswerError(ArithmeticError):
    """The model answered NaN or infinity for a clip: never sent on as an answer."""


def windows(n_samples: int, rate_hz: int, window_s: float, hop_s: float) -> list[tuple[int, int]]:
    """[(start, end)] sample spans covering the clip; one span if it fits in a window."""
    window, hop = round(window_s * rate_hz), max(1, round(hop_s * rate_hz))
    if n_samples <= window:
        return [(0, n_samples)]
    spans = [(start, start + window) for start in range(0, n_samples - window + 1, hop)]
    if spans[-1][1] < n_samples:
        spans.append((n_samples - window, n_samples))
    return spans


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _named(probs: np.ndarray, labels: list[str]) -> dict[str, float]:
    return {label: float(p) for label, p in zip(labels, probs, strict=True)}


def _answer(
    spans: list[tuple[int, int]], logits: list[np.ndarray], labels: list[str], rate_hz: int
) -> dict[str, Any]:
    """One clip's answer from its windows' logits, each [C]."""
    if not all(np.isfinite(x).all() for x in logits):
        raise NonFiniteAnswerError("the model produced a non-finite output for this clip")
    probs = np.stack([softmax(np.asarray(x, dtype=np.float64)) for x in logits])  # [W, C]
    weights = np.array([b - a for a, b in spans], dtype=np.float64)
    mean = (probs * weights[:, None]).sum(axis=0) / weights.sum()
    answer: dict[str, Any] = {
        "label": labels[int(mean.argmax())],
        "probabilities": _named(mean, labels),
    }
    if len(spans) > 1:
        answer["segments"] = [
            {
                "start_s": a / rate_hz,
                "end_s": b / rate_hz,
                "label": labels[int(p.argmax())],
                "probabilities": _named(p, labels),
            }
            for (a, b), p in zip(spans, probs, strict=True)
        ]
    return answer


def split(
    clips: list[np.ndarray], rate_hz: int, window_s: float, hop_s: float
) -> tuple[list[list[tuple[int, int]]], list[np.ndarray]]:
    """(each clip's window spans, every window's samples in order): what goes to the model."""
    spans = [windows(len(c), rate_hz, window_s, hop_s) for c in clips]
    pieces = [c[a:b] for c, clip_spans in zip(clips, spans, strict=True) for a, b in clip_spans]
    return spans, pieces


def combine(
    spans: list[list[tuple[int, int]]],
    logits: list[np.ndarray],
    labels: list[str],
    rate_hz: int,
) -> list[dict[str, Any]]:
    """Each clip's answer from its windows' logits (in `split`'s order)."""
    answers, start = [], 0
    for clip_spans in spans:
        answers.append(
            _answer(clip_spans, logits[start : start + len(clip_spans)], labels, rate_hz)
        )
        start += len(clip_spans)
    return answers


async def score_clips(
    clips: list[np.ndarray],
    batcher: Submitter,
    labels: list[str],
    rate_hz: int,
    window_s: float,
    hop_s: float,
) -> list[dict[str, Any]]:
    """Each float32 [samples] clip -> {'label', 'probabilities'[, 'segments']}.

    The caller adds `duration_s`: the input's own, measured by the decoder before resampling.

    Every window of every clip goes to the batcher in one call, so a request is admitted
    whole or refused whole. Raises NonFiniteAnswerError rather than answer NaN.
    """
    spans, pieces = split(clips, rate_hz, window_s, hop_s)
    return combine(spans, await batcher.submit_many(pieces), labels, rate_hz)
