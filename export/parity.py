"""Parity figures: ONNX vs PyTorch, batched vs alone, fp16 and int8 vs fp32.

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
from emodistill.bundle import ATTENTION_MASK, INPUT_VALUES
from emodistill.runtime import make_session
from emodistill.scoring import softmax

Logits = np.ndarray  # [N, C] float32


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


def run_alone(session: ort.InferenceSession, clips: Sequence[np.ndarray]) -> Logits:
    needs_mask = len(session.get_inputs()) > 1
    out = []
    for clip in clips:
        values, mask = pad([clip])
        feed = (
            {INPUT_VALUES: values, ATTENTION_MASK: mask} if needs_mask else {INPUT_VALUES: values}
        )
        out.append(session.run(None, feed)[0][0])
    return np.stack(out)


def run_batched(session: ort.InferenceSession, clips: Sequence[np.ndarray], batch: int) -> Logits:
    needs_mask = len(session.get_inputs()) > 1
    out = []
    for start in range(0, len(clips), batch):
        values, mask = pad(clips[start : start + batch])
        feed = (
            {INPUT_VALUES: values, ATTENTION_MASK: mask} if needs_mask else {INPUT_VALUES: values}
        )
        out.append(session.run(None, feed)[0])
    return np.concatenate(out)


def batch_invariance(session: ort.InferenceSession, clips: Sequence[np.ndarray]) -> float:
    """max |Δprobability| between all clips in one padded batch and each clip alone."""
    return float(
        np.abs(
            softmax(run_batched(session, clips, len(clips))) - softmax(run_alone(session, clips))
        ).max()
    )


def against_reference(
    session: ort.InferenceSession,
    reference: Callable[[np.ndarray], np.ndarray],
    clips: Sequence[np.ndarray],
    prepare: Callable[[np.ndarray], np.ndarray] = lambda clip: clip,
) -> float:
    """max |Δlogit| between the ONNX model fed `prepare(clip)` and `reference(clip) -> logits
    [C]`, clip by clip."""
    ours = run_alone(session, [prepare(c) for c in clips])
    theirs = np.stack([reference(c) for c in clips])
    return float(np.abs(ours - theirs).max())


def agreement(candidate: Logits, baseline: Logits) -> dict[str, float]:
    """Argmax agreement (fraction) and max |Δprobability| of candidate vs baseline."""
    return {
        "argmax_agreement": float((candidate.argmax(1) == baseline.argmax(1)).mean()),
        "max_abs_probability": float(np.abs(softmax(candidate) - softmax(baseline)).max()),
    }


def session(path: Path, cuda: bool = False) -> ort.InferenceSession:
    """The file opened as the service opens it (emodistill.runtime.make_session)."""
    return make_session(Path(path), cuda)
