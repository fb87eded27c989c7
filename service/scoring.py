"""From one clip's samples to its answer: windows for long audio, probabilities, aggregate.

Clips up to `window_s` are scored whole. Longer ones are cut into windows of `window_s`
every `hop_s` (the last window ends at the clip's end), scored concurrently through the
batcher, and aggregated as the duration-weighted mean of window probabilities.
Knows nothing of HTTP; the batcher is any object with `async submit(clip) -> logits`.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import numpy as np


class Submitter(Protocol):
    async def submit(self, clip: np.ndarray) -> np.ndarray: ...


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


async def score_clip(
    samples: np.ndarray,
    batcher: Submitter,
    labels: list[str],
    rate_hz: int,
    window_s: float,
    hop_s: float,
) -> dict[str, Any]:
    """{'label', 'probabilities', 'duration_s'[, 'segments']} for float32 [samples]."""
    spans = windows(len(samples), rate_hz, window_s, hop_s)
    logits = await asyncio.gather(*(batcher.submit(samples[a:b]) for a, b in spans))
    probs = np.stack([softmax(np.asarray(x, dtype=np.float64)) for x in logits])  # [W, C]
    weights = np.array([b - a for a, b in spans], dtype=np.float64)
    mean = (probs * weights[:, None]).sum(axis=0) / weights.sum()
    answer: dict[str, Any] = {
        "label": labels[int(mean.argmax())],
        "probabilities": _named(mean, labels),
        "duration_s": len(samples) / rate_hz,
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
