"""The acted fixed-sentence corpora, read from their file names: EmoDB, RAVDESS, CREMA-D.

Each names the speaker, the sentence and the emotion in every file name, so each reader is a
file-name parser, a code table and the fixed sentences' texts (the transcripts the linguistic
teacher reads; every sentence is spoken in every emotion, so text alone cannot tell them
apart). Speaker ids are namespaced by corpus (`emodb_03`, `ravdess_01`, `cremad_1001`).

Knows nothing of folds, features or the prepared folder's files.
"""

from __future__ import annotations

import re
from pathlib import Path

from .manifest import Utterance
from .reading import (
    AUDIO_SUFFIXES,
    CORPUS_TITLES,
    Classes,
    CorpusReading,
    NotTheCorpusError,
    find_files,
    speaker_id,
)

FIXED_SENTENCES_NOTE = (
    "fixed sentences: every text is spoken in every emotion, so the linguistic teacher cannot "
    "learn emotion from the words here"
)

# What a bundle trained on one of these must tell its users (the bundle's `note`).
_LANGUAGE = {"emodb": "German", "ravdess": "English", "cremad": "English"}
ACTED_NOTES = {
    kind: f"Learned from {CORPUS_TITLES[kind]}: actors reading fixed {language} sentences in a "
    "studio, so it hears the voice, not the words. Evaluated on speakers it never heard "
    "(trained_on gives the fold, its test speakers and UA). Acted emotion is stronger than "
    "everyday speech: expect less on conversations, and measure it on your own recordings "
    "with `python -m training evaluate`."
    for kind, language in _LANGUAGE.items()
}


# --- EmoDB (Berlin): wav/03a01Fa.wav ----------------------------------------------------------

EMODB_EMOTIONS = {  # German initial -> label (A is Angst, fear; anger is W, Wut/Ärger)
    "W": "angry",
    "L": "boredom",
    "E": "disgust",
    "A": "fear",
    "F": "happy",
    "T": "sad",
    "N": "neutral",
}
EMODB_SENTENCES = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}
_EMODB_NAME = re.compile(r"^(\d\d)([ab]\d\d)([A-Z])([a-z])$")


def read_emodb(root: Path, classes: Classes) -> CorpusReading:
    """EmoDB's `wav/` folder (its `lablaut/`, `labsilb/`, `silb/` label files are not read)."""
    wav_dir = root / "wav"
    if not wav_dir.is_dir():
        raise NotTheCorpusError(
            f"{root} is not EmoDB: expected wav/ with files like 03a01Fa.wav "
            "(speaker, text code, emotion letter, version)"
        )
    reading = CorpusReading(CORPUS_TITLES["emodb"], classes)
    reading.notes.append(FIXED_SENTENCES_NOTE)
    for path in find_files(wav_dir, (".wav",), reading, root):
        name = path.relative_to(root).as_posix()
        match = _EMODB_NAME.match(path.stem)
        if match is None or match.group(2) not in EMODB_SENTENCES:
            reading.drop("file name not speaker+text+emotion+version", name)
            continue
        speaker, text_code, emotion, _version = match.groups()
        label = reading.label_or_drop(EMODB_EMOTIONS.get(emotion), emotion, name)
        seconds = reading.audio_or_drop(path, name) if label else None
        if label is None or seconds is None:
            continue
        reading.rows.append(
            Utterance(
                utt_id=f"emodb_{path.stem}",
                path=str(path),
                label=label,
                speaker=speaker_id("emodb", speaker),
                session="",
                text=EMODB_SENTENCES[text_code],
                duration_s=seconds,
            )
        )
    return reading


# --- RAVDESS: Actor_01/03-01-06-01-02-01-01.wav -----------------------------------------------

RAVDESS_EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fear",
    "07": "disgust",
    "08": "surprise",
}
RAVDESS_STATEMENTS = {"01": "Kids are talking by the door.", "02": "Dogs are sitting by the door."}
_RAVDESS_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")


def _actor_folders(root: Path) -> list[Path]:
    """`Actor_NN/` at the root, or one level down (`Audio_Speech_Actors_01-24/Actor_NN/`)."""
    folders = sorted(p for p in root.glob("Actor_*") if p.is_dir())
    return folders or sorted(p for p in root.glob("*/Actor_*") if p.is_dir())


