"""What the student's early stopping maximises: UA with categories, the mean CCC without."""

from __future__ import annotations

import math

import pytest

from training.metrics import Scores
from training.student_eval import Validation
from training.trainer_state import TrainerState

NO_CATEGORIES = Scores(wa=math.nan, ua=math.nan, confusion=[], labels=[])
CCC = {"arousal": 0.6, "valence": 0.3, "dominance": 0.0}


def test_a_categorical_student_stops_on_ua_even_with_dimensions():
    scores = Scores(wa=0.5, ua=0.4, confusion=[[1, 0], [1, 1]], labels=["a", "b"])
    assert Validation(scores, CCC).criterion(categorical=True) == 0.4
    assert Validation(scores, None).criterion(categorical=True) == 0.4


def test_a_student_without_categories_stops_on_the_mean_ccc():
    assert Validation(NO_CATEGORIES, CCC).criterion(categorical=False) == pytest.approx(0.3)


def test_a_state_saved_before_best_val_ccc_existed_still_resumes():
    saved = TrainerState(epoch=2, best_ua=0.5, best_epoch=1).to_dict()
    del saved["best_val_ccc"]
    assert TrainerState.from_dict(saved) == TrainerState(epoch=2, best_ua=0.5, best_epoch=1)
    resumed = TrainerState.from_dict(TrainerState(best_val_ccc=CCC).to_dict())
    assert resumed.best_val_ccc == CCC
    with pytest.raises(ValueError, match="expected"):
        TrainerState.from_dict({**saved, "unknown": 1})
