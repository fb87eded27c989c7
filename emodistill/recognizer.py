"""`emodistill.load(bundle).predict(audio)`: emotion from audio in Python, with no server.

The service is one consumer of this runtime: the same bundle check, onnxruntime session
(`runtime.OnnxBackend`), decoding and limits (`audio_input`), speech segments (`segments`),
calibrated probabilities and aggregation (`scoring`), so `Recognizer.predict` answers what
`POST /predict` answers for the same audio. `predict_many` batches every span of every input,
spans of similar length together.

    rec = emodistill.load("models/demo/bundle", device="auto")
    rec.predict("call.m4a")  # {"label", "probabilities", "duration_s", "speech_s",
                             #  "segmentation", "segments", "model"}

Torch-free; knows nothing of HTTP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from emodistill.audio_input import MAX_AUDIO_S, AudioInputError, AudioLimits, decode_upload
from emodistill.bundle import model_card
from emodistill.decoder import MAX_ABS_AMPLITUDE
from emodistill.runtime import OnnxBackend
from emodistill.scoring import (
    HOP_S,
    MAX_BATCH_AUDIO_S,
    MAX_BATCH_SIZE,
    MAX_SEGMENT_S,
    MIN_SEGMENT_S,
    WINDOW_S,
    combine,
    split,
)
from emodistill.segments import ClipPlan, SegmentOptions, speech_plan

# A path or URL-free file name, the file's bytes, or float32 mono samples at the bundle's rate.
Audio = str | Path | bytes | np.ndarray


@dataclass
class Recognizer:
    backend: OnnxBackend
    segmentation: Literal["speech", "windows"] = "speech"
    window_s: float = WINDOW_S
    hop_s: float = HOP_S
    min_segment_s: float = MIN_SEGMENT_S
    max_segment_s: float = MAX_SEGMENT_S
    max_batch_size: int = MAX_BATCH_SIZE
    max_batch_audio_s: float = MAX_BATCH_AUDIO_S
    max_audio_s: float = MAX_AUDIO_S

    @property
    def labels(self) -> list[str]:
        return self.backend.labels

    @property
    def provider(self) -> str:
        return self.backend.provider

    def predict(self, audio: Audio) -> dict[str, Any]:
        """One input's answer; raises AudioInputError (with an HTTP-like status) when unusable."""
        return self.predict_many([audio])[0]

    def predict_many(self, audios: Sequence[Audio]) -> list[dict[str, Any]]:
        """Each input's answer, its windows batched with the others' by length."""
        decoded = [self._samples(a) for a in audios]
        clips = [samples for samples, _ in decoded]
        return self.answer(clips, [d for _, d in decoded], [self.plan(c) for c in clips])

    def plan(self, samples: np.ndarray) -> ClipPlan:
        """What the model scores in one clip: whole, its utterances, or windows."""
        rate_hz = self.backend.metadata.sample_rate_hz
        return speech_plan(samples, rate_hz, self.segment_options)

    def answer(
        self, clips: list[np.ndarray], durations_s: list[float], plans: list[ClipPlan]
    ) -> list[dict[str, Any]]:
        """Each planned clip's answer (every span of every clip batched together by length),
        with its duration and the model block."""
        meta = self.backend.metadata
        temperature = meta.calibration.temperature if meta.calibration else 1.0
        logits = self._infer(split(clips, plans))
        answers = combine(plans, logits, self.labels, meta.sample_rate_hz, temperature)
        card = model_card(meta)
        return [
            {**a, "duration_s": duration_s, "model": card}
            for a, duration_s in zip(answers, durations_s, strict=True)
        ]

    @property
    def segment_options(self) -> SegmentOptions:
        return SegmentOptions(
            self.segmentation, self.window_s, self.hop_s, self.min_segment_s, self.max_segment_s
        )

    def _samples(self, audio: Audio) -> tuple[np.ndarray, float]:
        """(float32 mono samples at the bundle's rate, the input's duration in seconds)."""
        rate_hz = self.backend.metadata.sample_rate_hz
        if isinstance(audio, np.ndarray):
            samples = np.asarray(audio, dtype=np.float32)
            if samples.ndim != 1 or not np.isfinite(samples).all():
                raise AudioInputError(422, "samples must be finite float32 mono [samples]")
            if samples.size and float(np.abs(samples).max()) > MAX_ABS_AMPLITUDE:
                raise AudioInputError(422, f"sample values beyond ±{MAX_ABS_AMPLITUDE:g}")
            return samples, len(samples) / rate_hz
        data = audio if isinstance(audio, bytes) else Path(audio).read_bytes()
        limits = AudioLimits(sample_rate_hz=rate_hz, max_duration_s=self.max_audio_s)
        out = decode_upload(data, limits)
        return out.samples, out.duration_s

    def _infer(self, pieces: list[np.ndarray]) -> list[np.ndarray]:
        """Logits of every window: sorted by length, cut into batches within the batch size
        and the padded-audio budget, rows put back in the windows' order."""
        budget = int(self.max_batch_audio_s * self.backend.metadata.sample_rate_hz)
        order = sorted(range(len(pieces)), key=lambda i: len(pieces[i]))
        rows: list[np.ndarray] = [np.empty(0)] * len(pieces)
        batch: list[int] = []
        for i in [*order, -1]:
            full = batch and (
                i < 0
                or len(batch) == self.max_batch_size
                or len(pieces[i]) * (len(batch) + 1) > budget
            )
            if full:
                logits = self.backend.infer([pieces[j] for j in batch])
                for j, row in zip(batch, logits, strict=True):
                    rows[j] = row
                batch = []
            if i >= 0:
                batch.append(i)
        return rows


def load(
    bundle: str | Path, device: str = "auto", int8: bool = False, **options: Any
) -> Recognizer:
    """The bundle's student, checked (every sha256) and ready on `device` (auto|cpu|cuda);
    `options` are Recognizer's fields (window_s, hop_s, max_batch_size, ...)."""
    return Recognizer(OnnxBackend(Path(bundle), device, int8), **options)
