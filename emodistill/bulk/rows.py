"""The rows of a bulk run's output: one per file, then one per segment of that file.

Columns, in order: path, kind (file|segment), start_s, end_s, duration_s and speech_s (file
rows), label and one `p_<label>` per label in the bundle's order (only for a bundle with
categories), then (only for a bundle with dimensions) one column per dimension (arousal,
valence, dominance), error (null unless the
file failed; then every other column but path and kind is null). A file row spans the whole file
(start_s 0, end_s its duration). Every row has every column, so that each format holds a
table with one schema; speech_s is null when the answer has none.

Rows take only the answer keys named here: a key the runtime adds later changes nothing
until it is given a column on purpose. Knows nothing of formats, files or models.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# A row: column name -> str, float or None (null).
Row = dict[str, Any]

FILE = "file"
SEGMENT = "segment"
PATH, KIND, LABEL, ERROR = "path", "kind", "label", "error"
START_S, END_S, DURATION_S, SPEECH_S = "start_s", "end_s", "duration_s", "speech_s"
PROBABILITY_PREFIX = "p_"
# Columns holding text; every other column holds a float.
TEXT_COLUMNS = frozenset({PATH, KIND, LABEL, ERROR})


def columns(labels: Sequence[str], dimensions: Sequence[str] = ()) -> list[str]:
    """The output's columns, in order, for a bundle with these labels (and dimensions)."""
    categories = [LABEL, *(PROBABILITY_PREFIX + label for label in labels)] if labels else []
    head = [PATH, KIND, START_S, END_S, DURATION_S, SPEECH_S]
    return [*head, *categories, *dimensions, ERROR]


def _row(names: Sequence[str], path: str, kind: str, **values: Any) -> Row:
    return {**dict.fromkeys(names), PATH: path, KIND: kind, **values}


def _scored(labels: Sequence[str], dimensions: Sequence[str], scored: Mapping[str, Any]) -> Row:
    """label, p_<label> and the dimensions of an answer or one of its segments."""
    values = scored.get("dimensions") or {}
    dims = {name: float(values[name]) for name in dimensions}
    if not labels:  # a dimensions-only bundle
        return dims
    probabilities = scored["probabilities"]
    return {
        LABEL: scored["label"],
        **{PROBABILITY_PREFIX + label: float(probabilities[label]) for label in labels},
        **dims,
    }


def answer_rows(
    path: str,
    answer: Mapping[str, Any],
    duration_s: float,
    labels: Sequence[str],
    dimensions: Sequence[str] = (),
) -> list[Row]:
    """The file row, then one row per segment ("segments" None or absent: none).

    `duration_s` is the decoder's (the file's own length, before resampling): what
    `Recognizer.predict(path)` answers, where an answer for samples has their length instead.
    """
    names = columns(labels, dimensions)
    speech_s = answer.get(SPEECH_S)
    file_row = _row(
        names,
        path,
        FILE,
        **{START_S: 0.0, END_S: duration_s, DURATION_S: duration_s},
        **{SPEECH_S: None if speech_s is None else float(speech_s)},
        **_scored(labels, dimensions, answer),
    )
    segments = [
        _row(
            names,
            path,
            SEGMENT,
            **{START_S: float(s[START_S]), END_S: float(s[END_S])},
            **_scored(labels, dimensions, s),
        )
        for s in answer.get("segments") or []
    ]
    return [file_row, *segments]


def error_row(path: str, reason: str, labels: Sequence[str], dimensions: Sequence[str] = ()) -> Row:
    """The one row of a file that could not be scored."""
    return _row(columns(labels, dimensions), path, FILE, **{ERROR: reason})
