"""The EmoDistill training objective (poster eq. 1-5) as one torch module.

Responsible for: combining the three loss families for one batch,

    L = α (KL_L + KL_P) + β (cos_L + cos_P) + γ CE,

and reporting each term separately for logging. Switched-off terms (a disabled teacher or a
zero weight) are never computed and are an exact 0.0, so a NaN in an input that is not used
cannot reach the total.

Does not know: where logits or embeddings come from (student, teachers, projection heads),
the optimiser, or how a batch is built. Teacher names live in `TEACHERS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import LossConfig

TEACHERS: tuple[str, ...] = ("linguistic", "prosodic")


@dataclass(frozen=True)
class LossTerms:
    """Scalar tensors of one batch; `total` is the one to back-propagate."""

    total: Tensor
    ce: Tensor
    kl_linguistic: Tensor
    kl_prosodic: Tensor
    cos_linguistic: Tensor
    cos_prosodic: Tensor

    def as_floats(self) -> dict[str, float]:
        """Each term as a Python float, keyed by field name (for loggers)."""
        return {
            "total": float(self.total.detach()),
            "ce": float(self.ce.detach()),
            "kl_linguistic": float(self.kl_linguistic.detach()),
            "kl_prosodic": float(self.kl_prosodic.detach()),
            "cos_linguistic": float(self.cos_linguistic.detach()),
            "cos_prosodic": float(self.cos_prosodic.detach()),
        }


def kd_kl(student_logits: Tensor, teacher_logits: Tensor, tau: float) -> Tensor:
    """Hinton KD: KL(teacher_τ || student_τ) · τ², batch mean. Logits are [B, C]; returns [].

    The τ² factor keeps the gradient scale of the soft targets comparable across τ.
    """
    log_p_student = F.log_softmax(student_logits / tau, dim=-1)
    p_teacher = F.softmax(teacher_logits.detach() / tau, dim=-1)
    return F.kl_div(log_p_student, p_teacher, reduction="batchmean") * tau**2


def negative_cosine(projected: Tensor, target: Tensor) -> Tensor:
    """−cos(z'_t, z_t) averaged over the batch. Both [B, D_t]; returns []. Range [-1, 1]."""
    return -F.cosine_similarity(projected, target.detach(), dim=-1).mean()


class EmoDistillLoss(torch.nn.Module):
    """L_EmoDistill = α L_logits + β L_embeddings + γ L_CE for one batch."""

    def __init__(self, config: LossConfig) -> None:
        super().__init__()
        self.config = config
        self.tau = {"linguistic": config.tau_linguistic, "prosodic": config.tau_prosodic}
        self.enabled = {"linguistic": config.use_linguistic, "prosodic": config.use_prosodic}

    def forward(
        self,
        student_logits: Tensor,
        labels: Tensor,
        teacher_logits: Mapping[str, Tensor],
        projected: Mapping[str, Tensor],
        teacher_embeddings: Mapping[str, Tensor],
    ) -> LossTerms:
        """Compute every term of eq. 5.

        Args:
            student_logits: [B, C] student class scores z_S.
            labels: [B] int64 class indices; -100 (data.NO_LABEL) where a clip has none.
            teacher_logits: teacher name -> [B, C] logits z_T (targets; detached here).
            projected: teacher name -> [B, D_t] student projection z'_t.
            teacher_embeddings: teacher name -> [B, D_t] teacher embedding z_t (detached here).

        Only enabled teachers (`use_linguistic`, `use_prosodic`) need keys; a term whose weight
        is 0 does not read its inputs at all.

        Returns:
            LossTerms of scalar tensors; switched-off terms are exactly 0.0.
        """
        cfg = self.config
        zero = student_logits.new_zeros(())
        kl = {name: zero for name in TEACHERS}
        cos = {name: zero for name in TEACHERS}
        for name in TEACHERS:
            if not self.enabled[name]:
                continue
            if cfg.alpha != 0:
                kl[name] = kd_kl(
                    student_logits, _get(teacher_logits, name, "teacher_logits"), self.tau[name]
                )
            if cfg.beta != 0:
                cos[name] = negative_cosine(
                    _get(projected, name, "projected"),
                    _get(teacher_embeddings, name, "teacher_embeddings"),
                )
        # Clips rated only in dimensions carry label -100, which cross-entropy ignores; a
        # batch of such clips alone has no CE term at all (its mean would be 0/0).
        labelled = cfg.gamma != 0 and bool((labels >= 0).any())
        ce = F.cross_entropy(student_logits, labels) if labelled else zero

        # Sum only the active parts: 0 * NaN would be NaN, so weighting a skipped term by 0 is
        # not enough to keep it out.
        total = zero
        if cfg.alpha != 0:
            total = total + cfg.alpha * (kl["linguistic"] + kl["prosodic"])
        if cfg.beta != 0:
            total = total + cfg.beta * (cos["linguistic"] + cos["prosodic"])
        if cfg.gamma != 0:
            total = total + cfg.gamma * ce
        return LossTerms(
            total=total,
            ce=ce,
            kl_linguistic=kl["linguistic"],
            kl_prosodic=kl["prosodic"],
            cos_linguistic=cos["linguistic"],
            cos_prosodic=cos["prosodic"],
        )


def _get(mapping: Mapping[str, Tensor], name: str, what: str) -> Tensor:
    if name not in mapping:
        raise KeyError(
            f"{what} has no entry for the enabled {name} teacher "
            f"(got keys {sorted(mapping)}); pass it or set use_{name}=False"
        )
    return mapping[name]
