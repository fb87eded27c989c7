"""Fixture trees shaped exactly like each corpus's distribution, traps included.

Each writer returns the root a user would pass to `prepare KIND --root`, and the module holds
what the 4-class preparation must keep (utt_id -> label, speaker, text) and drop (reason ->
count), so tests assert exact rows. Audio is short tones; the traps are the ones the real
distributions set: macOS `._` files, song and video files beside speech, zero-byte and
header-only files, git-lfs pointers where a clone was not pulled, label files in other
formats, codes outside the label set, missing clips.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import av
import numpy as np
import soundfile as sf

from tests.conftest import tone, write_tone
from training.cli import main
from training.corpus.manifest import Utterance, read_manifest
from training.corpus.prepare import REPORT_FILE
from training.folds import PARTS, PROTOCOLS, folds_path, read_folds, split

CLIP_S = 0.3
LFS_POINTER = (
    b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"0" * 64 + b"\nsize 60000\n"
)
APPLE_DOUBLE = b"\x00\x05\x16\x07Mac OS X        \x00\x02"


def header_only_wav(path: Path) -> None:
    """A WAV with a valid header and no samples: "audio empty"."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.zeros(0, dtype=np.float32), 16_000)


# --- EmoDB -------------------------------------------------------------------------------------

EMODB_SPEAKERS = ("03", "08", "09", "10")
# text code, emotion letter per speaker; N neutral, W anger, T sadness, F happiness, A fear
# (not anger), L boredom
EMODB_FILES = (("a01", "F"), ("a02", "W"), ("a04", "T"), ("b10", "N"), ("b01", "A"), ("b02", "L"))
EMODB_LABELS = {"F": "happy", "W": "angry", "T": "sad", "N": "neutral"}
EMODB_TEXTS = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}
EMODB_EXPECTED = {
    f"emodb_{s}{t}{e}a": (EMODB_LABELS[e], f"emodb_{s}", EMODB_TEXTS[t])
    for s in EMODB_SPEAKERS
    for t, e in EMODB_FILES
    if e in EMODB_LABELS
}
EMODB_DROPPED = {
    "label fear outside the 4 classes": 4,
    "label boredom outside the 4 classes": 4,
    "macOS '._' file": 1,
    "file name not speaker+text+emotion+version": 1,
    "audio unreadable": 1,
    "audio empty": 1,
}


def write_emodb_tree(root: Path) -> Path:
    corpus = root / "emodb"
    for speaker in EMODB_SPEAKERS:
        for text, emotion in EMODB_FILES:
            write_tone(corpus / "wav" / f"{speaker}{text}{emotion}a.wav", CLIP_S)
    (corpus / "wav" / "._03a01Fa.wav").write_bytes(APPLE_DOUBLE)
    write_tone(corpus / "wav" / "silence.wav", CLIP_S)  # not an EmoDB name
    (corpus / "wav" / "11a01Wb.wav").write_bytes(b"")  # zero bytes: unreadable
    header_only_wav(corpus / "wav" / "11a02Nc.wav")  # a header, no samples: empty
    # Label files in other formats, beside wav/: never read.
    for folder in ("lablaut", "labsilb", "silb"):
        (corpus / folder).mkdir(parents=True)
        (corpus / folder / "03a01Fa.lab").write_text("0.1 N\n")
    return corpus


# --- RAVDESS -----------------------------------------------------------------------------------

RAVDESS_ACTORS = ("01", "02", "03", "04")
# emotion, intensity, statement, repetition
RAVDESS_SPEECH = (
    ("01", "01", "01", "01"),  # neutral
    ("05", "02", "02", "01"),  # angry, strong
    ("04", "01", "01", "02"),  # sad
    ("03", "01", "02", "01"),  # happy
    ("02", "01", "01", "01"),  # calm: outside the 4 classes
    ("08", "02", "02", "02"),  # surprised: outside
)
RAVDESS_LABELS = {"01": "neutral", "05": "angry", "04": "sad", "03": "happy"}
RAVDESS_STATEMENTS = {"01": "Kids are talking by the door.", "02": "Dogs are sitting by the door."}
RAVDESS_EXPECTED = {
    f"ravdess_03-01-{e}-{i}-{st}-{r}-{a}": (
        RAVDESS_LABELS[e],
        f"ravdess_{a}",
        RAVDESS_STATEMENTS[st],
    )
    for a in RAVDESS_ACTORS
    for e, i, st, r in RAVDESS_SPEECH
    if e in RAVDESS_LABELS
}
RAVDESS_DROPPED = {
    "label calm outside the 4 classes": 4,
    "label surprise outside the 4 classes": 4,
    "song (vocal channel 02), not speech": 2,
    "video file (modality 01/02), not audio-only": 2,
    "macOS '._' file": 1,
    "statement or actor code not RAVDESS's": 1,
}


