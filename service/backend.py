"""The model behind the batcher: a bundle's ONNX student on onnxruntime.

Chooses the provider and file (CUDA with model.fp16.onnx, else CPU with model.onnx or
model.int8.onnx), normalises and pads clips as the bundle says, and returns logits.
Knows nothing of HTTP or queues.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from emodistill.audio import normalize_clip, pad_batch
from emodistill.bundle import (
    ATTENTION_MASK,
    INPUT_VALUES,
    MODEL_FP16,
    MODEL_FP32,
    MODEL_INT8,
    BundleMetadata,
    load_bundle,
)

log = logging.getLogger(__name__)

CUDA_OPTIONS = {
    # EXHAUSTIVE (the default) re-benchmarks cuDNN for every new audio length: seconds of
    # stall per unseen shape. HEURISTIC picks at once (onnxruntime#19838).
    "cudnn_conv_algo_search": "HEURISTIC",
    # Grow the arena by what is asked, not by doubling: varied lengths otherwise balloon it.
    "arena_extend_strategy": "kSameAsRequested",
}


def choose_model(
    bundle: Path, metadata: BundleMetadata, device: str, int8: bool
) -> tuple[Path, list]:
    """(ONNX file, providers) for `device` (auto|cpu|cuda)."""
    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if device == "cuda" and not has_cuda:
        raise RuntimeError(
            "device=cuda, but this onnxruntime has no CUDA provider "
            "(install onnxruntime-gpu, the `serve` extra, on a GPU host)"
        )
    if device in ("cuda", "auto") and has_cuda and MODEL_FP16 in metadata.files:
        return bundle / MODEL_FP16, [
            ("CUDAExecutionProvider", CUDA_OPTIONS),
            "CPUExecutionProvider",
        ]
    if int8 and MODEL_INT8 in metadata.files:
        return bundle / MODEL_INT8, ["CPUExecutionProvider"]
    return bundle / MODEL_FP32, ["CPUExecutionProvider"]


class OnnxBackend:
    """clips (float32 [samples] at the bundle's rate) -> logits [B, C]; see the module doc."""

    def __init__(self, bundle: Path, device: str = "auto", int8: bool = False):
        self.metadata = load_bundle(bundle)  # checks every sha256: a corrupt bundle stops here
        self.model_file, providers = choose_model(bundle, self.metadata, device, int8)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        # onnxruntime's intra-op threads spin after each run by default, burning the cores
        # the event loop needs to parse and decode the next requests. Off, the service used
        # half the CPU per request (14 -> 7 ms at one client, tiny model, 2 cores;
        # docs/service-profile.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(self.model_file), options, providers=providers)
        self.provider = self.session.get_providers()[0]
        log.info("serving %s with %s", self.model_file.name, self.provider)

    @property
    def labels(self) -> list[str]:
        return self.metadata.labels

    def infer(self, clips: list[np.ndarray]) -> np.ndarray:
        if self.metadata.do_normalize:
            clips = [normalize_clip(c) for c in clips]
        values, mask = pad_batch(clips)
        logits = self.session.run(None, {INPUT_VALUES: values, ATTENTION_MASK: mask})[0]
        return np.asarray(logits, dtype=np.float32)

    def warm_up(self, batch_size: int, seconds: float) -> float:
        """One full batch, so the first request pays no start-up cost; returns seconds taken."""
        start = time.perf_counter()
        samples = int(seconds * self.metadata.sample_rate_hz)
        rng = np.random.default_rng(0)
        self.infer([0.01 * rng.standard_normal(samples).astype(np.float32)] * batch_size)
        return time.perf_counter() - start
