"""EmoDistillLoss against values computed by hand with `math` (tolerance 1e-6)."""

from __future__ import annotations

import math

import pytest
import torch

from training.config import LossConfig
from training.distill_loss import TEACHERS, EmoDistillLoss, LossTerms

TOL = 1e-6

# B = 2, C = 2. Chosen so that each pair has a different, non-trivial KL.
STUDENT = [[1.0, 0.0], [0.0, 2.0]]
LABELS = [0, 1]
TEACHER = {"linguistic": [[0.0, 1.0], [2.0, 0.0]], "prosodic": [[3.0, 0.0], [0.0, 0.5]]}
# Row 0: cos([1, 0], [1, 1]) = 1/√2; row 1: cos([0, 2], [0, -3]) = -1.
PROJ = {"linguistic": [[1.0, 0.0], [0.0, 2.0]], "prosodic": [[2.0, 2.0], [1.0, 0.0]]}
EMB = {"linguistic": [[1.0, 1.0], [0.0, -3.0]], "prosodic": [[1.0, 1.0], [1.0, 0.0]]}


def softmax(row: list[float], tau: float = 1.0) -> list[float]:
    exps = [math.exp(x / tau) for x in row]
    return [e / sum(exps) for e in exps]


def kl_by_hand(student: list[list[float]], teacher: list[list[float]], tau: float) -> float:
    """Σ_b KL(p_T || p_S) / B at temperature τ, without the τ² factor."""
    total = 0.0
    for s_row, t_row in zip(student, teacher, strict=True):
        p_s, p_t = softmax(s_row, tau), softmax(t_row, tau)
        total += sum(t * (math.log(t) - math.log(s)) for s, t in zip(p_s, p_t, strict=True))
    return total / len(student)


def ce_by_hand(student: list[list[float]], labels: list[int]) -> float:
    return -sum(math.log(softmax(r)[y]) for r, y in zip(student, labels, strict=True)) / len(labels)


def inputs(requires_grad: bool = False) -> tuple:
    def t(x: list) -> torch.Tensor:
        return torch.tensor(x, dtype=torch.float64, requires_grad=requires_grad)

    return (
        t(STUDENT),
        torch.tensor(LABELS, dtype=torch.int64),
        {k: t(v) for k, v in TEACHER.items()},
        {k: t(v) for k, v in PROJ.items()},
        {k: t(v) for k, v in EMB.items()},
    )


def run(**cfg: object) -> LossTerms:
    return EmoDistillLoss(LossConfig(**cfg))(*inputs())


def test_teacher_names():
    assert TEACHERS == ("linguistic", "prosodic")


def test_each_term_and_weighted_total_by_hand():
    terms = run(alpha=0.5, beta=2.0, gamma=3.0, tau_linguistic=2.0, tau_prosodic=0.5)
    kl_l = kl_by_hand(STUDENT, TEACHER["linguistic"], 2.0) * 2.0**2
    kl_p = kl_by_hand(STUDENT, TEACHER["prosodic"], 0.5) * 0.5**2
    cos_l = -(1 / math.sqrt(2) + -1.0) / 2
    cos_p = -(1.0 + 1.0) / 2  # both prosodic rows point the same way as their targets
    ce = ce_by_hand(STUDENT, LABELS)
    got = terms.as_floats()
    assert got["kl_linguistic"] == pytest.approx(kl_l, abs=TOL)
    assert got["kl_prosodic"] == pytest.approx(kl_p, abs=TOL)
    assert got["cos_linguistic"] == pytest.approx(cos_l, abs=TOL)
    assert got["cos_prosodic"] == pytest.approx(cos_p, abs=TOL)
    assert got["ce"] == pytest.approx(ce, abs=TOL)
    expected = 0.5 * (kl_l + kl_p) + 2.0 * (cos_l + cos_p) + 3.0 * ce
    assert got["total"] == pytest.approx(expected, abs=TOL)
    assert set(got) == {
        "total",
        "ce",
        "kl_linguistic",
        "kl_prosodic",
        "cos_linguistic",
        "cos_prosodic",
    }