def write_ravdess_tree(root: Path) -> Path:
    """As Audio_Speech_Actors_01-24.zip unpacks inside a folder the user made, with song files
    (Audio_Song_Actors_01-24.zip unpacked into the same Actor_NN folders) and video files."""
    corpus = root / "RAVDESS"
    base = corpus / "Audio_Speech_Actors_01-24"
    for actor in RAVDESS_ACTORS:
        for emotion, intensity, statement, rep in RAVDESS_SPEECH:
            name = f"03-01-{emotion}-{intensity}-{statement}-{rep}-{actor}.wav"
            write_tone(base / f"Actor_{actor}" / name, CLIP_S)
    write_tone(base / "Actor_01" / "03-02-03-01-01-01-01.wav", CLIP_S)  # song
    write_tone(base / "Actor_02" / "03-02-05-02-02-02-02.wav", CLIP_S)  # song
    (base / "Actor_01" / "01-01-01-01-01-01-01.mp4").write_bytes(b"\x00" * 64)  # AV video
    (base / "Actor_02" / "02-01-04-01-01-01-02.mp4").write_bytes(b"\x00" * 64)  # video only
    (base / "Actor_03" / "._03-01-01-01-01-01-03.wav").write_bytes(APPLE_DOUBLE)
    write_tone(base / "Actor_04" / "03-01-01-01-01-01-07.wav", CLIP_S)  # actor 07 in Actor_04
    return corpus


# --- CREMA-D -----------------------------------------------------------------------------------

CREMAD_ACTORS = ("1001", "1002", "1003", "1004")
CREMAD_FILES = (
    ("DFA", "ANG", "XX"),
    ("IEO", "HAP", "HI"),
    ("TIE", "SAD", "LO"),
    ("IOM", "NEU", "XX"),
    ("ITS", "FEA", "MD"),
    ("WSI", "DIS", "XX"),
)
CREMAD_LABELS = {"ANG": "angry", "HAP": "happy", "SAD": "sad", "NEU": "neutral"}
CREMAD_TEXTS = {
    "DFA": "Don't forget a jacket.",
    "IEO": "It's eleven o'clock.",
    "TIE": "That is exactly what happened.",
    "IOM": "I'm on my way to the meeting.",
}
CREMAD_EXPECTED = {
    f"cremad_{a}_{s}_{e}_{lv}": (CREMAD_LABELS[e], f"cremad_{a}", CREMAD_TEXTS[s])
    for a in CREMAD_ACTORS
    for s, e, lv in CREMAD_FILES
    if e in CREMAD_LABELS
}
CREMAD_DROPPED = {
    "label fear outside the 4 classes": 4,
    "label disgust outside the 4 classes": 4,
    "audio unreadable": 2,
    "macOS '._' file": 1,
    "sentence or level code not CREMA-D's": 1,
}


def write_cremad_tree(
    root: Path, folder: str = "AudioWAV", actors: tuple[str, ...] = CREMAD_ACTORS
) -> Path:
    """The CREMA-D repository's audio folder: AudioWAV/ (or AudioMP3/ with .mp3 files)."""
    corpus = root / "CREMA-D"
    audio = corpus / folder
    suffix = ".wav" if folder == "AudioWAV" else ".mp3"
    kw = {"format": "MP3"} if suffix == ".mp3" else {}
    for actor in actors:
        for sentence, emotion, level in CREMAD_FILES:
            write_tone(audio / f"{actor}_{sentence}_{emotion}_{level}{suffix}", CLIP_S, **kw)
    # The distribution's own empty file, and a clone whose LFS objects were never pulled.
    (audio / f"1076_MTI_SAD_XX{suffix}").write_bytes(b"")
    (audio / f"1005_ITH_NEU_XX{suffix}").write_bytes(LFS_POINTER)
    (audio / f"._1001_DFA_ANG_XX{suffix}").write_bytes(APPLE_DOUBLE)
    write_tone(audio / f"1006_XYZ_ANG_XX{suffix}", CLIP_S, **kw)  # no such sentence
    (corpus / "VideoDemographics.csv").write_text("ActorID,Age,Sex\n1001,51,Male\n")
    return corpus


