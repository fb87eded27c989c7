"""Parity figures: ONNX vs PyTorch, batched vs alone, fp16 and int8 vs fp32.

Every figure covers every output of the graph: the logits (as probabilities) and the
dimensions (max |Δ| on their own (0, 1) scale), each where the graph has it (a graph may
have logits, dimensions or both).

Probe clips are synthetic but speech-like (a harmonic voice with a wandering pitch,
syllable-rate loudness and noise), so checks need no corpus. Every figure is a plain
number; `export/bundle_writer.py` compares them with the limits. Torch-free apart from
the reference forward it is handed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from emodistill.audio import pad_batch as pad
from emodistill.bundle import ATTENTION_MASK, DIMENSIONS, INPUT_VALUES, LOGITS
from emodistill.runtime import make_session
from emodistill.scoring import softmax

Logits = np.ndarray  # [N, C] float32
Outputs = dict[str, np.ndarray]  # output name -> [N, width] float32, in the graph's order


def probe_clips(
    n: int, min_s: float, max_s: float, rate_hz: int, seed: int = 0
) -> list[np.ndarray]:
    """n float32 clips with lengths spread evenly over [min_s, max_s], in shuffled order."""
    rng = np.random.default_rng(seed)
    lengths = np.linspace(min_s, max_s, n)
    rng.shuffle(lengths)
    clips = []
    for seconds in lengths:
        t = np.arange(int(seconds * rate_hz)) / rate_hz
        f0 = rng.uniform(90, 260) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.3, 2) * t))
        phase = 2 * np.pi * np.cumsum(f0) / rate_hz
        voice = sum(np.sin(k * phase) / k for k in range(1, 8))
        syllables = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(3, 6) * t) ** 2
        x = rng.uniform(0.05, 0.5) * syllables * voice + 0.01 * rng.standard_normal(t.size)
        clips.append(x.astype(np.float32))
    return clips


def _run(session: ort.InferenceSession, clips: Sequence[np.ndarray]) -> Outputs:
    """One padded batch of `clips` -> every output of the graph."""
    values, mask = pad(clips)
    needs_mask = len(session.get_inputs()) > 1
    feed = {INPUT_VALUES: values, ATTENTION_MASK: mask} if needs_mask else {INPUT_VALUES: values}
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feed), strict=True))


def outputs_alone(session: ort.InferenceSession, clips: Sequence[np.ndarray]) -> Outputs:
    """Every output, each clip run on its own."""
    runs = [_run(session, [clip]) for clip in clips]
    return {name: np.concatenate([r[name] for r in runs]) for name in runs[0]}


def outputs_batched(
    session: ort.InferenceSession, clips: Sequence[np.ndarray], batch: int
) -> Outputs:
    """Every output, clips run `batch` at a time (padded)."""
    runs = [_run(session, clips[start : start + batch]) for start in range(0, len(clips), batch)]
    return {name: np.concatenate([r[name] for r in runs]) for name in runs[0]}


def _first(outputs: Outputs) -> Logits:
    return next(iter(outputs.values()))  # the logits: every graph's first output


def run_alone(session: ort.InferenceSession, clips: Sequence[np.ndarray]) -> Logits:
    return _first(outputs_alone(session, clips))


def run_batched(session: ort.InferenceSession, clips: Sequence[np.ndarray], batch: int) -> Logits:
    return _first(outputs_batched(session, clips, batch))


def max_abs_dimension(candidate: Outputs, baseline: Outputs) -> dict[str, float]:
    """{"max_abs_dimension": max |Δ|} when both have dimensions; {} otherwise."""
    if DIMENSIONS not in candidate or DIMENSIONS not in baseline:
        return {}
    return {"max_abs_dimension": float(np.abs(candidate[DIMENSIONS] - baseline[DIMENSIONS]).max())}


def max_abs_probability(candidate: Outputs, baseline: Outputs) -> dict[str, float]:
    """{"max_abs_probability": max |Δsoftmax(logits)|} when both have logits; {} otherwise."""
    if LOGITS not in candidate or LOGITS not in baseline:
        return {}
    delta = np.abs(softmax(candidate[LOGITS]) - softmax(baseline[LOGITS])).max()
    return {"max_abs_probability": float(delta)}


def invariance(session: ort.InferenceSession, clips: Sequence[np.ndarray]) -> dict[str, float]:
    """All clips in one padded batch vs each clip alone: max |Δprobability| and max
    |Δdimension|, of the outputs the graph has."""
    batched, alone = outputs_batched(session, clips, len(clips)), outputs_alone(session, clips)
    return {**max_abs_probability(batched, alone), **max_abs_dimension(batched, alone)}


def batch_invariance(session: ort.InferenceSession, clips: Sequence[np.ndarray]) -> float:
    """max |Δprobability| between all clips in one padded batch and each clip alone."""
    return invariance(session, clips)["max_abs_probability"]


def against_reference(
    session: ort.InferenceSession,
    reference: Callable[[np.ndarray], Outputs],
    clips: Sequence[np.ndarray],
    prepare: Callable[[np.ndarray], np.ndarray] = lambda clip: clip,
) -> dict[str, float]:
    """The ONNX model fed `prepare(clip)` vs `reference(clip)` (output name -> [1, width]),
    clip by clip: max |Δlogit| and max |Δdimension|, of the outputs the graph has."""
    ours = outputs_alone(session, [prepare(c) for c in clips])
    runs = [reference(c) for c in clips]
    theirs = {name: np.concatenate([r[name] for r in runs]) for name in runs[0]}
    logit = {}
    if LOGITS in ours and LOGITS in theirs:
        logit = {"max_abs_logit": float(np.abs(ours[LOGITS] - theirs[LOGITS]).max())}
    return {**logit, **max_abs_dimension(ours, theirs)}


def agreement(candidate: Logits, baseline: Logits) -> dict[str, float]:
    """Argmax agreement (fraction) and max |Δprobability| of candidate vs baseline."""
    return {
        "argmax_agreement": float((candidate.argmax(1) == baseline.argmax(1)).mean()),
        "max_abs_probability": float(np.abs(softmax(candidate) - softmax(baseline)).max()),
    }


def agreement_of(candidate: Outputs, baseline: Outputs) -> dict[str, float]:
    """`agreement` of the logits and max |Δdimension|, of the outputs both have."""
    logits = {}
    if LOGITS in candidate and LOGITS in baseline:
        logits = agreement(candidate[LOGITS], baseline[LOGITS])
    return {**logits, **max_abs_dimension(candidate, baseline)}


def session(path: Path, cuda: bool = False) -> ort.InferenceSession:
    """The file opened as the service opens it (emodistill.runtime.make_session)."""
    return make_session(Path(path), cuda)
