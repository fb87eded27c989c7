"""From clips and their plans to answers: what goes to the model, probabilities, aggregate.

A clip's plan (`segments.ClipPlan`) names the spans the model scores: the whole clip, fixed
windows, or the utterances where speech is. Every span's logits become probabilities (divided
by the bundle's calibration temperature first), and the clip's answer is their mean weighted
by each span's duration, so silence, never scored, weighs nothing. A bundle with dimensions
answers rows of [C + D]: the first C are logits, the rest the dimensions (in the bundle's
order), aggregated by the same weights; a dimensions-only bundle (no labels) answers only
those, with no label and no probabilities. Pure arithmetic: the pipeline (emodistill.pipeline)
calls it; knows nothing of models, queues or HTTP.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from emodistill.errors import NonFiniteAnswerError
from emodistill.segments import ClipPlan


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Logits [..., C] -> calibrated probabilities [..., C] (float64)."""
    return softmax(np.asarray(logits, dtype=np.float64) / temperature)


def _named(probs: np.ndarray, labels: list[str]) -> dict[str, float] | None:
    """Values by name; None when there are no names (an output the bundle lacks)."""
    if not labels:
        return None
    return {label: float(p) for label, p in zip(labels, probs, strict=True)}


def _top(probs: np.ndarray, labels: list[str]) -> str | None:
    return labels[int(probs.argmax())] if labels else None


def _answer(
    plan: ClipPlan,
    outputs: list[np.ndarray],
    labels: list[str],
    rate_hz: int,
    temperature: float,
    dimensions: list[str],
) -> dict[str, Any]:
    """One clip's answer from its spans' outputs, each [C + len(dimensions)]."""
    if not all(np.isfinite(x).all() for x in outputs):
        raise NonFiniteAnswerError("the model produced a non-finite output for this clip")
    rows = np.stack(outputs)  # [S, C + D]
    n = len(labels)
    probs = probabilities(rows[:, :n], temperature) if n else rows[:, :0]  # [S, C]
    weights = np.array([b - a for a, b in plan.spans], dtype=np.float64)
    mean = (probs * weights[:, None]).sum(axis=0) / weights.sum()
    dims = rows[:, n : n + len(dimensions)].astype(np.float64)  # [S, D]
    mean_dims = (dims * weights[:, None]).sum(axis=0) / weights.sum()
    answer: dict[str, Any] = {
        "label": _top(mean, labels),
        "probabilities": _named(mean, labels),
        "dimensions": _named(mean_dims, dimensions),
        "segmentation": plan.mode,
        "speech_s": plan.speech_s,
        "segments": None,
    }
    if plan.mode != "whole":
        answer["segments"] = [
            {
                "start_s": a / rate_hz,
                "end_s": b / rate_hz,
                "label": _top(p, labels),
                "probabilities": _named(p, labels),
                "dimensions": _named(d, dimensions),
            }
            for (a, b), p, d in zip(plan.spans, probs, dims, strict=True)
        ]
    return answer


def split(clips: list[np.ndarray], plans: list[ClipPlan]) -> list[np.ndarray]:
    """Every planned span's samples, clip after clip: what goes to the model."""
    return [c[a:b] for c, plan in zip(clips, plans, strict=True) for a, b in plan.spans]


def combine(
    plans: list[ClipPlan],
    outputs: list[np.ndarray],
    labels: list[str],
    rate_hz: int,
    temperature: float = 1.0,
    dimensions: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Each clip's answer from its spans' outputs (in `split`'s order): logits [C], or logits
    then dimensions [C + D] for a bundle whose `dimensions` names D of them."""
    answers, start = [], 0
    for plan in plans:
        end = start + len(plan.spans)
        answer = _answer(
            plan, outputs[start:end], labels, rate_hz, temperature, list(dimensions or [])
        )
        answers.append(answer)
        start = end
    return answers
