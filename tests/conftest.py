"""Fixtures shared across the suite: small audio files and an IEMOCAP-shaped tree."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from transformers import BertConfig, BertModel, BertTokenizerFast

from emodistill.audio_input import AudioLimits
from emodistill.options import InferenceOptions

# Every format and sample type the loader and the service must read.
AUDIO_FORMATS = [
    ("WAV", "PCM_U8"),
    ("WAV", "PCM_16"),
    ("WAV", "PCM_24"),
    ("WAV", "PCM_32"),
    ("WAV", "FLOAT"),
    ("WAV", "DOUBLE"),
    ("FLAC", "PCM_16"),
    ("FLAC", "PCM_24"),
    ("OGG", "VORBIS"),
]


def tone(seconds: float, rate_hz: int = 16_000, freq_hz: float = 440.0) -> np.ndarray:
    """float32 [samples]: a sine at half scale."""
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    return (0.5 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def audio_limits(sample_rate_hz: int, max_duration_s: float, **limits: int) -> AudioLimits:
    """The decoder's limits with the options' default decoding budget unless given."""
    budget = limits.pop("max_decoded_samples", InferenceOptions().max_decoded_samples)
    return AudioLimits(sample_rate_hz, max_duration_s, budget, **limits)


def status(err: BaseException) -> int:
    """The HTTP status the service answers `err` with (service/errors.py's one map)."""
    from service.errors import answer_for

    answer = answer_for(err)
    assert answer is not None, f"{type(err).__name__} has no status"
    return answer.status


def write_tone(path: Path, seconds: float = 0.5, rate_hz: int = 16_000, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), tone(seconds, rate_hz), rate_hz, **kw)
    return path


@pytest.fixture(scope="session")
def require_espeak() -> None:
    """Skip without espeak-ng on a laptop; fail under CI, which must have installed it."""
    if shutil.which("espeak-ng") is None:
        if os.environ.get("CI"):
            pytest.fail("espeak-ng is missing under CI: .ci/run must install it")
        pytest.skip("espeak-ng is not installed")


# --- an IEMOCAP-shaped tree, with every trap the real corpus sets ---------------------------

EMO_HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"


def _summary(start: float, utt: str, code: str, vad: tuple[float, float, float]) -> str:
    v, a, d = vad
    return f"[{start:.4f} - {start + 1.5:.4f}]\t{utt}\t{code}\t[{v:.4f}, {a:.4f}, {d:.4f}]\n"


def iemocap_vad(turn: int, session: int) -> tuple[float, float, float]:
    """Distinct [V, A, D] (1-5) per fixture turn, so a swapped order or scale shows."""
    return (1.5 + 0.5 * turn, 4.5 - 0.25 * turn - session, 2.0 + 0.5 * session)


def _annotators(category: str) -> str:
    return f"C-E2:\t{category};\t()\nC-E3:\t{category};\t()\nA-E3:\tval 3; act 2; dom  2;\t()\n\n"


# (utt_id, code, wav exists, transcript text or None)
IEMOCAP_TURNS = {
    "Session1": {
        "Ses01F_impro01": [
            ("Ses01F_impro01_F000", "neu", True, "Excuse me."),
            ("Ses01F_impro01_M000", "ang", True, "Do you have your forms?"),  # male turn
            ("Ses01F_impro01_F001", "exc", True, "Yeah!"),  # excited -> happy
            ("Ses01F_impro01_M001", "fru", True, "That's out of control."),  # skipped label
            ("Ses01F_impro01_F002", "xxx", True, "Is there a problem?"),  # no agreement
            ("Ses01F_impro01_F003", "hap", False, "I'm so glad."),  # wav missing
            ("Ses01F_impro01_M002", "sad", True, None),  # no transcript line
        ],
    },
    "Session2": {
        "Ses02M_script01_1": [
            ("Ses02M_script01_1_F012", "sad", True, "I miss him."),  # female in male dialog
            ("Ses02M_script01_1_M003", "hap", True, "What a day!"),
        ],
    },
}
# label, speaker, session, text for every row the 4-class protocol keeps
IEMOCAP_EXPECTED = {
    "Ses01F_impro01_F000": ("neutral", "Ses01F", "Ses01", "Excuse me."),
    "Ses01F_impro01_M000": ("angry", "Ses01M", "Ses01", "Do you have your forms?"),
    "Ses01F_impro01_F001": ("happy", "Ses01F", "Ses01", "Yeah!"),
    "Ses01F_impro01_M002": ("sad", "Ses01M", "Ses01", ""),
    "Ses02M_script01_1_F012": ("sad", "Ses02F", "Ses02", "I miss him."),
    "Ses02M_script01_1_M003": ("happy", "Ses02M", "Ses02", "What a day!"),
}


