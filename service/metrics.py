"""Prometheus metrics of one service instance (its own registry, so apps never collide).

Requests by route and status, latency, queue wait, batch size, audio-seconds, queue depth,
inference failures, non-finite answers, live streams (open, utterances, interim events, the
utterance-end delay, refusals), the model served, and the process (memory, CPU, file
descriptors). The batcher reports batches through `on_batch`.

With several processes (service/processes.py), every process writes its values into the
directory PROMETHEUS_MULTIPROC_DIR names (prometheus-client's multiprocess mode), and
whichever worker answers /metrics sums them: one scrape sees the whole service. The
process figures are then the sums over the service's processes (ServiceProcesses).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServiceMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, model: dict[str, str], multiprocess: bool = False):
        # Metrics register here; in multiprocess mode they are also written to the shared
        # directory, and /metrics renders that instead (render).
        r = self.registry = CollectorRegistry()
        self.multiprocess = multiprocess
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
        # Only the model's process sets it (after each submit and batch), so live sum = its value.
        self.queue_depth = Gauge(
            "emodistill_queue_depth",
            "Clips waiting for the model.",
            registry=r,
            multiprocess_mode="livesum",
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
        self.internal_errors = Counter(
            "emodistill_internal_errors",
            "Requests that raised an unexpected exception (answered 500; logged with traceback).",
            registry=r,
        )
        # Live streams (service/stream.py).
        self.streams_open = Gauge(
            "emodistill_streams_open",
            "WebSocket streams open.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.stream_utterances = Counter(
            "emodistill_stream_utterances", "utterance.end events sent.", registry=r
        )
        self.stream_interims = Counter(
            "emodistill_stream_interim_events", "interim events sent.", registry=r
        )
        self.stream_delay = Histogram(
            "emodistill_stream_utterance_delay_seconds",
            "From the arrival of an utterance's last sample to its utterance.end event.",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.streams_refused = Counter(
            "emodistill_streams_refused",
            "Streams refused or ended by the server, by reason.",
            ["reason"],
            registry=r,
        )
        # process_resident_memory_bytes, CPU seconds, open fds: what bench/attack.py watches.
        if not multiprocess:
            Info("emodistill_model", "The model served.", registry=r).info(model)
            ProcessCollector(registry=r)
            return
        # prometheus-client's Info has no multiprocess mode; a gauge of 1 renders the same.
        info = Gauge(
            "emodistill_model_info",
            "The model served.",
            list(model),
            registry=r,
            multiprocess_mode="livemax",
        )
        info.labels(**model).set(1)

    def note_layout(self, streams: int, batch_audio_s: float) -> None:
        """How the model runs (service/model.py's lay_out): calls at once, audio per call."""
        Gauge(
            "emodistill_engine_streams",
            "Model calls at once (engine_streams, as laid out at warm-up).",
            registry=self.registry,
            multiprocess_mode="livemax",  # every process that serves the model says the same
        ).set(streams)
        Gauge(
            "emodistill_batch_audio_budget_seconds",
            "Padded audio per model call (max_batch_audio_s, as laid out at warm-up).",
            registry=self.registry,
            multiprocess_mode="livemax",
        ).set(batch_audio_s)

    def track_queue(self, depth: Callable[[], int]) -> None:
        """Single process: the gauge reads the batcher's depth at each scrape."""
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
        if not self.multiprocess:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)
        merged.register(ServiceProcesses(os.getppid()))
        return generate_latest(merged)


def model_labels(backend: Any) -> dict[str, str]:
    """The emodistill_model_info labels of a backend (or a ModelClient)."""
    meta = backend.metadata
    return {
        "name": meta.name,
        "version": meta.version,
        "provider": backend.provider,
        "labels": ",".join(meta.labels),
    }


class ServiceProcesses(Collector):
    """Memory, CPU and open files summed over a supervisor and its children (the whole
    multi-process service), under ProcessCollector's names, read from /proc at each scrape."""

    def __init__(self, root_pid: int):
        self.root_pid = root_pid

    def _pids(self) -> Iterator[int]:
        yield self.root_pid
        for path in Path("/proc").glob(f"{self.root_pid}/task/*/children"):
            yield from (int(pid) for pid in path.read_text().split())

    def collect(self) -> Iterator[Any]:
        ticks, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
        rss = cpu = fds = 0.0
        for pid in self._pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                cpu += (int(fields[11]) + int(fields[12])) / ticks
                rss += int(fields[21]) * page
                fds += len(os.listdir(f"/proc/{pid}/fd"))
            except (OSError, IndexError, ValueError):
                continue  # it ended meanwhile
        yield GaugeMetricFamily(
            "process_resident_memory_bytes", "Resident memory of the service's processes.", rss
        )
        yield CounterMetricFamily(
            "process_cpu_seconds", "CPU time of the service's processes, user + system.", cpu
        )
        yield GaugeMetricFamily("process_open_fds", "Open files of the service's processes.", fds)
