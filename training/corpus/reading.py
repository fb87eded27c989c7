"""What every corpus reader shares: the label vocabulary, `--classes`, audio checks, drop counts.

A reader (`acted.py`, `msp_podcast.py`, ...) walks one distribution as it unpacks and fills a
`CorpusReading`: the rows it keeps, the label order, and every file or row it drops with the
reason. Nothing here writes files: `prepare.py` writes the prepared folder only once a reading
is complete, so a failed or interrupted preparation leaves `--out` as it was.

Knows nothing of folds, features or models.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from emodistill.audio import duration_s
from emodistill.errors import AudioError

from ..folds import Protocol
from .manifest import RatingOrigin, Utterance, to_unit

Classes = Literal[4, "all"]
# The paper's 4 classes, in the model's output order (IEMOCAP's, the synthetic corpus's).
FOUR_CLASSES = ("neutral", "angry", "sad", "happy")
# Every label any corpus here has, one spelling each, so that corpora can be mixed: with
# `--classes all` a corpus's labels are the ones it has, in this order.
ALL_CLASSES = (*FOUR_CLASSES, "fear", "disgust", "surprise", "contempt", "calm", "boredom")
# Folder names and codes that people use for those labels (lower case).
SYNONYMS = {
    "neutral": ("neutral", "neu", "neutrality"),
    "angry": ("angry", "anger", "ang", "mad"),
    "sad": ("sad", "sadness", "sa", "sorrow"),
    "happy": ("happy", "happiness", "hap", "joy", "joyful"),
    "fear": ("fear", "fearful", "fea", "afraid", "scared"),
    "disgust": ("disgust", "disgusted", "dis"),
    "surprise": ("surprise", "surprised", "sur", "ps", "pleasant_surprise"),
    "contempt": ("contempt", "con"),
    "calm": ("calm",),
    "boredom": ("boredom", "bored", "bor"),
}
_CANONICAL = {alias: label for label, aliases in SYNONYMS.items() for alias in aliases}
# How many files of one reason the summary lists by name; the rest are counted.
LISTED_PER_REASON = 20
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".aiff", ".aif")


# The corpora's names as their authors write them, by `prepare` kind.
CORPUS_TITLES = {
    "iemocap": "IEMOCAP",
    "msp-podcast": "MSP-Podcast",
    "cremad": "CREMA-D",
    "ravdess": "RAVDESS",
    "emodb": "EmoDB",
    "esd": "ESD",
    "meld": "MELD",
}


class NotTheCorpusError(ValueError):
    """The folder given as a corpus's root does not have that corpus's layout."""


def canonical_label(name: str) -> str | None:
    """`Angry`, `anger`, `ANG` -> `angry`; None for a name that is no known label."""
    return _CANONICAL.get(name.strip().lower())


def kept_label(label: str, classes: Classes) -> bool:
    return classes == "all" or label in FOUR_CLASSES


def label_order(found: Iterable[str], classes: Classes) -> tuple[str, ...]:
    """The label set written to labels.json: the 4 classes, or every label found, in
    `ALL_CLASSES` order (labels outside it, from a folder tree, follow sorted)."""
    if classes == 4:
        return FOUR_CLASSES
    present = set(found)
    known = [c for c in ALL_CLASSES if c in present]
    return (*known, *sorted(present - set(ALL_CLASSES)))


def is_resource_fork(path: Path) -> bool:
    """macOS `._name` AppleDouble files that copies from a Mac leave beside real ones."""
    return path.name.startswith("._")


def speaker_id(corpus: str, speaker: str) -> str:
    """`emodb`, `03` -> `emodb_03`: speakers of different corpora never collide."""
    return f"{corpus}_{speaker}"


@dataclass
class CorpusReading:
    """What a reader found: rows kept, their label order, and what it dropped, by reason."""

    corpus: str  # display name, e.g. "EmoDB"
    classes: Classes
    rows: list[Utterance] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)
    dropped_items: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # Protocols this corpus supports, in preference order (the first is the corpus's own).
    protocols: tuple[Protocol, ...] = ("speaker_groups", "speaker")
    # Where the rows carry arousal/valence/dominance: whose and from what scale (dimensions.json).
    dimensions: RatingOrigin | None = None

    def drop(self, reason: str, item: str) -> None:
        self.dropped[reason] += 1
        self.dropped_items.setdefault(reason, []).append(item)

    def label_or_drop(self, label: str | None, code: str, item: str) -> str | None:
        """`label` if `--classes` keeps it; else the row is dropped, counted under its code."""
        if label is None:
            self.drop(f"unknown label code {code!r}", item)
            return None
        if not kept_label(label, self.classes):
            self.drop(f"label {label} outside the 4 classes", item)
            return None
        return label

    def audio_or_drop(self, path: Path, item: str) -> float | None:
        """The file's duration in seconds, or None with the file dropped as missing, unreadable
        or empty (a git-lfs pointer, a truncated download, a zero-byte file)."""
        if not path.is_file():
            self.drop("audio file missing", item)
            return None
        try:
            seconds = duration_s(path)
        except (AudioError, OSError):
            self.drop("audio unreadable", item)
            return None
        if seconds <= 0:
            self.drop("audio empty", item)
            return None
        return seconds

    @property
    def labels(self) -> tuple[str, ...]:
        return label_order((r.label for r in self.rows), self.classes)

    def summary(self) -> str:
        lines = [f"{self.corpus}: kept {len(self.rows)} utterances"]
        by_class = Counter(r.label for r in self.rows)
        lines.append("  per class: " + _fmt({k: by_class[k] for k in self.labels}))
        lines.append(f"  speakers: {len({r.speaker for r in self.rows if r.speaker})}")
        partitions = Counter(r.partition for r in self.rows if r.partition)
        if partitions:
            lines.append("  per partition: " + _fmt(partitions))
        lines.append(f"  dropped {sum(self.dropped.values())}:" + ("" if self.dropped else " none"))
        for reason, count in sorted(self.dropped.items()):
            lines.append(f"    {reason}: {count}")
            items = self.dropped_items.get(reason, [])
            lines.extend(f"      {item}" for item in items[:LISTED_PER_REASON])
            if len(items) > LISTED_PER_REASON:
                lines.append(f"      ... and {len(items) - LISTED_PER_REASON} more")
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)

    def record(self) -> dict[str, object]:
        """prepare_report.json: the same facts as the summary, for programs and tests."""
        return {
            "corpus": self.corpus,
            "classes": self.classes,
            "kept": len(self.rows),
            "per_class": dict(Counter(r.label for r in self.rows)),
            "dropped": dict(sorted(self.dropped.items())),
            "dropped_items": {k: v for k, v in sorted(self.dropped_items.items())},
            "protocols": list(self.protocols),
            "notes": self.notes,
        }


def _fmt(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items())


def find_files(
    folder: Path, suffixes: Sequence[str], reading: CorpusReading, names_from: Path | None = None
) -> list[Path]:
    """Every file under `folder` with one of `suffixes`, sorted; resource forks counted apart
    (named relative to `names_from`, the corpus root, as every dropped item is)."""
    found = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in suffixes:
            continue
        if is_resource_fork(path):
            reading.drop("macOS '._' file", path.relative_to(names_from or folder).as_posix())
            continue
        found.append(path)
    return found


def scaled(value: str, scale: tuple[float, float]) -> float | None:
    """A rating as written in a table -> [0, 1]; None where it is blank or not a number."""
    try:
        return to_unit(float(value), scale)
    except ValueError:
        return None


def slug(name: str) -> str:
    """A folder name as a speaker-id prefix: `My Corpus` -> `my-corpus`."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "corpus"
