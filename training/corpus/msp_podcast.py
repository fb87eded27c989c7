"""MSP-Podcast -> rows: `Labels/labels_consensus.csv`, `Audios/`, `Transcripts/`.

Classes `X` (no agreement) and `O` (other) are never trained on. `SpkrID` is `Unknown` for
part of the corpus, so its protocol is the official partitions (Train, Development, Test1,
Test2, Test3 where present), never speaker folds: unknown speakers get an empty speaker.
Arousal, valence and dominance (EmoAct, EmoVal, EmoDom, rated 1-7) are kept, scaled to [0, 1].

Knows nothing of folds, features or the prepared folder's files.
"""

from __future__ import annotations

import csv
from pathlib import Path

from .manifest import RatingOrigin, Utterance
from .reading import CORPUS_TITLES, Classes, CorpusReading, NotTheCorpusError, scaled, speaker_id

MSP_EMOTIONS = {
    "N": "neutral",
    "A": "angry",
    "S": "sad",
    "H": "happy",
    "U": "surprise",
    "F": "fear",
    "D": "disgust",
    "C": "contempt",
}
NEVER_TRAINED = {"X": "no agreement (X)", "O": "other (O)"}
RATING_SCALE = (1.0, 7.0)
LABELS_CSV = Path("Labels") / "labels_consensus.csv"
COLUMNS = ("FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Split_Set")


def _transcript(root: Path, stem: str) -> str:
    path = root / "Transcripts" / f"{stem}.txt"
    return path.read_text(encoding="utf-8", errors="replace").strip() if path.is_file() else ""


def read_msp_podcast(root: Path, classes: Classes) -> CorpusReading:
    labels_csv = root / LABELS_CSV
    audio_dir = root / "Audios"
    if not labels_csv.is_file() or not audio_dir.is_dir():
        raise NotTheCorpusError(
            f"{root} is not MSP-Podcast: expected Audios/<FileName>.wav and "
            f"{LABELS_CSV.as_posix()} ({', '.join(COLUMNS)})"
        )
    reading = CorpusReading(CORPUS_TITLES["msp-podcast"], classes, protocols=("official",))
    reading.dimensions = RatingOrigin(
        source="MSP-Podcast consensus ratings (labels_consensus.csv EmoAct, EmoVal, EmoDom), 1-7",
        original_scale=RATING_SCALE,
        columns={"arousal": "EmoAct", "valence": "EmoVal", "dominance": "EmoDom"},
    )
    no_text = 0
    with labels_csv.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise NotTheCorpusError(f"{labels_csv}: columns {missing} missing; expected {COLUMNS}")
        for record in reader:
            name = record["FileName"].strip()
            code = record["EmoClass"].strip()
            if code in NEVER_TRAINED:
                reading.drop(f"class {NEVER_TRAINED[code]}, never trained on", name)
                continue
            label = reading.label_or_drop(MSP_EMOTIONS.get(code), code, name)
            if label is None:
                continue
            path = audio_dir / name
            seconds = reading.audio_or_drop(path, name)
            if seconds is None:
                continue
            spkr = record["SpkrID"].strip()
            text = _transcript(root, Path(name).stem)
            no_text += not text
            reading.rows.append(
                Utterance(
                    utt_id=f"msp_{Path(name).stem}",
                    path=str(path),
                    label=label,
                    # Unknown speakers stay unknown: speaker folds refuse such rows.
                    speaker=speaker_id("msp", spkr) if spkr and spkr != "Unknown" else "",
                    session="",
                    text=text,
                    duration_s=seconds,
                    partition=record["Split_Set"].strip(),
                    arousal=scaled(record["EmoAct"], RATING_SCALE),
                    valence=scaled(record["EmoVal"], RATING_SCALE),
                    dominance=scaled(record["EmoDom"], RATING_SCALE),
                )
            )
    unknown = sum(not r.speaker for r in reading.rows)
    reading.notes.append(f"speaker Unknown for {unknown} kept rows: official partitions only")
    if no_text:
        reading.notes.append(f"kept without a transcript in Transcripts/: {no_text}")
    return reading
