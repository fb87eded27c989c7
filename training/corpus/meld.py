"""MELD -> rows: the `*_sent_emo.csv` tables and the `dia{D}_utt{U}.mp4` clips.

The official split is the protocol (train, dev, test); the clips' audio is read by our decoder
(FFmpeg takes the first audio stream of each MP4), so nothing is extracted or copied. The text
is the CSV's utterance, its speaker the TV character (namespaced `meld_Joey`): characters
recur across the split, which is why MELD has no speaker folds.

Knows nothing of folds, features or the prepared folder's files.
"""

from __future__ import annotations

import csv
from pathlib import Path

from .manifest import Utterance
from .reading import (
    CORPUS_TITLES,
    Classes,
    CorpusReading,
    NotTheCorpusError,
    is_resource_fork,
    speaker_id,
)

MELD_EMOTIONS = {
    "neutral": "neutral",
    "anger": "angry",
    "sadness": "sad",
    "joy": "happy",
    "surprise": "surprise",
    "fear": "fear",
    "disgust": "disgust",
}
# split -> (its table, the folder of its clips) as MELD.Raw unpacks them.
SPLITS = {
    "train": ("train_sent_emo.csv", "train_splits"),
    "dev": ("dev_sent_emo.csv", "dev_splits_complete"),
    "test": ("test_sent_emo.csv", "output_repeated_splits_test"),
}


def _find(root: Path, name: str) -> Path | None:
    """`name` at the root or up to two folders down (MELD.Raw/train/train_splits)."""
    for pattern in (name, f"*/{name}", f"*/*/{name}"):
        found = sorted(p for p in root.glob(pattern) if not is_resource_fork(p))
        if found:
            return found[0]
    return None


def _unmojibake(text: str) -> str:
    """MELD's tables carry UTF-8 read as cp1252 (`Itâ€™s`); undo that where it applies."""
    try:
        return text.encode("cp1252").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def read_meld(root: Path, classes: Classes) -> CorpusReading:
    tables = {split: _find(root, table) for split, (table, _) in SPLITS.items()}
    if not any(tables.values()):
        raise NotTheCorpusError(
            f"{root} is not MELD: expected train_sent_emo.csv, dev_sent_emo.csv, "
            "test_sent_emo.csv and the clip folders train_splits/, dev_splits_complete/, "
            "output_repeated_splits_test/ (MELD.Raw unpacked)"
        )
    reading = CorpusReading(CORPUS_TITLES["meld"], classes, protocols=("official",))
    for split, (table_name, clips_name) in SPLITS.items():
        table = tables[split]
        if table is None:
            reading.notes.append(f"{split}: {table_name} not found; split not read")
            continue
        clips = _find(root, clips_name)
        with table.open(newline="", encoding="utf-8-sig") as f:
            for record in csv.DictReader(f):
                clip = f"dia{record['Dialogue_ID']}_utt{record['Utterance_ID']}.mp4"
                item = f"{split}/{clip}"
                emotion = record["Emotion"].strip().lower()
                label = reading.label_or_drop(MELD_EMOTIONS.get(emotion), emotion, item)
                if label is None:
                    continue
                path = (clips or root / clips_name) / clip
                seconds = reading.audio_or_drop(path, item)
                if seconds is None:
                    continue
                reading.rows.append(
                    Utterance(
                        utt_id=f"meld_{split}_{Path(clip).stem}",
                        path=str(path),
                        label=label,
                        speaker=speaker_id("meld", record["Speaker"].strip()),
                        session="",
                        text=_unmojibake(record["Utterance"].strip()),
                        duration_s=seconds,
                        partition=split,
                    )
                )
    return reading
