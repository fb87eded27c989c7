"""The warning that the words carry no emotion, from the linguistic teacher's validation UA."""

from __future__ import annotations

from training.data_checks import NO_LINGUISTIC_SWITCH, linguistic_teacher_warning


def test_near_chance_warns_and_names_the_switch():
    warning = linguistic_teacher_warning(0.27, n_labels=4, used=True)
    assert warning is not None
    assert "27.0 %" in warning and "25.0 % for 4 classes" in warning
    assert NO_LINGUISTIC_SWITCH == "loss.use_linguistic: false" and NO_LINGUISTIC_SWITCH in warning


def test_no_warning_when_the_text_teacher_learned_or_is_not_used():
    assert linguistic_teacher_warning(0.7183, n_labels=4, used=True) is None  # IEMOCAP's
    assert linguistic_teacher_warning(0.25, n_labels=4, used=False) is None
    assert linguistic_teacher_warning(0.36, n_labels=4, used=True) is None  # 11 points over