def read_ravdess(root: Path, classes: Classes) -> CorpusReading:
    """RAVDESS speech: audio-only (modality 03), speech channel (01); song and video dropped."""
    actors = _actor_folders(root)
    if not actors:
        raise NotTheCorpusError(
            f"{root} is not RAVDESS: expected Actor_01/ … Actor_24/ with files like "
            "03-01-06-01-02-01-12.wav (Audio_Speech_Actors_01-24.zip unpacked)"
        )
    reading = CorpusReading(CORPUS_TITLES["ravdess"], classes)
    reading.notes.append(FIXED_SENTENCES_NOTE)
    for folder in actors:
        for path in find_files(folder, (*AUDIO_SUFFIXES, ".mp4"), reading, root):
            name = path.relative_to(root).as_posix()
            match = _RAVDESS_NAME.match(path.stem)
            if match is None:
                reading.drop("file name not seven two-digit fields", name)
                continue
            modality, channel, emotion, _intensity, statement, _rep, actor = match.groups()
            if modality != "03":
                reading.drop("video file (modality 01/02), not audio-only", name)
                continue
            if channel != "01":
                reading.drop("song (vocal channel 02), not speech", name)
                continue
            if statement not in RAVDESS_STATEMENTS or folder.name != f"Actor_{actor}":
                reading.drop("statement or actor code not RAVDESS's", name)
                continue
            label = reading.label_or_drop(RAVDESS_EMOTIONS.get(emotion), emotion, name)
            seconds = reading.audio_or_drop(path, name) if label else None
            if label is None or seconds is None:
                continue
            reading.rows.append(
                Utterance(
                    utt_id=f"ravdess_{path.stem}",
                    path=str(path),
                    label=label,
                    speaker=speaker_id("ravdess", actor),
                    session="",
                    text=RAVDESS_STATEMENTS[statement],
                    duration_s=seconds,
                )
            )
    return reading


# --- CREMA-D: AudioWAV/1001_DFA_ANG_XX.wav (or AudioMP3/) --------------------------------------

CREMAD_EMOTIONS = {
    "NEU": "neutral",
    "ANG": "angry",
    "SAD": "sad",
    "HAP": "happy",
    "FEA": "fear",
    "DIS": "disgust",
}
CREMAD_SENTENCES = {
    "IEO": "It's eleven o'clock.",
    "TIE": "That is exactly what happened.",
    "IOM": "I'm on my way to the meeting.",
    "IWW": "I wonder what this is about.",
    "TAI": "The airplane is almost full.",
    "MTI": "Maybe tomorrow it will be cold.",
    "IWL": "I would like a new alarm clock.",
    "ITH": "I think I have a doctor's appointment.",
    "DFA": "Don't forget a jacket.",
    "ITS": "I think I've seen this before.",
    "TSI": "The surface is slick.",
    "WSI": "We'll stop in a couple of minutes.",
}
_CREMAD_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")
CREMAD_LEVELS = ("LO", "MD", "HI", "XX")


def read_cremad(root: Path, classes: Classes) -> CorpusReading:
    """CREMA-D's `AudioWAV/` (or `AudioMP3/` where that is what the user has)."""
    audio_dir = next((root / d for d in ("AudioWAV", "AudioMP3") if (root / d).is_dir()), None)
    if audio_dir is None:
        raise NotTheCorpusError(
            f"{root} is not CREMA-D: expected AudioWAV/ (or AudioMP3/) with files like "
            "1001_DFA_ANG_XX.wav (actor, sentence, emotion, level)"
        )
    reading = CorpusReading(CORPUS_TITLES["cremad"], classes)
    reading.notes.append(FIXED_SENTENCES_NOTE)
    suffix = ".wav" if audio_dir.name == "AudioWAV" else ".mp3"
    for path in find_files(audio_dir, (suffix,), reading, root):
        name = path.relative_to(root).as_posix()
        match = _CREMAD_NAME.match(path.stem)
        if match is None:
            reading.drop("file name not actor_sentence_emotion_level", name)
            continue
        actor, sentence, emotion, level = match.groups()
        if sentence not in CREMAD_SENTENCES or level not in CREMAD_LEVELS:
            reading.drop("sentence or level code not CREMA-D's", name)
            continue
        label = reading.label_or_drop(CREMAD_EMOTIONS.get(emotion), emotion, name)
        seconds = reading.audio_or_drop(path, name) if label else None
        if label is None or seconds is None:
            continue
        reading.rows.append(
            Utterance(
                utt_id=f"cremad_{path.stem}",
                path=str(path),
                label=label,
                speaker=speaker_id("cremad", actor),
                session="",
                text=CREMAD_SENTENCES[sentence],
                duration_s=seconds,
            )
        )
    if reading.dropped.get("audio unreadable"):
        reading.notes.append(
            "unreadable files in a git clone of CREMA-D are often git-lfs pointers: "
            "run `git lfs pull` in the clone"
        )
    return reading