# --- MSP-Podcast -------------------------------------------------------------------------------

# FileName stem, EmoClass, EmoAct, EmoVal, EmoDom, SpkrID, Split_Set, audio?, transcript
MSP_ROWS = (
    ("MSP-PODCAST_0001_0008", "N", "4.0", "4.0", "4.0", "127", "Train", True, "well okay"),
    ("MSP-PODCAST_0001_0010", "A", "6.5", "2.0", "5.5", "127", "Train", True, "stop it"),
    ("MSP-PODCAST_0002_0001", "H", "5.0", "6.2", "4.0", "Unknown", "Train", True, None),
    ("MSP-PODCAST_0003_0004", "S", "2.0", "2.5", "3.0", "88", "Development", True, "oh no"),
    ("MSP-PODCAST_0004_0002", "H", "5.5", "6.0", "4.5", "91", "Test1", True, "great"),
    ("MSP-PODCAST_0005_0003", "N", "3.0", "4.0", "4.0", "92", "Test2", True, "so"),
    ("MSP-PODCAST_0006_0001", "A", "7.0", "1.0", "6.0", "Unknown", "Test3", True, "no"),
    ("MSP-PODCAST_0007_0001", "X", "4.0", "4.0", "4.0", "127", "Train", True, "hm"),
    ("MSP-PODCAST_0007_0002", "O", "4.0", "4.0", "4.0", "88", "Train", True, "uh"),
    ("MSP-PODCAST_0008_0001", "U", "5.0", "5.0", "4.0", "88", "Train", True, "what"),
    ("MSP-PODCAST_0009_0001", "S", "2.0", "2.0", "2.0", "127", "Train", False, "gone"),
)
MSP_EXPECTED = {
    "msp_MSP-PODCAST_0001_0008": ("neutral", "msp_127", "well okay", "Train"),
    "msp_MSP-PODCAST_0001_0010": ("angry", "msp_127", "stop it", "Train"),
    "msp_MSP-PODCAST_0002_0001": ("happy", "", "", "Train"),
    "msp_MSP-PODCAST_0003_0004": ("sad", "msp_88", "oh no", "Development"),
    "msp_MSP-PODCAST_0004_0002": ("happy", "msp_91", "great", "Test1"),
    "msp_MSP-PODCAST_0005_0003": ("neutral", "msp_92", "so", "Test2"),
    "msp_MSP-PODCAST_0006_0001": ("angry", "", "no", "Test3"),
}
MSP_DROPPED = {
    "class no agreement (X), never trained on": 1,
    "class other (O), never trained on": 1,
    "label surprise outside the 4 classes": 1,
    "audio file missing": 1,
}


def write_msp_podcast_tree(root: Path) -> Path:
    corpus = root / "MSP-Podcast"
    (corpus / "Labels").mkdir(parents=True)
    (corpus / "Transcripts").mkdir()
    with (corpus / "Labels" / "labels_consensus.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender", "Split_Set"]
        )
        for stem, cls, act, val, dom, spk, partition, has_audio, text in MSP_ROWS:
            writer.writerow([f"{stem}.wav", cls, act, val, dom, spk, "Female", partition])
            if has_audio:
                write_tone(corpus / "Audios" / f"{stem}.wav", CLIP_S)
            if text is not None:
                (corpus / "Transcripts" / f"{stem}.txt").write_text(text + "\n")
    (corpus / "Labels" / "labels_detailed.csv").write_text("not,read\n")
    return corpus


# --- ESD ---------------------------------------------------------------------------------------

ESD_ENGLISH = ("0011", "0012", "0013")
ESD_EMOTIONS = ("Neutral", "Angry", "Sad", "Happy", "Surprise")
ESD_LABELS = {"Neutral": "neutral", "Angry": "angry", "Sad": "sad", "Happy": "happy"}


def _esd_utt(speaker: str, e: int) -> str:
    return f"{speaker}_{e * 350 + 1:06d}"


