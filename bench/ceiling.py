"""The GPU compute ceiling that engine throughput is measured against (stdlib only: the
simulated engine, which needs no torch, shares it with the engine benchmark)."""

from __future__ import annotations

# Compute per second of 16 kHz audio at 2 FLOP per MAC. Base: conv feature encoder ≈ 2.45 GMAC
# + transformer ≈ 4.4 GMAC.
GFLOP_PER_AUDIO_S = {"base": 14.0, "large": 36.0}
PEAK_FP16_TFLOPS = 790.0  # H100/H200 dense fp16 (no sparsity)
