"""The model as both process layouts serve it: what the routes read of it, how it is built,
batched and warmed. The single process (service/app.py) and the model process
(service/model_process.py) both use this module; neither owns it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from emodistill.bundle import BundleMetadata

from .batcher import BatcherConfig
from .settings import Settings

log = logging.getLogger("emodistill.model")


class ServedModel(Protocol):
    """What the routes read of the model: the backend in one process, a ModelClient in a
    worker of several."""

    metadata: BundleMetadata
    provider: str
    model_file: Path


class ModelBackend(ServedModel, Protocol):
    """What serves: emodistill.runtime.OnnxBackend, or the benchmarks' simulated engine."""

    def infer(self, clips: list[np.ndarray]) -> np.ndarray: ...

    def warm_up(self, batch_size: int, seconds: float) -> float: ...


# (bundle, device, int8) -> the backend; OnnxBackend itself in production.
BackendFactory = Callable[[Path, str, bool], ModelBackend]


def batcher_config(settings: Settings, rate_hz: int) -> BatcherConfig:
    """The batch limits of `settings`, in samples at the model's rate."""
    return BatcherConfig(
        max_batch_size=settings.max_batch_size,
        max_batch_samples=settings.max_batch_samples(rate_hz),
        max_wait_ms=settings.max_wait_ms,
        max_queue=settings.max_queue,
    )


def warm_up(backend: ModelBackend, settings: Settings) -> None:
    """One full batch, so that the first request pays no start-up cost."""
    if settings.warmup:
        seconds = min(settings.window_s, settings.max_batch_audio_s / settings.max_batch_size)
        took = backend.warm_up(settings.max_batch_size, seconds)
        log.info("warm-up: %d × %.1f s in %.2f s", settings.max_batch_size, seconds, took)
