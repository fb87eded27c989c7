"""The model as both process layouts serve it: what the routes read of it, how it is built,
laid out on the cores, batched and warmed. The single process (service/app.py) and the model
process (service/model_process.py) both use this module; neither owns it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from emodistill.bundle import BundleMetadata
from emodistill.gpu import CPU_PROVIDER
from emodistill.runtime import OnnxBackend
from emodistill.streams import (
    STREAM_BATCH_AUDIO_S,
    STREAM_MAX_CALL_S,
    Streams,
    holds_the_cores,
)

from .batcher import BatcherConfig
from .host import available_cores
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
        max_padding=settings.max_batch_padding,
        max_wait_ms=settings.max_wait_ms,
        max_queue=settings.max_queue,
        group_by_length=settings.batch_order != "arrival",
        in_flight=settings.engine_streams or 1,
    )


# Decoding threads (decode_workers=0) where the model leaves the service cores for them.
DECODE_WORKERS = 2


def decode_workers(settings: Settings) -> int:
    """The decoding threads for `settings` (laid out by `lay_out`, or not)."""
    return settings.decode_workers or DECODE_WORKERS


def resolve_autos(
    backend: ModelBackend, settings: Settings, call_s: float | None
) -> dict[str, object]:
    """The settings updates that resolve the autos of `batch_order` and `decode_workers`: on
    the CPU, for a model whose call of STREAM_BATCH_AUDIO_S takes `call_s` ≥
    STREAM_MAX_CALL_S on every core, batches in arrival order with no padding (unless
    --max-batch-padding was given), and one decoding thread; else by length, DECODE_WORKERS.

    Such a model's cost is its padded audio, batch or not (docs/benchmarks.md, the CPU's
    limit: HuBERT-base's audio-s/s at batch 4 is no better than at batch 1). So a clip that
    joins an older clip's batch from further back in the queue moves its whole cost ahead of
    the clips it passes, which then wait the longer; and padding is work for nothing.
    HuBERT-base on clips of 1-6 s, 64 clients (docs/service-profile.md, "The batch order"):
    by length with 10 % padding, p99 34.7 s; in arrival order with none, 20.8-24.5 s, level
    with Triton's (which batches equal shapes only) at 0.91-1.00× its requests/s.
    The model's threads then hold every core, so a second decoding thread only takes them
    from it: HuBERT-base on those clips, 3 rounds in alternation, 3.08 req/s with two
    threads, 3.37 with one, Triton 3.29 (p99 21.7, 20.3 and 20.7 s; CPU per request 586,
    531 and 534 ms). Both together, in bench.peers: 1.04-1.07× Triton, with the better p99."""
    holds = holds_the_cores(backend.provider, call_s)
    updates: dict[str, object] = {}
    if settings.decode_workers == 0:
        updates["decode_workers"] = 1 if holds else DECODE_WORKERS
    if settings.batch_order != "auto":
        return updates
    if not holds:
        return {**updates, "batch_order": "length"}
    log.info("batches: the next clips in arrival order, as a call costs its padded audio here")
    updates["batch_order"] = "arrival"
    if "max_batch_padding" not in settings.model_fields_set:
        updates["max_batch_padding"] = 0.0
    return updates


def lay_out(
    backend: ModelBackend, settings: Settings, call_s: float | None = None
) -> tuple[ModelBackend, Settings]:
    """The backend and settings to serve with, `engine_streams` fixed. On the CPU with
    several cores, streams (emodistill/streams.py): `engine_streams` calls at once, each
    beside another on cores / streams threads, a lone one on every core. By default (0):
    streams, with batches of at most 24 s of padded audio, unless a call of 24 s takes
    `call_s` ≥ STREAM_MAX_CALL_S on every core (warm_up times it; None: not timed), when
    one call at a time serves, as configured. On a GPU, for one core, or for a backend
    other than emodistill.runtime.OnnxBackend: one call at a time, as configured. The
    autos of the batch order and the decoding threads are resolved here too (`resolve_autos`)."""
    if isinstance(backend, Streams):  # laid out already (the single process does it first)
        return backend, settings
    settings = settings.model_copy(update=resolve_autos(backend, settings, call_s))
    cores = available_cores()
    if not (isinstance(backend, OnnxBackend) and backend.provider == CPU_PROVIDER) or cores < 2:
        return backend, settings.model_copy(update={"engine_streams": 1})
    streams, budget_s = settings.engine_streams, settings.max_batch_audio_s
    if streams == 0 and holds_the_cores(backend.provider, call_s):
        streams = 1
        log.info(
            "streams: one model call at a time on %d cores, as a call of %.0f s takes about %.2f s "
            "(from %.1f s, a model's operators are large enough to share out)",
            cores,
            STREAM_BATCH_AUDIO_S,
            call_s,
            STREAM_MAX_CALL_S,
        )
    elif streams == 0:
        streams, budget_s = cores, min(budget_s, STREAM_BATCH_AUDIO_S)
    settings = settings.model_copy(
        update={"engine_streams": streams, "max_batch_audio_s": budget_s}
    )
    if streams == 1:
        return backend, settings
    threads = max(1, cores // streams)
    log.info(
        "streams: %d model calls at once, each beside another on %d thread(s), a lone one on "
        "%d; at most %.0f s of padded audio per call",
        streams,
        threads,
        cores,
        settings.max_batch_audio_s,
    )
    return Streams(backend, backend.with_threads(threads)), settings


def warm_up(backend: ModelBackend, settings: Settings) -> tuple[ModelBackend, Settings]:
    """Runs one full batch on every core, so that the first request pays no start-up cost,
    timing it for `lay_out`; then lays the model out on the cores and warms what the layout
    added: the backend and settings to serve with."""
    if not settings.warmup:
        return lay_out(backend, settings)
    seconds = min(settings.window_s, settings.max_batch_audio_s / settings.max_batch_size)
    took = backend.warm_up(settings.max_batch_size, seconds)
    log.info("warm-up: %d × %.1f s in %.2f s", settings.max_batch_size, seconds, took)
    call_s = took * STREAM_BATCH_AUDIO_S / (settings.max_batch_size * seconds)
    served, settings = lay_out(backend, settings, call_s)
    if isinstance(served, Streams) and served is not backend:
        seconds = min(settings.window_s, settings.max_batch_audio_s / settings.max_batch_size)
        served.beside.warm_up(settings.max_batch_size, seconds)
    return served, settings
