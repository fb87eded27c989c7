"""The student's outputs on whole clips, and the figures made of them (one fold's evaluation).

Responsible for: running a student over uncropped clips in length-sorted batches (logits and,
with the head, dimensions), and scoring them: WA/UA over the clips that have a category, CCC
per dimension over the rated ones. Knows nothing of training, teachers or folds.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np
import torch

from emodistill.bundle import DIMENSION_NAMES
from student.model import EmoDistillStudent

from .data import Clip, ClipDataset, Collator, eval_batches, ratings_of
from .metrics import Scores, concordance_per_dimension, mean_concordance, score_logits


@torch.no_grad()
def predict_student(
    model: EmoDistillStudent,
    clips: list[Clip],
    n_labels: int,
    device: torch.device,
    max_batch_audio_s: float,
    autocast: AbstractContextManager[object] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Logits [N, C] and dimensions [N, 3] (None without the head), float32, of `model` on
    whole (uncropped) clips. Logits, not probabilities: calibration fits its temperature on
    them and the runtime divides them."""
    model.eval()
    dataset = ClipDataset(clips)
    collate = Collator.of(clips)
    logits = np.zeros((len(clips), n_labels), dtype=np.float32)
    dims = np.zeros((len(clips), 3), dtype=np.float32)
    for indices in eval_batches([c.duration_s for c in clips], max_batch_audio_s):
        batch = collate([dataset[i] for i in indices])
        with autocast or contextlib.nullcontext():
            out = model(batch.input_values.to(device), batch.attention_mask.to(device))
        logits[indices] = out.logits.float().cpu().numpy()
        if out.dimensions is not None:
            dims[indices] = out.dimensions.float().cpu().numpy()
    return logits, dims if model.dimension_head is not None else None


def score_clips(clips: list[Clip], logits: np.ndarray, labels: list[str]) -> Scores:
    """WA, UA and confusion over the clips that have a label."""
    labelled = [i for i, c in enumerate(clips) if c.label >= 0]
    return score_logits([clips[i].label for i in labelled], logits[labelled], labels)


@dataclass(frozen=True)
class Validation:
    """One evaluation of the student on the validation clips."""

    scores: Scores  # WA/UA over the clips with a category (NaN when there are none)
    ccc: dict[str, float] | None  # CCC per dimension; None without the dimensional head

    def criterion(self, categorical: bool) -> float:
        """What early stopping maximises: UA when the corpus has categories (as it always
        did), else the mean CCC over the dimensions."""
        if categorical or self.ccc is None:
            return self.scores.ua
        return mean_concordance(self.ccc)


def validation_of(
    clips: list[Clip], labels: list[str], logits: np.ndarray, dims: np.ndarray | None
) -> Validation:
    """Scores of logits [N, C] over the labelled clips and CCC per dimension of dims [N, 3]
    (None: no dimensional head) over the rated ones."""
    ccc = None
    if dims is not None:
        ccc = concordance_per_dimension(dims, ratings_of(clips), DIMENSION_NAMES)
    return Validation(score_clips(clips, logits, labels), ccc)
