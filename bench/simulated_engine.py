"""A stand-in for a GPU engine: each batch takes the time a GPU would, and no model runs.

The frontend (HTTP, uploads, decoding, batching, answers) is measured against it on any
machine: `python -m bench.frontend` serves a real bundle's metadata with this backend in
place of onnxruntime. A batch of B clips padded to the longest, T seconds each, takes

    fixed_ms + ms_per_audio_s × B × T        (the padded audio-seconds)

and answers zero logits (uniform probabilities). The defaults are not a GPU measurement:
ms_per_audio_s is HuBERT-base's compute per audio-second (bench/ceiling.py, 14 GFLOP) at
30 % of an H100's dense fp16 peak (790 TFLOP/s), 0.059 ms; fixed_ms (2 ms) is an assumed
cost of one onnxruntime CUDA run (launches, copies). Replace both with `make gpu-check`'s
engine figures once a GPU run has them.

Replicas of the model in several processes share one simulated GPU through `gpu_lock`: one
batch runs at a time, as kernels from several processes time-share a GPU without MPS.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.ceiling import GFLOP_PER_AUDIO_S, PEAK_FP16_TFLOPS
from emodistill.bundle import BundleMetadata, load_bundle

ASSUMED_UTILISATION = 0.30
DEFAULT_FIXED_MS = 2.0
DEFAULT_MS_PER_AUDIO_S = (
    1000 * GFLOP_PER_AUDIO_S["base"] / (ASSUMED_UTILISATION * PEAK_FP16_TFLOPS * 1000)
)


@dataclass(frozen=True)
class LatencyModel:
    fixed_ms: float = DEFAULT_FIXED_MS
    ms_per_audio_s: float = DEFAULT_MS_PER_AUDIO_S

    def batch_s(self, clips: int, longest_s: float) -> float:
        """Seconds one batch of `clips` padded to `longest_s` takes."""
        return (self.fixed_ms + self.ms_per_audio_s * clips * longest_s) / 1000

    def clips_per_s(self, clips: int, clip_s: float) -> float:
        """The engine's throughput on full batches of `clips` equal clips."""
        return clips / self.batch_s(clips, clip_s)


class SimulatedBackend:
    """The service's backend interface (metadata, provider, model_file, infer, warm_up)."""

    provider = "simulated"

    def __init__(self, bundle: Path, latency: LatencyModel, gpu_lock: Any = None):
        self.metadata: BundleMetadata = load_bundle(bundle)
        self.model_file = bundle / "simulated"
        self.latency, self.gpu_lock = latency, gpu_lock

    def infer(self, clips: list[np.ndarray]) -> np.ndarray:
        rate = self.metadata.sample_rate_hz
        seconds = self.latency.batch_s(len(clips), max(len(c) for c in clips) / rate)
        if self.gpu_lock is None:
            time.sleep(seconds)
        else:
            with self.gpu_lock:
                time.sleep(seconds)
        return np.zeros((len(clips), len(self.metadata.labels)), np.float32)

    def warm_up(self, batch_size: int, seconds: float) -> float:
        return 0.0


@dataclass(frozen=True)
class SimulatedFactory:
    """The service's backend factory (bundle, device, int8) -> SimulatedBackend; picklable,
    so the service's spawned processes build their own."""

    latency: LatencyModel
    gpu_lock: Any = None
    # Seconds the model takes to load: a large model on a cold disk (a start-up to interrupt).
    load_s: float = 0.0

    def __call__(self, bundle: Path, device: str, int8: bool) -> SimulatedBackend:
        if self.load_s:
            logging.getLogger("emodistill.model").info("loading the model (%.1f s)", self.load_s)
            time.sleep(self.load_s)
        return SimulatedBackend(bundle, self.latency, self.gpu_lock)
