"""Where the student loop stands, as saved with each checkpoint so a killed run resumes.

Holds the counters and early-stopping record only; weights, optimizer and scheduler are
saved beside it by the trainer. Knows nothing of models or data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from .metrics import Scores


@dataclass
class TrainerState:
    epoch: int = 0  # epochs finished
    step_in_epoch: int = 0  # optimizer steps done in the epoch under way
    step: int = 0  # optimizer steps done in all epochs
    # The best early-stopping criterion so far: validation UA, or the mean validation CCC of a
    # student without categories (the name is the categorical case's, which saved states use).
    best_ua: float = -1.0
    best_epoch: int = -1  # the epoch (1-based) that gave `best_ua`; -1 before any
    bad_epochs: int = 0  # epochs since `best_epoch` without a better UA (early stopping)
    best_val: Scores | None = None  # the validation scores of `best_epoch`
    best_val_ccc: dict[str, float] | None = None  # its CCC per dimension; None: no such head

    def to_dict(self) -> dict[str, Any]:
        """Plain Python values (Scores as a dict), for `torch.save` and JSON alike."""
        return asdict(self)

    @classmethod
    def from_dict(cls, saved: Mapping[str, Any]) -> TrainerState:
        """The inverse of `to_dict`; unknown or missing keys are errors (another version),
        except `best_val_ccc`, which states saved before it existed lack."""
        expected = {f.name for f in fields(cls)}
        # A state saved before `best_val_ccc` existed lacks it and resumes as it was.
        saved = {"best_val_ccc": None, **saved}
        if set(saved) != expected:
            raise ValueError(f"trainer state has keys {sorted(saved)}, expected {sorted(expected)}")
        best_val = saved["best_val"]
        return cls(**{**saved, "best_val": Scores(**best_val) if best_val is not None else None})
