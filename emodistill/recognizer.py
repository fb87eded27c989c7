"""`emodistill.load(bundle).predict(audio)`: emotion from audio in Python, with no server.

The pipeline (emodistill.pipeline) over the bundle's onnxruntime session: the same decoding
and limits, segments, calibration and aggregation as `POST /predict`, which is the same
pipeline over the service's batcher, so both answer the same `Prediction` for the same audio.

    rec = emodistill.load("models/demo/bundle", device="auto")
    answer = rec.predict("call.m4a")   # a Prediction: .label, .probabilities, .dimensions, ...
    answer.model_dump()                # the dict POST /predict answers as JSON

Torch-free; knows nothing of HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel

from emodistill.bundle import BundleMetadata
from emodistill.gpu import CPU_PROVIDER
from emodistill.live import StreamConfig
from emodistill.options import InferenceOptions
from emodistill.pipeline import Audio, Pipeline, Prepared
from emodistill.prediction import Prediction
from emodistill.runtime import OnnxBackend
from emodistill.streams import STREAM_BATCH_AUDIO_S, holds_the_cores

# The API's timing call at load, scaled to the service's STREAM_BATCH_AUDIO_S: a call of 24 s
# would cost HuBERT-base 2-2.7 s at every load, on 2 cores.
PROBE_CALL_S = 1.0


class LoadedModel(Protocol):
    """A synchronous model with its bundle's metadata (OnnxBackend, or a test's fake)."""

    metadata: BundleMetadata
    provider: str

    def infer(self, clips: list[np.ndarray]) -> np.ndarray: ...


class Recognizer:
    """A loaded model and the pipeline around it."""

    def __init__(self, backend: LoadedModel, options: InferenceOptions | None = None) -> None:
        self.backend = backend
        self.pipeline = Pipeline(backend.metadata, options)

    @property
    def options(self) -> InferenceOptions:
        return self.pipeline.options

    @property
    def labels(self) -> list[str]:
        return self.backend.metadata.labels

    @property
    def dimensions(self) -> list[str]:
        """The bundle's dimension names in output order; [] when it has none."""
        return self.backend.metadata.dimension_names

    @property
    def provider(self) -> str:
        return self.backend.provider

    def predict(self, audio: Audio) -> Prediction:
        """One input's answer; raises an emodistill.errors.AudioError when it is unusable."""
        return self.predict_many([audio])[0]

    def predict_many(self, audios: Sequence[Audio]) -> list[Prediction]:
        """Each input's answer, every span of every input batched with the others by length."""
        return self.run([self.pipeline.prepare(a) for a in audios])

    def stream(
        self,
        frames: AsyncIterable[bytes] | Iterable[bytes],
        config: StreamConfig | None = None,
        **config_fields: Any,
    ) -> AsyncIterator[BaseModel]:
        """A live stream's events (emodistill.live) for raw `frames` in `config`'s encoding
        and rate, as `WS /stream` answers them, with no server."""
        from emodistill.live_client import run_local

        return run_local(self, frames, config or StreamConfig(**config_fields))

    def run(self, prepared: Sequence[Prepared]) -> list[Prediction]:
        """Answers for inputs already prepared (decoded and planned) by `self.pipeline`."""
        return self.pipeline.run(prepared, self.backend)


def load(
    bundle: str | Path,
    device: str = "auto",
    int8: bool = False,
    options: InferenceOptions | None = None,
    **option_fields: Any,
) -> Recognizer:
    """The bundle's student, checked (every sha256) and ready on `device` (auto|cpu|cuda).
    `options`, or InferenceOptions' fields by name (window_s=5, segmentation="windows", ...)."""
    if options is None:
        options = InferenceOptions(**option_fields)
    elif option_fields:  # what `options` left to its defaults stays a default
        given = options.model_dump(include=options.model_fields_set)
        options = InferenceOptions(**{**given, **option_fields})
    backend = OnnxBackend(Path(bundle), device, int8)
    return Recognizer(backend, padding_for(backend, options))


def padding_for(backend: OnnxBackend, options: InferenceOptions) -> InferenceOptions:
    """`options`, with no padding between clips (equal lengths still batch together) where the
    model holds the CPU's cores and `options` left max_batch_padding to its default, as the
    service lays it out (service/model.py's resolve_autos). HuBERT-base on 2 cores, 24 files
    of 1-6 s: 4.21 files/s so, 3.88 with 10 % padding (docs/python-api.md). Times a call of
    PROBE_CALL_S after an untimed one (the session's first call allocates), so the first
    request pays no start-up cost either."""
    if "max_batch_padding" in options.model_fields_set or backend.provider != CPU_PROVIDER:
        return options
    backend.warm_up(1, PROBE_CALL_S)
    call_s = backend.warm_up(1, PROBE_CALL_S) * STREAM_BATCH_AUDIO_S / PROBE_CALL_S
    if not holds_the_cores(backend.provider, call_s):
        return options
    return options.model_copy(update={"max_batch_padding": 0.0})
