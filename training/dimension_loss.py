"""The dimensional objective: arousal, valence and dominance, from ratings and from teachers.

Responsible for one batch of

    L_dim = δ L_CCC(student, ratings) + ε Σ_t Σ_d w_{t,d} L_kd(student_d, teacher_t,d),

the regression analogue of EmoDistill's eq. 1: each teacher's dimensional predictions are
soft targets, weighted per dimension (valence toward the linguistic teacher, arousal toward
the prosodic one, by default). L_CCC is 1 − Lin's concordance correlation, the measure the
field reports; it is taken over the batch, so a batch with fewer than two rated rows adds an
exact 0.0. Switched-off terms are never computed, as in `distill_loss`.

Does not know: where predictions come from, the categorical terms (`distill_loss`), nor how
a batch is built. Dimension order is emodistill.bundle.DIMENSION_NAMES.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from emodistill.bundle import DIMENSION_NAMES

from .config import DimensionLossConfig
from .distill_loss import TEACHERS, _get


@dataclass(frozen=True)
class DimensionTerms:
    """Scalar tensors of one batch; `total` is the weighted sum to add to the categorical one."""

    total: Tensor
    ccc: Tensor  # mean over dimensions of 1 − CCC to the ratings
    kd_linguistic: Tensor
    kd_prosodic: Tensor

    def as_floats(self) -> dict[str, float]:
        """Each term as a float, keyed for loggers (prefixed so as not to clash)."""
        return {
            "dim_total": float(self.total.detach()),
            "dim_ccc": float(self.ccc.detach()),
            "dim_kd_linguistic": float(self.kd_linguistic.detach()),
            "dim_kd_prosodic": float(self.kd_prosodic.detach()),
        }


def concordance_loss(predicted: Tensor, target: Tensor) -> Tensor:
    """1 − CCC per column: predicted, target [N, D] -> [D], population moments.

    CCC = 2 cov / (var_p + var_t + (μ_p − μ_t)²). With N < 2 it is undefined: zeros, which
    carry no gradient. A tiny epsilon keeps a batch with no spread at all finite.
    """
    if predicted.shape[0] < 2:
        return predicted.new_zeros(predicted.shape[1])
    mean_p, mean_t = predicted.mean(dim=0), target.mean(dim=0)
    cov = ((predicted - mean_p) * (target - mean_t)).mean(dim=0)
    var_p = ((predicted - mean_p) ** 2).mean(dim=0)
    var_t = ((target - mean_t) ** 2).mean(dim=0)
    return 1 - 2 * cov / (var_p + var_t + (mean_p - mean_t) ** 2 + 1e-8)


class DimensionLoss(torch.nn.Module):
    """L_dim for one batch; see the module docstring."""

    def __init__(
        self, config: DimensionLossConfig, use_linguistic: bool = True, use_prosodic: bool = True
    ) -> None:
        super().__init__()
        self.config = config
        self.enabled = {"linguistic": use_linguistic, "prosodic": use_prosodic}
        self.weights = {
            t: torch.tensor([getattr(getattr(config, t), d) for d in DIMENSION_NAMES])
            for t in TEACHERS
        }

    def _kd(self, student: Tensor, teacher: Tensor, weights: Tensor) -> Tensor:
        if self.config.kd == "ccc":
            per_dimension = concordance_loss(student, teacher.detach())
        else:
            per_dimension = ((student - teacher.detach()) ** 2).mean(dim=0)
        return (weights.to(per_dimension) * per_dimension).sum()

    def forward(
        self,
        student: Tensor,
        ratings: Tensor,
        teacher_dimensions: Mapping[str, Tensor],
    ) -> DimensionTerms:
        """Args:
        student: [B, 3] the student's dimensions (in (0, 1)).
        ratings: [B, 3] the targets; rows of NaN are not rated and are left out.
        teacher_dimensions: teacher name -> [B, 3] its predictions (detached here);
            only enabled teachers need keys, and none when ε is 0.
        """
        cfg = self.config
        zero = student.new_zeros(())
        ccc = zero
        kd = {name: zero for name in TEACHERS}
        if cfg.delta != 0:
            rated = ~torch.isnan(ratings).any(dim=1)
            ccc = concordance_loss(student[rated], ratings[rated].to(student)).mean()
        if cfg.epsilon != 0:
            for name in TEACHERS:
                if self.enabled[name]:
                    target = _get(teacher_dimensions, name, "teacher_dimensions").to(student)
                    kd[name] = self._kd(student, target, self.weights[name])
        total = zero
        if cfg.delta != 0:
            total = total + cfg.delta * ccc
        if cfg.epsilon != 0:
            total = total + cfg.epsilon * (kd["linguistic"] + kd["prosodic"])
        return DimensionTerms(total, ccc, kd["linguistic"], kd["prosodic"])