def write_iemocap_tree(root: Path) -> Path:
    """Write a small IEMOCAP_full_release-shaped folder under root; returns its path."""
    release = root / "IEMOCAP_full_release"
    for session, dialogs in IEMOCAP_TURNS.items():
        emo = release / session / "dialog" / "EmoEvaluation"
        trans = release / session / "dialog" / "transcriptions"
        for folder in (emo / "Categorical", emo / "Attribute", trans):
            folder.mkdir(parents=True, exist_ok=True)
        session_no = int(session[-1])
        for dialog, turns in dialogs.items():
            text = EMO_HEADER
            lines = []
            for i, (utt, code, has_wav, said) in enumerate(turns):
                vad = iemocap_vad(i, session_no)
                text += _summary(6.0 + 2 * i, utt, code, vad) + _annotators("Neutral state")
                if has_wav:
                    seconds = 0.5 + 0.1 * i
                    write_tone(
                        release / session / "sentences" / "wav" / dialog / f"{utt}.wav", seconds
                    )
                if said is not None:
                    lines.append(f"{utt} [{6.0 + 2 * i:08.4f}-{7.5 + 2 * i:08.4f}]: {said}\n")
            lines.insert(1, "M: [BREATHING]\n")  # not an utterance line
            lines.append(f"{dialog}_F099 [099.0000-100.0000]: Never labelled.\n")
            (emo / f"{dialog}.txt").write_text(text)
            (trans / f"{dialog}.txt").write_text("".join(lines))
            # Traps: sub-folders in other formats, one line even shaped like a summary line
            # with another label; macOS resource forks next to real files.
            (emo / "Categorical" / f"{dialog}_e1_cat.txt").write_text(
                f"{turns[0][0]} :Frustration; ()\n"
            )
            (emo / "Attribute" / f"{dialog}_e1_atr.txt").write_text(
                _summary(1.0, turns[0][0], "sad", (5.0, 5.0, 5.0))
            )
            (emo / f"._{dialog}.txt").write_bytes(b"\x00\x05\x16\x07Mac OS X        \x00\x02")
            (trans / f"._{dialog}.txt").write_bytes(b"\x00\x05\x16\x07\xff\xfe")
            wav_dir = release / session / "sentences" / "wav" / dialog
            (wav_dir / f"._{turns[0][0]}.wav").write_bytes(b"\x00\x05\x16\x07")
        # A format the recipe must not read.
        (release / session / "sentences" / "MOCAP_rotated").mkdir(parents=True, exist_ok=True)
    return release


@pytest.fixture
def iemocap_root(tmp_path: Path) -> Path:
    return write_iemocap_tree(tmp_path)


# --- a tiny local text encoder (no hub) -------------------------------------------------------

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def write_tiny_bert(folder: Path, words: Iterable[str], seed: int = 0) -> Path:
    """A randomly initialised 2-layer BERT (hidden 32) and its WordPiece tokenizer, saved
    with `save_pretrained` into `folder`: a local stand-in for a hub encoder."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join([*SPECIAL_TOKENS, *words]) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(SPECIAL_TOKENS) + len(list(words)),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def bundle(tmp_path_factory) -> Path:
    """A tiny real bundle (exported once per session) for the runtime and service tests."""
    from export.bundle_writer import ExportOptions, export_bundle
    from tests.export.test_bundle import write_checkpoint

    root = tmp_path_factory.mktemp("service_bundle")
    checkpoint = write_checkpoint(root / "checkpoint", "group")
    quick = ExportOptions(
        reference_clips=4, invariance_clips=4, agreement_clips=16, naive_contrast=False
    )
    export_bundle(checkpoint, root / "bundle", quick)
    return root / "bundle"


@pytest.fixture(scope="session")
def bundle_with_dimensions(tmp_path_factory) -> Path:
    """A tiny real bundle of version 3 with both outputs: categories and dimensions."""
    from export.bundle_writer import ExportOptions, export_bundle
    from tests.export.test_bundle import write_checkpoint

    root = tmp_path_factory.mktemp("dimensions_bundle")
    checkpoint = write_checkpoint(root / "checkpoint", "group", dimensions=True)
    quick = ExportOptions(
        reference_clips=4, invariance_clips=4, agreement_clips=16, naive_contrast=False
    )
    export_bundle(checkpoint, root / "bundle", quick)
    return root / "bundle"


@pytest.fixture(scope="session")
def dimensions_only_bundle(bundle_with_dimensions: Path, tmp_path_factory) -> Path:
    """A dimensions-only bundle (no labels; one output, `dimensions`), made from the two-output
    bundle by dropping the logits from each graph's outputs: the runtime's side of the
    contract, whatever training gives it."""
    import onnx

    from emodistill.bundle import DIMENSIONS, METADATA, read_metadata, sha256_of

    folder = tmp_path_factory.mktemp("dimensions_only") / "bundle"
    shutil.copytree(bundle_with_dimensions, folder)
    metadata = read_metadata(folder)
    for name in metadata.files:
        if name.endswith(".onnx"):
            graph = onnx.load(str(folder / name))
            kept = [o for o in graph.graph.output if o.name == DIMENSIONS]
            del graph.graph.output[:]
            graph.graph.output.extend(kept)
            onnx.save(graph, str(folder / name))
    files = {name: sha256_of(folder / name) for name in metadata.files}
    outputs = [o for o in metadata.outputs if o.name == DIMENSIONS]
    changed = metadata.model_copy(
        update={"labels": [], "outputs": outputs, "files": files, "calibration": None}
    )
    (folder / METADATA).write_text(changed.model_dump_json(indent=2))
    return folder