ESD_EXPECTED = {
    f"esd_{_esd_utt(s, e)}": (ESD_LABELS[emo], f"esd_{s}", f"Sentence {e} of {s}.")
    for s in ESD_ENGLISH
    for e, emo in enumerate(ESD_EMOTIONS)
    if emo in ESD_LABELS
}
ESD_DROPPED = {
    "label surprise outside the 4 classes": 3,
    "macOS '._' file": 1,
    "audio unreadable": 1,
}


def write_esd_tree(root: Path) -> Path:
    """`Emotional Speech Dataset (ESD)/` as the archive unpacks: English 0011-0013 and one
    Mandarin speaker 0001 (its transcript in GB18030), each with its transcript file."""
    corpus = root / "ESD"
    base = corpus / "Emotional Speech Dataset (ESD)"
    for speaker in (*ESD_ENGLISH, "0001"):
        lines = []
        for e, emotion in enumerate(ESD_EMOTIONS):
            utt = _esd_utt(speaker, e)
            write_tone(base / speaker / emotion / f"{utt}.wav", CLIP_S)
            text = f"Sentence {e} of {speaker}." if speaker != "0001" else "今天天气很好。"
            lines.append(f"{utt}\t{text}\t{emotion}\n")
        encoding = "gb18030" if speaker == "0001" else "utf-8"
        (base / speaker / f"{speaker}.txt").write_bytes("".join(lines).encode(encoding))
    (base / "0011" / "Angry" / "._0011_000351.wav").write_bytes(APPLE_DOUBLE)
    (base / "0012" / "Sad" / "0012_000999.wav").write_bytes(b"RIFF\x00")  # truncated download
    (base / "README.txt").write_text("ESD\n")
    return corpus


# --- MELD --------------------------------------------------------------------------------------

# split, Dialogue_ID, Utterance_ID, speaker, emotion, utterance text, clip written?
MELD_ROWS = (
    ("train", 0, 0, "Chandler", "neutral", "also I was the point person"),
    ("train", 0, 1, "Monica", "joy", "Itâ€™s great!"),
    ("train", 0, 2, "Joey", "anger", "Hey!"),
    ("train", 1, 0, "Rachel", "sadness", "I miss him."),
    ("train", 1, 1, "Ross", "surprise", "Really?"),
    ("dev", 0, 0, "Phoebe", "neutral", "Okay."),
    ("dev", 110, 7, "Joey", "anger", "No clip for me."),  # the release's missing dev clip
    ("test", 0, 0, "Ross", "joy", "Yes!"),
    ("test", 0, 1, "Monica", "disgust", "Ew."),
)
MELD_LABELS = {"neutral": "neutral", "joy": "happy", "anger": "angry", "sadness": "sad"}
MELD_EXPECTED = {
    "meld_train_dia0_utt0": ("neutral", "meld_Chandler", "also I was the point person", "train"),
    "meld_train_dia0_utt1": ("happy", "meld_Monica", "It’s great!", "train"),
    "meld_train_dia0_utt2": ("angry", "meld_Joey", "Hey!", "train"),
    "meld_train_dia1_utt0": ("sad", "meld_Rachel", "I miss him.", "train"),
    "meld_dev_dia0_utt0": ("neutral", "meld_Phoebe", "Okay.", "dev"),
    "meld_test_dia0_utt0": ("happy", "meld_Ross", "Yes!", "test"),
}
MELD_DROPPED = {
    "label surprise outside the 4 classes": 1,
    "label disgust outside the 4 classes": 1,
    "audio file missing": 1,
}
MELD_CLIP_FOLDERS = {
    "train": "train/train_splits",
    "dev": "dev/dev_splits_complete",
    "test": "test/output_repeated_splits_test",
}


