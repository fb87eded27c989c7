"""Temperature scaling: probabilities that mean what they say.

After a fold's student is trained, one temperature T is fitted on its validation speakers'
predictions (minimum negative log-likelihood of softmax(logits / T)); the runtime divides
logits by it. Argmax, hence WA and UA, never changes. Expected calibration error over
equal-width confidence bins and NLL are recorded before and after, and a reliability diagram
shows both. Knows nothing of models: it takes logits and labels, and returns the bundle's
`Calibration` record.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from scipy.optimize import minimize_scalar

from emodistill.bundle import Calibration
from emodistill.scoring import softmax

ECE_BINS = 15
RELIABILITY_PNG = "reliability.png"  # beside each fold's metrics.json
# The search range of T: beyond it a model is broken, not merely over- or under-confident.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of `labels` [N] under softmax(logits [N, C] / T)."""
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def _bin_of(confidence: np.ndarray, bins: int) -> np.ndarray:
    """Equal-width bins of (0, 1], right edges included: (0, 1/B], (1/B, 2/B], ..."""
    return np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error: the confidence-weighted gap between confidence and
    accuracy over `bins` equal-width bins of the top probability."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    which = _bin_of(confidence, bins)
    gap = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            gap += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(gap)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T in [MIN_TEMPERATURE, MAX_TEMPERATURE] of least NLL (searched over log T)."""
    result = minimize_scalar(
        lambda log_t: nll(logits, labels, float(np.exp(log_t))),
        bounds=(np.log(MIN_TEMPERATURE), np.log(MAX_TEMPERATURE)),
        method="bounded",
    )
    return float(np.exp(result.x))


def calibrate(logits: np.ndarray, labels: np.ndarray, fitted_on: str) -> Calibration:
    """Fit T on (logits [N, C], labels [N]) -> the bundle's `calibration` record."""
    temperature = fit_temperature(logits, labels)
    return Calibration(
        temperature=temperature,
        fitted_on=fitted_on,
        clips=len(labels),
        bins=ECE_BINS,
        ece_before=ece(softmax(logits), labels),
        ece_after=ece(softmax(logits / temperature), labels),
        nll_before=nll(logits, labels),
        nll_after=nll(logits, labels, temperature),
    )


def held_out(logits: np.ndarray, labels: np.ndarray, temperature: float) -> dict[str, float]:
    """ECE and NLL of a fitted temperature on predictions it was not fitted on."""
    return {
        "clips": len(labels),
        "ece_before": ece(softmax(logits), labels),
        "ece_after": ece(softmax(logits / temperature), labels),
        "nll_before": nll(logits, labels),
        "nll_after": nll(logits, labels, temperature),
    }


def plot_reliability(
    logits: np.ndarray, labels: np.ndarray, temperature: float, title: str, path: Path
) -> None:
    """Accuracy against confidence per bin, before and after scaling, with the diagonal."""
    fig, ax = plt.subplots(figsize=(4.6, 4.2), dpi=120)
    bins = range(ECE_BINS)
    centres = (np.arange(ECE_BINS) + 0.5) / ECE_BINS
    for t, name, colour in ((1.0, "before", "#d95f02"), (temperature, "after", "#1b9e77")):
        probs = softmax(logits / t)
        confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
        which = _bin_of(confidence, ECE_BINS)
        accuracy = [correct[which == b].mean() if (which == b).any() else np.nan for b in bins]
        label = f"{name} (T={t:.2f}, ECE {ece(probs, labels):.3f})"
        ax.plot(centres, accuracy, "o-", color=colour, label=label)
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    ax.set(xlabel="confidence (top probability)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
