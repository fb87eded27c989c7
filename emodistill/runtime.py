"""The model behind the batcher: a bundle's ONNX student on onnxruntime.

Chooses the provider and file (CUDA with model.fp16.onnx, else CPU with model.onnx or
model.int8.onnx), says which and why, normalises and pads clips as the bundle says, and
returns the outputs: logits [B, C], with a bundle's dimensions beside them ([B, C + D]).
`device=cuda` that cannot have CUDA raises CudaUnavailable with the cause.
Knows nothing of HTTP or queues.
"""

from __future__ import annotations

import copy
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
from emodistill.gpu import CPU_PROVIDER, CUDA_PROVIDER, CudaUnavailable, diagnose_cuda

log = logging.getLogger(__name__)

CUDA_OPTIONS = {
    # EXHAUSTIVE (the default) re-benchmarks cuDNN for every new audio length: seconds of
    # stall per unseen shape. HEURISTIC picks at once (onnxruntime#19838).
    "cudnn_conv_algo_search": "HEURISTIC",
    # Grow the arena by what is asked, not by doubling: varied lengths otherwise balloon it.
    "arena_extend_strategy": "kSameAsRequested",
}


def choose_device(device: str) -> tuple[bool, str]:
    """(use CUDA, why) for `device` (auto|cpu|cuda). cuda that cannot attach raises
    CudaUnavailable with the cause; auto falls back to the CPU with a WARNING saying why."""
    if device == "cpu":
        return False, "device=cpu"
    try:
        return True, diagnose_cuda(ort)
    except CudaUnavailable as err:
        if device == "cuda":
            raise
        log.warning("device=auto: no GPU, serving on the CPU: %s", err)
        return False, f"no GPU: {err}"


def choose_model(metadata: BundleMetadata, cuda: bool, int8: bool) -> str:
    """The bundle's file for the device: fp16 on CUDA, never on the CPU (fp16 there is slow
    and less exact); int8 only on the CPU, and only when asked for."""
    if cuda and MODEL_FP16 in metadata.files:
        return MODEL_FP16
    if not cuda and int8 and MODEL_INT8 in metadata.files:
        return MODEL_INT8
    return MODEL_FP32


def make_session(path: Path, cuda: bool = False, threads: int = 0) -> ort.InferenceSession:
    """The one way a bundle's ONNX file is opened, as the service runs it: the service, the
    Python API, export's parity figures and the benchmarks all use it. `cuda`: the CUDA
    provider first (with CUDA_OPTIONS), the CPU for what it does not run. `threads`: the
    CPU's threads per call (0: onnxruntime's default, one per core; emodistill.streams
    says when fewer pay). The answers do not depend on it."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    # onnxruntime's intra-op threads spin after each run by default, burning the cores
    # the event loop needs to parse and decode the next requests. Off, the service used
    # half the CPU per request (14 -> 7 ms at one client, tiny model, 2 cores;
    # docs/service-profile.md).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers: list = [(CUDA_PROVIDER, CUDA_OPTIONS)] if cuda else []
    # onnxruntime 1.31 crashes (SIGSEGV) building a CPU session of a WavLM fp16 graph in its
    # NCHWc layout pass. fp16 runs on the CPU only for export's parity figures (choose_model).
    disabled = ["NchwcTransformer"] if not cuda and Path(path).name == MODEL_FP16 else []
    return ort.InferenceSession(
        str(path), options, providers=[*providers, CPU_PROVIDER], disabled_optimizers=disabled
    )


class OnnxBackend:
    """clips (float32 [samples] at the bundle's rate) -> logits [B, C], or [B, C + D] with
    the dimensions after the logits (emodistill.pipeline says why); see the module doc."""

    def __init__(self, bundle: Path, device: str = "auto", int8: bool = False):
        self.metadata = load_bundle(bundle)  # checks every sha256: a corrupt bundle stops here
        self.threads = 0  # onnxruntime's default: a thread per core
        cuda, why = choose_device(device)
        self.model_file = bundle / choose_model(self.metadata, cuda, int8)
        self.session = make_session(self.model_file, cuda)
        self.provider = self.session.get_providers()[0]
        if cuda and self.provider != CUDA_PROVIDER:
            # Every cause we can see was checked above; this is onnxruntime's own refusal,
            # whose reason it has already logged.
            why = "onnxruntime did not attach its CUDA provider (its log above says why)"
            if device == "cuda":
                raise CudaUnavailable(why)
            self.model_file = bundle / choose_model(self.metadata, False, int8)
            log.warning("device=auto: %s; serving %s on the CPU", why, self.model_file.name)
            self.session = make_session(self.model_file, False)
            self.provider = self.session.get_providers()[0]
        log.info("serving %s with %s (%s)", self.model_file.name, self.provider, why)

    @property
    def labels(self) -> list[str]:
        return self.metadata.labels

    def with_threads(self, threads: int) -> OnnxBackend:
        """This backend with a session of `threads` CPU threads per call (0: one per core),
        the bundle not read again; itself when it already has them. `infer` is thread-safe:
        several calls may run at once on one session, sharing its weights."""
        if threads == self.threads:
            return self
        clone = copy.copy(self)
        clone.threads = threads
        clone.session = make_session(self.model_file, self.provider == CUDA_PROVIDER, threads)
        return clone

    @property
    def output_names(self) -> list[str]:
        return [spec.name for spec in self.metadata.outputs]

    def infer(self, clips: list[np.ndarray]) -> np.ndarray:
        if self.metadata.do_normalize and not self.metadata.normalized_in_graph:
            clips = [normalize_clip(c) for c in clips]  # a version-1 bundle's graph expects it
        values, mask = pad_batch(clips)
        # In bundle.json's order: logits then dimensions, either alone, or both.
        outputs = self.session.run(self.output_names, {INPUT_VALUES: values, ATTENTION_MASK: mask})
        if len(outputs) == 1:  # one output: categories (every bundle of version 1 or 2), or
            return np.asarray(outputs[0], dtype=np.float32)  # a dimensions-only bundle's
        return np.concatenate([np.asarray(o, dtype=np.float32) for o in outputs], axis=1)

    def warm_up(self, batch_size: int, seconds: float) -> float:
        """One full batch, so the first request pays no start-up cost; returns seconds taken."""
        start = time.perf_counter()
        samples = int(seconds * self.metadata.sample_rate_hz)
        rng = np.random.default_rng(0)
        self.infer([0.01 * rng.standard_normal(samples).astype(np.float32)] * batch_size)
        return time.perf_counter() - start
