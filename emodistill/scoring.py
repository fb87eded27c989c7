"""From clips and their plans to answers: what goes to the model, probabilities, aggregate.

A clip's plan (`segments.ClipPlan`) names the spans the model scores: the whole clip, fixed
windows, or the utterances where speech is. Every span's logits become probabilities (divided
by the bundle's calibration temperature first), and the clip's answer is their mean weighted
by each span's duration, so silence, never scored, weighs nothing. Knows nothing of HTTP; the
batcher is any object with `async submit_many(clips) -> logits`.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from emodistill.segments import ClipPlan, window_plan

# Long audio is scored in windows of WINDOW_S every HOP_S where no speech detection runs
# (and within a stretch of speech longer than MAX_SEGMENT_S): IEMOCAP utterances are mostly
# under 10 s. Detected utterances are at least MIN_SEGMENT_S long where a neighbour allows.
# The service's settings and the Python API default to these.
WINDOW_S = 10.0
HOP_S = 5.0
MIN_SEGMENT_S = 1.0
MAX_SEGMENT_S = WINDOW_S
# Windows per model call, and padded audio per call (longest × count): bounds memory.
MAX_BATCH_SIZE = 32
MAX_BATCH_AUDIO_S = 64.0


class Submitter(Protocol):
    async def submit_many(self, clips: list[np.ndarray]) -> list[np.ndarray]: ...


class NonFiniteAnswerError(ArithmeticError):
    """The model answered NaN or infinity for a clip: never sent on as an answer."""


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Logits [..., C] -> calibrated probabilities [..., C] (float64)."""
    return softmax(np.asarray(logits, dtype=np.float64) / temperature)


def _named(probs: np.ndarray, labels: list[str]) -> dict[str, float]:
    return {label: float(p) for label, p in zip(labels, probs, strict=True)}


def _answer(
    plan: ClipPlan, logits: list[np.ndarray], labels: list[str], rate_hz: int, temperature: float
) -> dict[str, Any]:
    """One clip's answer from its spans' logits, each [C]."""
    if not all(np.isfinite(x).all() for x in logits):
        raise NonFiniteAnswerError("the model produced a non-finite output for this clip")
    probs = probabilities(np.stack(logits), temperature)  # [S, C]
    weights = np.array([b - a for a, b in plan.spans], dtype=np.float64)
    mean = (probs * weights[:, None]).sum(axis=0) / weights.sum()
    answer: dict[str, Any] = {
        "label": labels[int(mean.argmax())],
        "probabilities": _named(mean, labels),
        "segmentation": plan.mode,
        "speech_s": plan.speech_s,
        "segments": None,
    }
    if plan.mode != "whole":
        answer["segments"] = [
            {
                "start_s": a / rate_hz,
                "end_s": b / rate_hz,
                "label": labels[int(p.argmax())],
                "probabilities": _named(p, labels),
            }
            for (a, b), p in zip(plan.spans, probs, strict=True)
        ]
    return answer


def split(clips: list[np.ndarray], plans: list[ClipPlan]) -> list[np.ndarray]:
    """Every planned span's samples, clip after clip: what goes to the model."""
    return [c[a:b] for c, plan in zip(clips, plans, strict=True) for a, b in plan.spans]


def combine(
    plans: list[ClipPlan],
    logits: list[np.ndarray],
    labels: list[str],
    rate_hz: int,
    temperature: float = 1.0,
) -> list[dict[str, Any]]:
    """Each clip's answer from its spans' logits (in `split`'s order)."""
    answers, start = [], 0
    for plan in plans:
        end = start + len(plan.spans)
        answers.append(_answer(plan, logits[start:end], labels, rate_hz, temperature))
        start = end
    return answers


def window_plans(
    clips: list[np.ndarray], rate_hz: int, window_s: float, hop_s: float
) -> list[ClipPlan]:
    return [window_plan(len(c), rate_hz, window_s, hop_s) for c in clips]


async def score_clips(
    clips: list[np.ndarray],
    plans: list[ClipPlan],
    batcher: Submitter,
    labels: list[str],
    rate_hz: int,
    temperature: float = 1.0,
) -> list[dict[str, Any]]:
    """Each float32 [samples] clip and its plan -> {'label', 'probabilities', 'segmentation',
    'speech_s', 'segments'}. The caller adds `duration_s` (the decoder's, before resampling)
    and the model block.

    Every span of every clip goes to the batcher in one call, so a request is admitted whole
    or refused whole. Raises NonFiniteAnswerError rather than answer NaN.
    """
    pieces = split(clips, plans)
    return combine(plans, await batcher.submit_many(pieces), labels, rate_hz, temperature)
