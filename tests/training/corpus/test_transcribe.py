"""ASR transcripts at preparation time: a tiny random Whisper saved by the test, a resumable
cache keyed by audio hash and model id."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import (
    GenerationConfig,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperTokenizer,
)
from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

from emodistill.audio import load_audio
from tests.conftest import write_tone
from tests.training.corpus import trees
from training.corpus.manifest import Utterance, read_manifest
from training.corpus.transcribe import TranscriptCache, asr_pipeline, transcribe_rows

WHISPER_SPECIALS = [
    "<|endoftext|>",
    "<|startoftranscript|>",
    "<|en|>",
    "<|transcribe|>",
    "<|translate|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nocaptions|>",
    "<|notimestamps|>",
]


def write_tiny_whisper(folder: Path, seed: int = 0) -> Path:
    """A random 1-layer Whisper (d_model 16) with a byte-level tokenizer built offline: the 256
    byte symbols and Whisper's special tokens, no merges."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {c: i for i, c in enumerate(bytes_to_unicode().values())}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    end = WHISPER_SPECIALS[0]
    tokenizer = WhisperTokenizer(
        vocab_file=str(folder / "vocab.json"),
        merges_file=str(folder / "merges.txt"),
        unk_token=end,
        bos_token=end,
        eos_token=end,
        pad_token=end,
        additional_special_tokens=WHISPER_SPECIALS[1:],
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in WHISPER_SPECIALS}
    torch.manual_seed(seed)
    config = WhisperConfig(
        vocab_size=len(tokenizer),
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        num_mel_bins=80,
        max_source_positions=1500,  # 30 s of 10 ms frames, halved by the conv stem
        max_target_positions=32,
        decoder_start_token_id=ids["<|startoftranscript|>"],
        eos_token_id=ids[end],
        pad_token_id=ids[end],
        bos_token_id=ids[end],
        begin_suppress_tokens=None,
        suppress_tokens=None,
    )
    model = WhisperForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=ids["<|startoftranscript|>"],
        eos_token_id=ids[end],
        pad_token_id=ids[end],
        max_length=8,  # a random decoder never stops on its own
        no_timestamps_token_id=ids["<|notimestamps|>"],
    )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def whisper(tmp_path_factory) -> Path:
    return write_tiny_whisper(tmp_path_factory.mktemp("whisper") / "tiny-whisper")


def test_prepare_folders_transcribe_fills_the_text_from_the_model(
    whisper: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "out"
    root = trees.write_folders_tree(tmp_path)
    rows = trees.prepare_tree(
        "folders",
        root,
        out,
        "--speaker-pattern",
        trees.FOLDERS_PATTERN,
        "--transcribe",
        str(whisper),
        "--quiet",
    )

    asr = asr_pipeline(str(whisper))
    for row in rows:  # exactly what the model says for each clip
        expected = asr({"raw": load_audio(row.path), "sampling_rate": 16_000})["text"].strip()
        assert row.text == expected and row.text
    assert read_manifest(out) == rows
    (cache_file,) = (tmp_path / "cache" / "emodistill" / "transcripts").iterdir()
    assert "tiny-whisper" in cache_file.name


def _rows(folder: Path, n: int) -> list[Utterance]:
    rows = []
    for i in range(n):
        path = write_tone(folder / f"{i}.wav", 0.2 + 0.05 * i)  # distinct bytes, distinct hash
        rows.append(Utterance(f"u{i}", str(path), "happy", "s", "", "", 0.2))
    return rows


def test_an_interrupted_run_resumes_from_the_cache(tmp_path: Path):
    rows = _rows(tmp_path, 4)
    rows[1] = Utterance("u1", rows[1].path, "sad", "s", "", "kept as written", 0.25)
    heard: list[float] = []

    def dies_on_the_third(item: dict) -> dict:
        heard.append(len(item["raw"]))
        if len(heard) == 3:
            raise KeyboardInterrupt
        return {"text": f" words {len(item['raw'])} "}

    with pytest.raises(KeyboardInterrupt):
        transcribe_rows(rows, "m", False, lambda _: None, tmp_path / "c", dies_on_the_third)
    assert len(TranscriptCache("m", tmp_path / "c").texts) == 2

    calls: list[int] = []

    def counts(item: dict) -> dict:
        calls.append(len(item["raw"]))
        return {"text": f"words {len(item['raw'])}"}

    done = transcribe_rows(rows, "m", False, lambda _: None, tmp_path / "c", counts)
    assert len(calls) == 1  # only the row the killed run never reached
    assert [r.text for r in done] == [
        f"words {len(load_audio(r.path))}" if i != 1 else "kept as written"
        for i, r in enumerate(rows)
    ]
    # Another model id is another cache: nothing is reused across models.
    transcribe_rows(rows, "other", False, lambda _: None, tmp_path / "c", counts)
    assert len(calls) == 4


def test_the_cache_is_keyed_by_audio_content_not_by_path(tmp_path: Path):
    rows = _rows(tmp_path / "a", 1)
    copy = tmp_path / "b" / "same.wav"
    copy.parent.mkdir()
    copy.write_bytes(Path(rows[0].path).read_bytes())
    transcribe_rows(rows, "m", False, lambda _: None, tmp_path / "c", lambda _: {"text": "hi"})

    def never(_: object) -> dict:
        raise AssertionError("a cached file was transcribed again")

    moved = [Utterance("x", str(copy), "happy", "s", "", "", 0.2)]
    assert transcribe_rows(moved, "m", False, lambda _: None, tmp_path / "c", never)[0].text == "hi"
