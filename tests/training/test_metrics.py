"""Metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.metrics import (
    confusion_matrix,
    macro_f1,
    mean_std,
    per_class_recall,
    score,
    summarize_folds,
    unweighted_accuracy,
    weighted_accuracy,
)

Y_TRUE = [0, 0, 0, 1, 1, 2]
Y_PRED = [0, 0, 1, 1, 2, 2]


def test_confusion_matrix_rows_are_references():
    cm = confusion_matrix(Y_TRUE, Y_PRED, 4)
    expected = [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    np.testing.assert_array_equal(cm, expected)


def test_wa_and_ua_by_hand():
    cm = confusion_matrix(Y_TRUE, Y_PRED, 4)
    assert weighted_accuracy(cm) == pytest.approx(4 / 6)
    # Class 3 never occurs in the references, so UA averages the three present recalls.
    assert unweighted_accuracy(cm) == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)


def test_ua_differs_from_wa_on_imbalanced_data():
    s = score([0] * 9 + [1], [0] * 10, ["a", "b"])
    assert s.wa == pytest.approx(0.9) and s.ua == pytest.approx(0.5)
    assert s.to_dict()["confusion"] == [[9, 0], [1, 0]]


def test_empty_and_bad_inputs():
    assert math.isnan(weighted_accuracy(np.zeros((2, 2), dtype=int)))
    with pytest.raises(ValueError, match="lie in"):
        confusion_matrix([0, 2], [0, 1], 2)
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix([0, 1], [0], 2)


def test_mean_std_over_folds():
    ms = mean_std([0.5, 0.7])
    assert ms.mean == pytest.approx(0.6)
    assert ms.std == pytest.approx(math.sqrt(0.02))  # sample std, ddof = 1
    assert ms.percent() == "60.00 ± 14.14"
    assert mean_std([0.3]).std == 0.0


def test_summarize_folds_pools_confusions():
    a = score([0, 1], [0, 1], ["x", "y"])  # WA 1, UA 1
    b = score([0, 0, 1, 1], [0, 1, 1, 1], ["x", "y"])  # WA .75, UA .75
    summary = summarize_folds([a, b])
    assert summary["wa"].mean == pytest.approx(0.875)
    assert summary["pooled_wa"].mean == pytest.approx(5 / 6)
    assert summary["pooled_ua"].mean == pytest.approx((2 / 3 + 1) / 2)


def test_macro_f1_and_per_class_recall_by_hand():
    cm = confusion_matrix(Y_TRUE, Y_PRED, 4)
    # class 0: P 2/2, R 2/3 -> F1 0.8; class 1: P 1/2, R 1/2 -> 0.5; class 2: P 1/2, R 1 -> 2/3
    assert macro_f1(cm) == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert per_class_recall(cm) == pytest.approx([2 / 3, 0.5, 1.0, None])
