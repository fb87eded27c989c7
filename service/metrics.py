"""Prometheus metrics of one service instance (its own registry, so apps never collide).

Requests by route and status, latency, queue wait, batch size, audio-seconds, queue depth,
inference failures, non-finite answers, the model served, and the process (memory, CPU, file
descriptors). The batcher reports batches through `on_batch`.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    generate_latest,
)

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServiceMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, model: dict[str, str]):
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "emodistill_requests",
            "HTTP requests by route and status.",
            ["route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "emodistill_request_latency_seconds",
            "Time to answer.",
            ["route"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.queue_wait = Histogram(
            "emodistill_queue_wait_seconds",
            "Time a clip waited for its batch.",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.inference = Histogram(
            "emodistill_inference_seconds",
            "Time of one model call.",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.batch_size = Histogram(
            "emodistill_batch_size", "Clips per model call.", buckets=BATCH_BUCKETS, registry=r
        )
        self.audio = Counter("emodistill_audio_seconds", "Audio scored, in seconds.", registry=r)
        self.queue_depth = Gauge(
            "emodistill_queue_depth", "Clips waiting for the model.", registry=r
        )
        self.failures = Counter(
            "emodistill_inference_failures",
            "Model calls that raised (their requests got 500).",
            registry=r,
        )
        self.nonfinite = Counter(
            "emodistill_nonfinite_answers",
            "Clips the model answered with NaN or infinity (their requests got 500).",
            registry=r,
        )
        Info("emodistill_model", "The model served.", registry=r).info(model)
        # process_resident_memory_bytes, CPU seconds, open fds: what bench/attack.py watches.
        ProcessCollector(registry=r)

    def track_queue(self, depth: Callable[[], int]) -> None:
        self.queue_depth.set_function(lambda: float(depth()))

    def on_batch(
        self, size: int, padded_samples: int, queue_wait_s: list[float], infer_s: float, ok: bool
    ) -> None:
        self.batch_size.observe(size)
        self.inference.observe(infer_s)
        for wait in queue_wait_s:
            self.queue_wait.observe(wait)
        if not ok:
            self.failures.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
