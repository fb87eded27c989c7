"""Temperature scaling: recovers a known temperature, lowers ECE and NLL, never moves argmax."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emodistill.bundle import Calibration
from training.calibration import calibrate, ece, fit_temperature, nll, plot_reliability


def overconfident(n: int = 4000, true_t: float = 2.5, seed: int = 0):
    """Labels drawn from softmax(z / true_t): logits z are `true_t` times too confident."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 3, (n, 4))
    p = np.exp(z / true_t)
    p /= p.sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(4, p=row) for row in p])
    return z, labels


def test_fit_recovers_a_known_temperature():
    z, labels = overconfident(true_t=2.5)
    # Tolerance 0.2: 4000 draws of a 4-way choice.
    assert fit_temperature(z, labels) == pytest.approx(2.5, abs=0.2)


def test_calibration_lowers_ece_and_nll_and_keeps_argmax():
    z, labels = overconfident()
    record = calibrate(z, labels, "test")
    assert record.ece_after < record.ece_before / 2
    assert record.nll_after < record.nll_before
    t = record.temperature
    assert ((z / t).argmax(axis=1) == z.argmax(axis=1)).all()
    assert record.bins == 15 and record.clips == len(labels)


def test_calibration_is_the_bundles_record_and_ignores_a_shift_of_the_logits():
    """calibrate returns bundle.Calibration, which bundle.json holds as is; a per-clip shift of
    the logits (log-probabilities are one) fits the same temperature."""
    z, labels = overconfident(n=1000)
    record = calibrate(z, labels, "fold 0 validation speakers")
    assert isinstance(record, Calibration)
    assert Calibration.model_validate_json(record.model_dump_json()) == record
    shifted = calibrate(z - np.log(np.exp(z).sum(axis=1, keepdims=True)), labels, "shifted")
    # Tolerance 1e-4: the bounded search stops within its own xatol of the same minimum.
    assert shifted.temperature == pytest.approx(record.temperature, rel=1e-4)
    assert shifted.nll_after == pytest.approx(record.nll_after, rel=1e-9)


def test_ece_of_a_calibrated_model_is_small_and_of_a_wrong_one_is_large():
    z, labels = overconfident(true_t=1.0, n=20_000)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    assert ece(p, labels) < 0.02  # sampling noise of 20,000 draws in 15 bins
    wrong = np.eye(4)[(labels + 1) % 4]  # certain and always wrong
    assert ece(wrong, labels) == pytest.approx(1.0)
    assert nll(np.log(np.clip(wrong, 1e-12, None)), labels) > 20


def test_reliability_diagram_is_a_png(tmp_path: Path):
    z, labels = overconfident(n=500)
    path = tmp_path / "r.png"
    plot_reliability(z, labels, 2.5, "test", path)
    assert path.read_bytes()[:4] == b"\x89PNG"
