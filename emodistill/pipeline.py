"""Audio in, `Prediction` out: the one inference pipeline under every front end.

    prepared = pipeline.prepare(audio)            # decode within limits, plan the spans
    logits = model(pipeline.pieces([prepared]))   # any scorer: see below
    [answer] = pipeline.finish([prepared], logits)  # temperature, combine, model card

`prepare` decodes (emodistill.audio_input, with the options' limits) and plans what the model
scores (emodistill.segments: whole, speech utterances or windows); `finish` turns each span's
logits into calibrated probabilities, combines them per input (emodistill.scoring) and adds the
duration and the model card. Between the two, the front end chooses how logits are computed:
`run` with a synchronous `Backend` (the ONNX session: the Python API, bulk scoring) cuts its
own batches by the one rule (emodistill.batching); `run_async` hands every span to a `Queue`
(the service's batcher, or the model process's client), admitted whole or refused whole.

A new front end (a live stream, a bulk executor) is an adapter over `prepare` / `finish`; a
new output is added in `finish` and `Prediction`. Model-free, torch-free, HTTP-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from emodistill.audio_input import decode_upload
from emodistill.batching import cut_batches
from emodistill.bundle import BundleMetadata
from emodistill.decoder import MAX_ABS_AMPLITUDE
from emodistill.errors import BadSamplesError
from emodistill.options import InferenceOptions
from emodistill.prediction import ModelCard, Prediction
from emodistill.scoring import combine, split
from emodistill.segments import ClipPlan, SpeechDetector, speech_plan, window_plan

# A path, the file's bytes, or float32 mono samples at the bundle's rate.
Audio = str | Path | bytes | np.ndarray


class Backend(Protocol):
    """A model called synchronously: clips (float32 [T_i]) -> outputs [B, C] (logits), or
    [B, C + D] (logits, then the dimensions) for a bundle with dimensions."""

    def infer(self, clips: list[np.ndarray]) -> np.ndarray: ...


class Queue(Protocol):
    """A model behind a queue: every clip of one request admitted together or refused."""

    async def submit_many(self, clips: list[np.ndarray]) -> list[np.ndarray]: ...


# Why one array per clip, outputs side by side, rather than one array per output: every queue,
# batcher and wire between a front end and the model moves "an array whose first axis indexes
# clips" and stays model-agnostic; only `finish`, which holds the bundle's metadata, knows
# where the logits end and the dimensions begin.


@dataclass(frozen=True)
class Prepared:
    """One input, ready for the model: float32 mono `samples` [T] at the model's rate, the
    input's own `duration_s` (before resampling), and the `plan` of spans to score."""

    samples: np.ndarray
    duration_s: float
    plan: ClipPlan


class Pipeline:
    """The steps of one bundle under one set of options; safe to share across threads."""

    def __init__(
        self,
        metadata: BundleMetadata,
        options: InferenceOptions | None = None,
        detector: SpeechDetector | None = None,
    ) -> None:
        self.metadata = metadata
        self.options = options or InferenceOptions()
        self.detector = detector  # None: the process's own, created on first long input
        self.rate_hz = metadata.sample_rate_hz
        self.labels = metadata.labels
        self.dimensions = metadata.dimension_names  # [] for a bundle without them
        self.temperature = metadata.calibration.temperature if metadata.calibration else 1.0
        self.card = ModelCard.of(metadata)
        self.limits = self.options.audio_limits(self.rate_hz)

    # --- before the model -----------------------------------------------------------------

    def prepare(self, audio: Audio, content_type: str | None = None) -> Prepared:
        """Decode (a path, bytes, or samples at the model's rate) and plan; raises an
        emodistill.errors.AudioError when the input cannot be used."""
        if isinstance(audio, np.ndarray):
            samples = self.checked_samples(audio)
            return self.planned(samples, len(samples) / self.rate_hz)
        data = audio if isinstance(audio, bytes) else Path(audio).read_bytes()
        decoded = decode_upload(data, self.limits, content_type)
        return self.planned(decoded.samples, decoded.duration_s)

    def planned(self, samples: np.ndarray, duration_s: float) -> Prepared:
        """Samples already checked (decoded within the limits) and their plan: whole, the
        utterances where speech is, or windows (the options' segmentation)."""
        plan = speech_plan(samples, self.rate_hz, self.options.segment_options, self.detector)
        return Prepared(samples, duration_s, plan)

    def windowed(self, samples: np.ndarray) -> Prepared:
        """Samples planned in fixed windows, with no speech detection (the tensor route)."""
        o = self.options
        plan = window_plan(len(samples), self.rate_hz, o.window_s, o.hop_s)
        return Prepared(samples, len(samples) / self.rate_hz, plan)

    def checked_samples(self, samples: np.ndarray) -> np.ndarray:
        """float32 mono samples, finite and within full scale's headroom, or BadSamplesError."""
        out = np.asarray(samples, dtype=np.float32)
        if out.ndim != 1 or not np.isfinite(out).all():
            raise BadSamplesError("samples must be finite float32 mono [samples]")
        if out.size and float(np.abs(out).max()) > MAX_ABS_AMPLITUDE:
            raise BadSamplesError(f"sample values beyond ±{MAX_ABS_AMPLITUDE:g}")
        return out

    @staticmethod
    def pieces(prepared: Sequence[Prepared]) -> list[np.ndarray]:
        """Every planned span's samples, input after input: what goes to the model."""
        return split([p.samples for p in prepared], [p.plan for p in prepared])

    # --- after the model ------------------------------------------------------------------

    def finish(
        self, prepared: Sequence[Prepared], outputs: Sequence[np.ndarray]
    ) -> list[Prediction]:
        """Each input's answer from its spans' outputs (in `pieces`' order: logits [C], then
        the dimensions when the bundle has them); raises NonFiniteAnswerError rather than
        answer NaN."""
        plans = [p.plan for p in prepared]
        answers = combine(
            plans, list(outputs), self.labels, self.rate_hz, self.temperature, self.dimensions
        )
        return [
            Prediction(**answer, duration_s=p.duration_s, model=self.card)
            for answer, p in zip(answers, prepared, strict=True)
        ]

    # --- the model in between -------------------------------------------------------------

    def run(self, prepared: Sequence[Prepared], backend: Backend) -> list[Prediction]:
        """Answers through a synchronous backend, every span of every input batched by length."""
        return self.finish(prepared, self.infer(self.pieces(prepared), backend))

    def infer(self, pieces: list[np.ndarray], backend: Backend) -> list[np.ndarray]:
        """Each piece's logits [C], through `backend` in batches cut by the one rule."""
        rows: list[np.ndarray] = [np.empty(0)] * len(pieces)
        budget = self.options.max_batch_samples(self.rate_hz)
        lengths = [len(p) for p in pieces]
        limits = (self.options.max_batch_size, budget, self.options.max_batch_padding)
        for batch in cut_batches(lengths, *limits):
            logits = backend.infer([pieces[i] for i in batch])
            for i, row in zip(batch, logits, strict=True):
                rows[i] = row
        return rows

    async def run_async(self, prepared: Sequence[Prepared], queue: Queue) -> list[Prediction]:
        """Answers through a queue: every span submitted at once, so a request is admitted
        whole or refused whole."""
        return self.finish(prepared, await queue.submit_many(self.pieces(prepared)))
