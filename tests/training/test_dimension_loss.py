"""DimensionLoss against values computed by hand with `math` (tolerance 1e-6)."""

from __future__ import annotations

import math

import pytest
import torch

from training.config import DimensionLossConfig, DimensionWeights
from training.dimension_loss import DimensionLoss, concordance_loss
from training.metrics import concordance

TOL = 1e-6
NAN = math.nan

# B = 3 rows, D = 3 dimensions (arousal, valence, dominance).
STUDENT = [[0.2, 0.9, 0.5], [0.6, 0.1, 0.4], [0.9, 0.5, 0.7]]
RATINGS = [[0.1, 0.8, 0.6], [0.7, 0.3, 0.2], [NAN, NAN, NAN]]  # row 2 not rated
TEACHER = {
    "linguistic": [[0.5, 0.7, 0.5], [0.4, 0.2, 0.5], [0.6, 0.6, 0.5]],
    "prosodic": [[0.1, 0.5, 0.3], [0.5, 0.5, 0.5], [0.8, 0.4, 0.9]],
}
WEIGHTS = {"linguistic": (0.25, 0.75, 0.5), "prosodic": (0.75, 0.25, 0.5)}


def ccc_by_hand(x: list[float], y: list[float]) -> float:
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    cov = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / n
    vx = sum((a - mx) ** 2 for a in x) / n
    vy = sum((b - my) ** 2 for b in y) / n
    return 2 * cov / (vx + vy + (mx - my) ** 2)


def column(rows: list[list[float]], d: int) -> list[float]:
    return [r[d] for r in rows]


def t(x: list, requires_grad: bool = False) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64, requires_grad=requires_grad)


def run(**cfg: object) -> dict[str, float]:
    loss = DimensionLoss(DimensionLossConfig(**cfg))
    teachers = {k: t(v) for k, v in TEACHER.items()}
    return loss(t(STUDENT), t(RATINGS), teachers).as_floats()


def test_concordance_loss_is_one_minus_lins_ccc_per_column():
    got = concordance_loss(t(STUDENT), t(TEACHER["prosodic"]))
    for d in range(3):
        expected = 1 - ccc_by_hand(column(STUDENT, d), column(TEACHER["prosodic"], d))
        assert float(got[d]) == pytest.approx(expected, abs=TOL)
        # The metric the reports print is the same CCC.
        metric = concordance(column(STUDENT, d), column(TEACHER["prosodic"], d))
        assert metric == pytest.approx(1 - expected, abs=TOL)
    assert float(concordance_loss(t(STUDENT), t(STUDENT)).abs().max()) < 1e-6  # CCC = 1


def test_each_term_and_total_by_hand():
    got = run(delta=2.0, epsilon=0.5)
    rated = STUDENT[:2], RATINGS[:2]
    ccc = sum(1 - ccc_by_hand(column(rated[0], d), column(rated[1], d)) for d in range(3)) / 3
    kd = {
        name: sum(
            w * (1 - ccc_by_hand(column(STUDENT, d), column(TEACHER[name], d)))
            for d, w in enumerate(WEIGHTS[name])
        )
        for name in TEACHER
    }
    assert got["dim_ccc"] == pytest.approx(ccc, abs=TOL)
    assert got["dim_kd_linguistic"] == pytest.approx(kd["linguistic"], abs=TOL)
    assert got["dim_kd_prosodic"] == pytest.approx(kd["prosodic"], abs=TOL)
    expected = 2.0 * ccc + 0.5 * (kd["linguistic"] + kd["prosodic"])
    assert got["dim_total"] == pytest.approx(expected, abs=TOL)


def test_mse_kd_weighted_per_dimension():
    zero = DimensionWeights(arousal=0, valence=0, dominance=0)
    got = run(delta=0, kd="mse", prosodic=zero)
    expected = sum(
        w * sum((s[d] - tt[d]) ** 2 for s, tt in zip(STUDENT, TEACHER["linguistic"], strict=True))
        for d, w in enumerate(WEIGHTS["linguistic"])
    ) / len(STUDENT)
    assert got["dim_kd_linguistic"] == pytest.approx(expected, abs=TOL)
    assert got["dim_kd_prosodic"] == 0.0
    assert got["dim_total"] == pytest.approx(expected, abs=TOL)


def test_defaults_lean_valence_to_text_and_arousal_to_acoustics():
    config = DimensionLossConfig()
    assert config.linguistic.valence > config.prosodic.valence
    assert config.prosodic.arousal > config.linguistic.arousal


def test_fewer_than_two_rated_rows_add_an_exact_zero():
    ratings = [RATINGS[0], [NAN] * 3, [NAN] * 3]
    loss = DimensionLoss(DimensionLossConfig(epsilon=0))
    terms = loss(t(STUDENT), t(ratings), {})
    assert float(terms.ccc) == 0.0 and float(terms.total) == 0.0


def test_disabled_teacher_is_never_read_and_nan_does_not_leak():
    loss = DimensionLoss(DimensionLossConfig(), use_prosodic=False)
    teachers = {"linguistic": t(TEACHER["linguistic"])}  # no prosodic key at all
    terms = loss(t(STUDENT), t(RATINGS), teachers)
    assert float(terms.kd_prosodic) == 0.0 and math.isfinite(float(terms.total))
    with pytest.raises(KeyError, match="prosodic"):
        DimensionLoss(DimensionLossConfig())(t(STUDENT), t(RATINGS), teachers)


def test_gradients_reach_the_student_only():
    student = t(STUDENT, requires_grad=True)
    teachers = {k: t(v, requires_grad=True) for k, v in TEACHER.items()}
    DimensionLoss(DimensionLossConfig())(student, t(RATINGS), teachers).total.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert all(v.grad is None for v in teachers.values())
