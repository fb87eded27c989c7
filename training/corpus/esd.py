"""ESD (Emotional Speech Dataset) -> rows: `NNNN/<Emotion>/NNNN_XXXXXX.wav` per speaker.

Speakers 0001-0010 speak Mandarin, 0011-0020 English; `--language` picks them. The label is
the emotion folder (Neutral, Happy, Angry, Sad, Surprise); the text is the speaker's
transcript file `NNNN/NNNN.txt` (`utt_id<TAB>text<TAB>emotion`). Releases that split each
emotion folder into `train/`, `evaluation/` and `test/` give ESD's own partitions too.

Knows nothing of folds, features or the prepared folder's files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from .manifest import Utterance
from .reading import Classes, CorpusReading, NotTheCorpusError, canonical_label, find_files

Language = Literal["english", "mandarin", "both"]
MANDARIN_SPEAKERS = tuple(f"{i:04d}" for i in range(1, 11))
ENGLISH_SPEAKERS = tuple(f"{i:04d}" for i in range(11, 21))
ESD_PARTITIONS = ("train", "evaluation", "test")


def _speaker_root(root: Path) -> Path | None:
    """The folder holding 0001 … 0020: the root, or the one folder inside it that does."""
    for candidate in (root, *sorted(p for p in root.iterdir() if p.is_dir())):
        if any((candidate / s).is_dir() for s in (*MANDARIN_SPEAKERS, *ENGLISH_SPEAKERS)):
            return candidate
    return None


def _read_text(path: Path) -> str:
    """Transcript files come in UTF-8, UTF-16 (with a BOM) or GB18030 (some Mandarin ones)."""
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("gb18030", errors="replace")


def _transcripts(speaker_dir: Path) -> dict[str, str]:
    path = speaker_dir / f"{speaker_dir.name}.txt"
    if not path.is_file():
        return {}
    texts = {}
    for line in _read_text(path).splitlines():
        parts = line.strip().split("\t")
        if len(parts) >= 2 and parts[0]:
            texts[parts[0].strip()] = parts[1].strip()
    return texts


def read_esd(root: Path, classes: Classes, language: Language = "english") -> CorpusReading:
    speakers_at = _speaker_root(root) if root.is_dir() else None
    if speakers_at is None:
        raise NotTheCorpusError(
            f"{root} is not ESD: expected speaker folders 0001 … 0020, each with "
            "<Emotion>/NNNN_XXXXXX.wav and its transcript NNNN.txt"
        )
    wanted = {
        "english": ENGLISH_SPEAKERS,
        "mandarin": MANDARIN_SPEAKERS,
        "both": (*MANDARIN_SPEAKERS, *ENGLISH_SPEAKERS),
    }[language]
    reading = CorpusReading(f"ESD ({language})", classes)
    skipped = sorted(
        p.name
        for p in speakers_at.iterdir()
        if p.is_dir() and p.name in (*MANDARIN_SPEAKERS, *ENGLISH_SPEAKERS) and p.name not in wanted
    )
    if skipped:
        reading.notes.append(f"speakers of the other language not read: {', '.join(skipped)}")
    partitioned = False
    for speaker in wanted:
        speaker_dir = speakers_at / speaker
        if not speaker_dir.is_dir():
            continue
        texts = _transcripts(speaker_dir)
        if not texts:
            reading.notes.append(f"{speaker}: no transcript file {speaker}.txt; texts empty")
        for path in find_files(speaker_dir, (".wav",), reading, speakers_at):
            name = path.relative_to(speakers_at).as_posix()
            inside = path.relative_to(speaker_dir).parts
            partition = inside[1] if len(inside) == 3 and inside[1] in ESD_PARTITIONS else ""
            if len(inside) not in (2, 3) or (len(inside) == 3 and not partition):
                reading.drop("not in <Emotion>/[train|evaluation|test/]", name)
                continue
            partitioned |= bool(partition)
            label = reading.label_or_drop(canonical_label(inside[0]), inside[0], name)
            seconds = reading.audio_or_drop(path, name) if label else None
            if label is None or seconds is None:
                continue
            reading.rows.append(
                Utterance(
                    utt_id=f"esd_{path.stem}",
                    path=str(path),
                    label=label,
                    speaker=f"esd_{speaker}",
                    session="",
                    text=texts.get(path.stem, ""),
                    duration_s=seconds,
                    partition=partition,
                )
            )
    if partitioned:
        reading.protocols = ("speaker_groups", "speaker", "official")
    return reading