def write_mp4(path: Path, seconds: float = CLIP_S, rate_hz: int = 16_000) -> None:
    """A video-container clip with one AAC audio stream (what MELD's MP4s carry)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=rate_hz)
        stream.layout = "mono"  # type: ignore[union-attr]
        frame = av.AudioFrame.from_ndarray(
            tone(seconds, rate_hz)[None, :], format="fltp", layout="mono"
        )
        frame.sample_rate = rate_hz
        for packet in [*stream.encode(frame), *stream.encode(None)]:  # type: ignore[union-attr]
            container.mux(packet)
    path.write_bytes(buf.getvalue())


def write_meld_tree(root: Path) -> Path:
    """MELD.Raw: the three CSVs at its top, each split's clips in its own folder."""
    corpus = root / "MELD.Raw"
    columns = ["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID"]
    columns += ["Utterance_ID", "Season", "Episode", "StartTime", "EndTime"]
    for part in ("train", "dev", "test"):
        corpus.mkdir(parents=True, exist_ok=True)
        with (corpus / f"{part}_sent_emo.csv").open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            rows = [r for r in MELD_ROWS if r[0] == part]
            for i, (_, dia, utt, speaker, emotion, text) in enumerate(rows, start=1):
                writer.writerow(
                    [i, text, speaker, emotion, "neutral", dia, utt, 1, 1, "0:00:01", "0:00:02"]
                )
                if (dia, utt) != (110, 7):
                    write_mp4(corpus / MELD_CLIP_FOLDERS[part] / f"dia{dia}_utt{utt}.mp4")
    (corpus / MELD_CLIP_FOLDERS["train"] / "._dia0_utt0.mp4").write_bytes(APPLE_DOUBLE)
    return corpus


# --- any labelled folder tree ------------------------------------------------------------------

FOLDERS_FILES = {  # relative path -> label the preparation keeps (None: dropped)
    "Angry/spk01_take1.wav": "angry",
    "Angry/spk02_take1.wav": "angry",
    "happiness/spk01_take2.wav": "happy",
    "happiness/spk03_take1.flac": "happy",
    "NEU/spk02_take2.wav": "neutral",
    "NEU/spk03_take2.wav": "neutral",
    "Sad/spk01_take3.wav": "sad",
    "Sad/spk03_take3.wav": "sad",
    "Calm/spk01_take4.wav": None,  # a known label outside the 4 classes
    "notes/spk02_take9.wav": None,  # no emotion
    "loose_spk01.wav": None,  # not in a label folder
    "Sad/take5.wav": None,  # no speaker in the name
}
FOLDERS_PATTERN = r"^(spk\d+)_"
FOLDERS_DROPPED = {
    "label calm outside the 4 classes": 1,
    "folder 'notes' is no known emotion": 1,
    "not inside a label folder": 1,
    "file name does not match --speaker-pattern": 1,
    "macOS '._' file": 1,
}


def write_folders_tree(root: Path) -> Path:
    corpus = root / "My Corpus"
    for relative in FOLDERS_FILES:
        path = corpus / relative
        kw = {"format": "FLAC"} if path.suffix == ".flac" else {}
        write_tone(path, CLIP_S, **kw)
    (corpus / "Sad" / "._spk01_take3.wav").write_bytes(APPLE_DOUBLE)
    (corpus / "Sad" / "notes.txt").write_text("not audio\n")
    return corpus


# --- what every preparer test checks -----------------------------------------------------------


def prepare_tree(
    kind: str, root: Path, out: Path, *flags: str, official_by_speaker: bool = True
) -> list[Utterance]:
    """`python -m training prepare KIND --root ROOT --out OUT FLAGS`; the rows it wrote, after
    checking that no fold of any protocol puts one speaker in two of train, val and test
    (official partitions too, unless `official_by_speaker` is False: ESD's own split divides
    each speaker's sentences)."""
    main(["prepare", kind, "--root", str(root), "--out", str(out), *flags])
    rows = read_manifest(out)
    for protocol in PROTOCOLS:
        path = folds_path(out, protocol)
        if not path.is_file() or (protocol == "official" and not official_by_speaker):
            continue
        for fold in read_folds(rows, path, n_val_speakers=1):
            parts = split(rows, fold)
            speakers = [{r.speaker for r in getattr(parts, p) if r.speaker} for p in PARTS]
            for i, j in ((0, 1), (0, 2), (1, 2)):
                assert not speakers[i] & speakers[j], (protocol, fold.index, i, j)
            assert parts.test, (protocol, fold.index)
    return rows


def dropped(out: Path) -> dict[str, int]:
    return json.loads((out / REPORT_FILE).read_text())["dropped"]


def by_id(rows: list[Utterance]) -> dict[str, tuple[str, str, str]]:
    return {r.utt_id: (r.label, r.speaker, r.text) for r in rows}
