"""What every peer server (LitServe, Ray Serve, Triton) runs, so that only the serving stack
differs from ours: the same decoder with the same limits (emodistill.audio_input.decode_upload,
InferenceOptions' defaults), the same onnxruntime session (emodistill.runtime.OnnxBackend, which
opens the bundle's file with make_session) and the same answer (calibrated probabilities).

It also counts clips and model calls into a small JSON file after each call, which the harness
reads for the mean batch size (the peers have no /metrics of ours). Knows nothing of HTTP or of
any serving framework.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from emodistill.audio_input import decode_upload
from emodistill.options import InferenceOptions
from emodistill.runtime import OnnxBackend
from emodistill.scoring import probabilities

STATS_ENV = "EMODISTILL_PEER_STATS"  # where the counts go (set by bench/peers.py)


class PeerModel:
    """decode(bytes) -> float32 [T]; predict(clips) -> one {label: probability} per clip."""

    def __init__(self, bundle: Path, stats: Path | None = None):
        self.backend = OnnxBackend(Path(bundle), device="cpu")
        metadata = self.backend.metadata
        self.labels = metadata.labels
        self.rate_hz = metadata.sample_rate_hz
        self.temperature = metadata.calibration.temperature if metadata.calibration else 1.0
        self.limits = InferenceOptions().audio_limits(self.rate_hz)
        stats_path = stats or os.environ.get(STATS_ENV)
        self.stats = Path(stats_path) if stats_path else None
        self.clips = self.calls = 0

    def decode(self, data: bytes, content_type: str | None = "audio/wav") -> np.ndarray:
        return decode_upload(data, self.limits, content_type).samples

    def probabilities(self, clips: list[np.ndarray]) -> np.ndarray:
        """[B, C] float32 for clips of any lengths (padded and masked as ours pads them)."""
        logits = self.backend.infer(clips)
        self.clips += len(clips)
        self.calls += 1
        if self.stats is not None:
            self.stats.write_text(json.dumps({"clips": self.clips, "calls": self.calls}))
        return probabilities(logits, self.temperature).astype(np.float32)

    def predict(self, clips: list[np.ndarray]) -> list[dict[str, float]]:
        return [
            dict(zip(self.labels, map(float, row), strict=True))
            for row in self.probabilities(clips)
        ]


def read_stats(path: Path) -> tuple[float, float]:
    """(clips, calls) so far; zeros before the first call."""
    if not path.is_file():
        return 0.0, 0.0
    try:
        data = json.loads(path.read_text())
    except ValueError:  # caught mid-write: the next read has it
        return 0.0, 0.0
    return float(data["clips"]), float(data["calls"])
