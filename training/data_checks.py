"""What the data says about the recipe, found while a run trains, said in plain words.

Today one check: whether the words carry emotion at all. In the fixed-sentence corpora
(EmoDB, RAVDESS, CREMA-D) every sentence is spoken in every emotion, so a text-only teacher
cannot beat chance there, and distilling from it teaches the student noise. The run cannot
know that from the corpus's name (a CSV may hold anything); it sees it in the linguistic
teacher's validation UA.

Knows nothing of training: it reads scores.
"""

from __future__ import annotations

# How close to chance (1 / number of classes) the linguistic teacher's validation UA must be
# to be called "near chance": 10 points. On IEMOCAP it sits 40+ points above (71.83 % UA,
# poster Table 2); on a fixed-sentence corpus it sits at chance up to sampling noise.
NEAR_CHANCE_POINTS = 0.10
NO_LINGUISTIC_SWITCH = "loss.use_linguistic: false"


def text_near_chance(val_ua: float, n_labels: int) -> bool:
    return val_ua < 1.0 / n_labels + NEAR_CHANCE_POINTS


def linguistic_teacher_warning(val_ua: float, n_labels: int, used: bool) -> str | None:
    """A warning when the text teacher is near chance on validation and the student uses it."""
    if not used or not text_near_chance(val_ua, n_labels):
        return None
    return (
        f"warning: the linguistic teacher's validation UA is {100 * val_ua:.1f} %, near chance "
        f"({100 / n_labels:.1f} % for {n_labels} classes): the words do not carry the emotion "
        "here (fixed sentences?). Distilling from it adds noise; set "
        f"`{NO_LINGUISTIC_SWITCH}` in the run config for the paper's variant without the "
        "linguistic teacher (or run `python -m training ablate --variants no_linguistic`)."
    )
