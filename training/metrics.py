"""Classification metrics, in one place: WA, UA, macro-F1, confusion matrix, mean ± std.

WA (weighted accuracy) is plain accuracy over all utterances. UA (unweighted accuracy) is
the mean of per-class recalls over the classes present in the references, so a fold whose
test speaker never shows a class is not penalised for it; macro-F1 averages over the same
classes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> np.ndarray:
    """[n_classes, n_classes] int64 counts; rows are references, columns predictions."""
    true = np.asarray(y_true, dtype=np.int64)
    pred = np.asarray(y_pred, dtype=np.int64)
    if true.shape != pred.shape:
        raise ValueError(f"y_true {true.shape} and y_pred {pred.shape} differ in shape")
    if true.size and (min(true.min(), pred.min()) < 0 or max(true.max(), pred.max()) >= n_classes):
        raise ValueError(f"class indices must lie in [0, {n_classes})")
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (true, pred), 1)
    return cm


def weighted_accuracy(cm: np.ndarray) -> float:
    total = cm.sum()
    return float(np.trace(cm) / total) if total else math.nan


def unweighted_accuracy(cm: np.ndarray) -> float:
    support = cm.sum(axis=1)
    present = support > 0
    if not present.any():
        return math.nan
    recalls = np.diag(cm)[present] / support[present]
    return float(recalls.mean())


def per_class_recall(cm: np.ndarray) -> list[float | None]:
    """Recall of each class [C]; None for a class absent from the references."""
    support = cm.sum(axis=1)
    return [float(cm[i, i] / n) if n else None for i, n in enumerate(support)]


def macro_f1(cm: np.ndarray) -> float:
    """Mean F1 over the classes present in the references (a class never predicted has F1 0)."""
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    present = np.flatnonzero(support > 0)
    if present.size == 0:
        return math.nan
    f1 = [2 * cm[i, i] / (support[i] + predicted[i]) for i in present]
    return float(np.mean(f1))


@dataclass(frozen=True)
class Scores:
    """One evaluation: WA and UA as fractions, the confusion matrix and its label order."""

    wa: float
    ua: float
    confusion: list[list[int]]
    labels: list[str]

    def to_dict(self) -> dict[str, object]:
        return {"wa": self.wa, "ua": self.ua, "confusion": self.confusion, "labels": self.labels}


def score(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]) -> Scores:
    cm = confusion_matrix(y_true, y_pred, len(labels))
    return Scores(weighted_accuracy(cm), unweighted_accuracy(cm), cm.tolist(), list(labels))


def score_logits(y_true: Sequence[int], logits: np.ndarray, labels: Sequence[str]) -> Scores:
    """Scores of the argmax of logits [N, C] against y_true [N]. No rows (a corpus without
    categories, C = 0) gives NaN WA and UA rather than an argmax of nothing."""
    predicted = logits.argmax(axis=1).tolist() if len(y_true) else []
    return score(y_true, predicted, labels)


def mean_concordance(ccc: dict[str, float]) -> float:
    """The mean CCC over dimensions: what early stopping maximises without categories."""
    return float(np.mean(list(ccc.values())))


@dataclass(frozen=True)
class MeanStd:
    mean: float
    std: float  # sample standard deviation over folds (ddof=1); 0 for a single fold
    n: int

    def percent(self) -> str:
        return f"{100 * self.mean:.2f} ± {100 * self.std:.2f}"


def mean_std(values: Sequence[float]) -> MeanStd:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        raise ValueError("no values to summarise")
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return MeanStd(float(arr.mean()), std, int(arr.size))


def summarize_folds(per_fold: Sequence[Scores]) -> dict[str, MeanStd]:
    """WA and UA over folds, plus the pooled confusion matrix's WA/UA for reference."""
    pooled = np.sum([np.asarray(s.confusion) for s in per_fold], axis=0)
    return {
        "wa": mean_std([s.wa for s in per_fold]),
        "ua": mean_std([s.ua for s in per_fold]),
        "pooled_wa": MeanStd(weighted_accuracy(pooled), 0.0, 1),
        "pooled_ua": MeanStd(unweighted_accuracy(pooled), 0.0, 1),
    }


def concordance(
    predicted: Sequence[float] | np.ndarray, target: Sequence[float] | np.ndarray
) -> float:
    """Lin's concordance correlation coefficient, CCC = 2 cov / (var_p + var_t + (μ_p − μ_t)²),
    with population (biased) moments; NaN for fewer than two values or none spread."""
    p = np.asarray(predicted, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    if p.shape != t.shape:
        raise ValueError(f"predicted {p.shape} and target {t.shape} differ in shape")
    if p.size < 2:
        return math.nan
    cov = float(((p - p.mean()) * (t - t.mean())).mean())
    denominator = float(p.var() + t.var() + (p.mean() - t.mean()) ** 2)
    return 2 * cov / denominator if denominator > 0 else math.nan


def concordance_per_dimension(
    predicted: np.ndarray, target: np.ndarray, names: Sequence[str]
) -> dict[str, float]:
    """predicted [N, D], target [N, D] (NaN rows: not rated, skipped) -> name -> CCC."""
    rated = ~np.isnan(target).any(axis=1)
    return {
        name: concordance(predicted[rated, d], target[rated, d]) for d, name in enumerate(names)
    }