def test_single_pair_cosine_is_minus_one_over_root_two():
    loss = EmoDistillLoss(LossConfig(alpha=0, gamma=0, use_prosodic=False))
    z = torch.zeros(1, 2)
    terms = loss(
        z,
        torch.tensor([0]),
        {},
        {"linguistic": torch.tensor([[1.0, 0.0]])},
        {"linguistic": torch.tensor([[1.0, 1.0]])},
    )
    assert float(terms.cos_linguistic) == pytest.approx(-1 / math.sqrt(2), abs=TOL)
    assert float(terms.total) == pytest.approx(-1 / math.sqrt(2), abs=TOL)


def test_tau_squared_factor():
    terms = run(beta=0, gamma=0, tau_linguistic=4.0, use_prosodic=False)
    unscaled = kl_by_hand(STUDENT, TEACHER["linguistic"], 4.0)
    assert unscaled > 1e-3  # the check below would be vacuous near 0
    assert float(terms.kl_linguistic) == pytest.approx(16 * unscaled, abs=TOL)


@pytest.mark.parametrize(
    ("cfg", "zeroed"),
    [
        ({"alpha": 0.0}, ["kl_linguistic", "kl_prosodic"]),
        ({"beta": 0.0}, ["cos_linguistic", "cos_prosodic"]),
        ({"gamma": 0.0}, ["ce"]),
        ({"use_linguistic": False}, ["kl_linguistic", "cos_linguistic"]),
        ({"use_prosodic": False}, ["kl_prosodic", "cos_prosodic"]),
        (
            {"use_linguistic": False, "use_prosodic": False},
            ["kl_linguistic", "kl_prosodic", "cos_linguistic", "cos_prosodic"],
        ),
    ],
)
def test_switched_off_terms_are_exactly_zero(cfg: dict, zeroed: list[str]):
    got = run(**cfg).as_floats()
    for name in zeroed:
        assert got[name] == 0.0, name
    full = run().as_floats()  # α = β = γ = 1: total is the plain sum of the live terms
    live = [k for k in full if k != "total" and k not in zeroed]
    for name in live:
        assert got[name] == pytest.approx(full[name], abs=TOL)
    assert got["total"] == pytest.approx(sum(full[k] for k in live), abs=TOL)


def test_nan_in_disabled_teacher_does_not_leak():
    student, labels, logits, proj, emb = inputs()
    for mapping in (logits, proj, emb):
        mapping["prosodic"] = torch.full_like(mapping["prosodic"], math.nan)
    terms = EmoDistillLoss(LossConfig(use_prosodic=False))(student, labels, logits, proj, emb)
    assert math.isfinite(float(terms.total))
    assert float(terms.kl_prosodic) == 0.0 and float(terms.cos_prosodic) == 0.0


def test_nan_in_zero_weighted_input_does_not_leak():
    student, labels, logits, proj, emb = inputs()
    for name in TEACHERS:
        logits[name] = torch.full_like(logits[name], math.inf)
        proj[name] = torch.full_like(proj[name], math.nan)
    terms = EmoDistillLoss(LossConfig(alpha=0, beta=0))(student, labels, logits, proj, emb)
    assert float(terms.total) == pytest.approx(ce_by_hand(STUDENT, LABELS), abs=TOL)


def test_disabled_teacher_keys_may_be_absent():
    student, labels, logits, proj, emb = inputs()
    only_l = ({"linguistic": m["linguistic"]} for m in (logits, proj, emb))
    terms = EmoDistillLoss(LossConfig(use_prosodic=False))(student, labels, *only_l)
    assert math.isfinite(float(terms.total))


def test_enabled_teacher_missing_raises_naming_it():
    student, labels, logits, proj, emb = inputs()
    del proj["prosodic"]
    with pytest.raises(KeyError, match="prosodic"):
        EmoDistillLoss(LossConfig())(student, labels, logits, proj, emb)


def test_gradients_reach_student_but_not_teachers():
    student, labels, logits, proj, emb = inputs(requires_grad=True)
    EmoDistillLoss(LossConfig())(student, labels, logits, proj, emb).total.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    for name in TEACHERS:
        assert proj[name].grad is not None and proj[name].grad.abs().sum() > 0
        assert logits[name].grad is None, name
        assert emb[name].grad is None, name
