"""Any labelled folder tree -> rows: the label is the folder a file sits in.

`root/Angry/spk03_take1.wav`: the folder name is matched case-insensitively to the label set,
common spellings included (`Angry`, `anger`, `ANG`); the speaker is the first group of
`--speaker-pattern` on the file name. Without a pattern there are no speakers, and
speaker-independent folds need them: that is an error, not a silent random split. Speaker ids
are namespaced by the root folder's name.

Knows nothing of folds, features or the prepared folder's files.
"""

from __future__ import annotations

import re
from pathlib import Path

from .manifest import Utterance
from .reading import (
    AUDIO_SUFFIXES,
    Classes,
    CorpusReading,
    NotTheCorpusError,
    canonical_label,
    find_files,
    slug,
)


class SpeakerPatternError(ValueError):
    """No usable --speaker-pattern for a folder tree."""


def compile_speaker_pattern(pattern: str | None) -> re.Pattern[str]:
    if not pattern:
        raise SpeakerPatternError(
            "speaker-independent folds need a speaker per file: pass --speaker-pattern REGEX, "
            r"whose first group is the speaker in the file name (e.g. '^(\d+)_' for 03_happy.wav)"
        )
    try:
        compiled = re.compile(pattern)
    except re.error as err:
        raise SpeakerPatternError(f"--speaker-pattern {pattern!r}: {err}") from err
    if compiled.groups < 1:
        raise SpeakerPatternError(f"--speaker-pattern {pattern!r} has no group for the speaker")
    return compiled


def read_folders(root: Path, classes: Classes, speaker_pattern: str | None) -> CorpusReading:
    pattern = compile_speaker_pattern(speaker_pattern)
    if not root.is_dir():
        raise NotTheCorpusError(f"{root} is not a folder of label folders (root/<label>/*.wav)")
    reading = CorpusReading(f"folders ({root.name})", classes)
    prefix = slug(root.name)
    for path in find_files(root, AUDIO_SUFFIXES, reading):
        name = path.relative_to(root).as_posix()
        if path.parent == root:
            reading.drop("not inside a label folder", name)
            continue
        folder = path.parent.name
        label = canonical_label(folder)
        if label is None and classes == "all":
            label = folder.strip().lower()  # a label of its own: --classes all keeps them all
        if label is None:
            reading.drop(f"folder {folder!r} is no known emotion", name)
            continue
        if reading.label_or_drop(label, folder, name) is None:
            continue
        match = pattern.search(path.name)
        if match is None or not match.group(1):
            reading.drop("file name does not match --speaker-pattern", name)
            continue
        seconds = reading.audio_or_drop(path, name)
        if seconds is None:
            continue
        reading.rows.append(
            Utterance(
                utt_id=f"{prefix}_{path.relative_to(root).with_suffix('').as_posix()}",
                path=str(path),
                label=label,
                speaker=f"{prefix}_{match.group(1)}",
                session="",
                text="",
                duration_s=seconds,
            )
        )
    return reading
