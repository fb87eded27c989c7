"""The training probe of the GPU checklist runs the real step (tiny student, CPU)."""

from __future__ import annotations

import math

from bench.train_probe import probe


def test_one_training_step_of_the_student_is_timed():
    row = probe("tiny", batch=2, crop_s=0.5, steps=2, device="cpu", bf16=False)
    assert row["batch"] == 2 and row["steps"] == 2
    assert math.isfinite(float(row["loss"])) and float(row["loss"]) > 0
    expected = 2 * 0.5 / (float(row["ms_per_step"]) / 1000)  # audio-seconds per second
    assert math.isclose(float(row["audio_s_per_s"]), expected, rel_tol=1e-9)
