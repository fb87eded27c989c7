"""Per-fold teacher training on separable toy folds: learning, caching, determinism, freezing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import write_tiny_bert
from tests.training.teachers.test_linguistic import TOY_WORDS
from training.config import LinguisticTeacherConfig, ProsodicTeacherConfig
from training.corpus.manifest import Utterance
from training.features import EGEMAPS_LLD_COUNT, EgemapsCache
from training.folds import FoldSplit
from training.teachers import fit
from training.teachers.fit import (
    TeacherOutputs,
    load_linguistic_teacher,
    load_prosodic_teacher,
    train_linguistic_teacher,
    train_prosodic_teacher,
)
from training.teachers.prosodic import batch_llds

LABELS = ["happy", "sad"]
WORDS = {"happy": ["happy", "joy", "great", "smile"], "sad": ["sad", "cry", "gloom", "tears"]}
PROSODIC = ProsodicTeacherConfig(
    channels=(4, 8, 8, 8), epochs=10, lr=3e-3, batch_size=8, max_frames=64, patience_epochs=4
)


def _toy_fold(root: Path) -> tuple[FoldSplit, EgemapsCache]:
    """Speakers s1, s2 train, s3 validates, s4 tests; 12 clips each, 6 per class.

    Transcripts draw 3 words from the class's word set; the eGeMAPS cache holds synthetic
    LLDs [40..120 frames, 25] whose mean is +0.8 higher for "sad" (files only key the cache).
    """
    rng = np.random.default_rng(0)
    cache = EgemapsCache(root / "egemaps")
    splits: dict[str, list[Utterance]] = {"train": [], "val": [], "test": []}
    for speaker, part in [("s1", "train"), ("s2", "train"), ("s3", "val"), ("s4", "test")]:
        for i in range(12):
            label = LABELS[i % 2]
            utt_id = f"{speaker}_{i:02d}"
            path = root / "audio" / f"{utt_id}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(utt_id.encode())  # distinct bytes: a distinct cache key
            frames = int(rng.integers(40, 121))
            offset = 0.8 if label == "sad" else 0.0
            lld = rng.normal(offset, 1.0, (frames, EGEMAPS_LLD_COUNT)).astype(np.float32)
            cache.put(path, lld * 3.0 + 10.0)  # far from standard: standardisation must act
            # Two training transcripts are empty, as IEMOCAP has some.
            words = rng.choice(WORDS[label], size=3)
            text = "" if (part == "train" and i in (10, 11)) else " ".join(words)
            row = Utterance(utt_id, str(path), label, speaker, "", text, frames / 100)
            splits[part].append(row)
    return FoldSplit(**splits), cache


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> tuple[FoldSplit, EgemapsCache, Path]:
    root = tmp_path_factory.mktemp("toy")
    split, cache = _toy_fold(root)
    return split, cache, write_tiny_bert(root / "tiny_bert", TOY_WORDS)


@pytest.fixture(scope="module")
def prosodic_dir(toy, tmp_path_factory: pytest.TempPathFactory) -> Path:
    split, cache, _ = toy
    out_dir = tmp_path_factory.mktemp("prosodic")
    train_prosodic_teacher(PROSODIC, split, LABELS, cache, out_dir, seed=0, progress=False)
    return out_dir


def _linguistic_config(encoder: Path, **changes) -> LinguisticTeacherConfig:
    base = dict(encoder=str(encoder), epochs=6, lr=1e-3, head_lr=1e-2, batch_size=8)
    return LinguisticTeacherConfig(**{**base, "max_tokens": 16, **changes})


@pytest.fixture(scope="module")
def linguistic_dir(toy, tmp_path_factory: pytest.TempPathFactory) -> Path:
    split, _, encoder = toy
    out_dir = tmp_path_factory.mktemp("linguistic")
    train_linguistic_teacher(_linguistic_config(encoder), split, LABELS, out_dir, progress=False)
    return out_dir


def _all_ids(split: FoldSplit) -> list[str]:
    return [r.utt_id for r in [*split.train, *split.val, *split.test]]


def _forbid_training(monkeypatch) -> None:
    def boom(*args, **kwargs):
        raise AssertionError("a cached teacher was trained again")

    monkeypatch.setattr(fit, "AdamW", boom)


@pytest.mark.parametrize("teacher", ["prosodic", "linguistic"])
def test_teacher_learns_and_covers_every_row(teacher: str, toy, request):
    split = toy[0]
    out_dir: Path = request.getfixturevalue(f"{teacher}_dir")
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["val"]["ua"] >= 0.9 and metrics["test"]["ua"] >= 0.9, metrics
    outputs = TeacherOutputs.load(out_dir / "outputs.npz")
    dim = 8 if teacher == "prosodic" else 32
    assert outputs.utt_ids == _all_ids(split)
    assert outputs.logits.shape == (48, 2) and outputs.embeddings.shape == (48, dim)
    assert outputs.logits.dtype == outputs.embeddings.dtype == np.float32
    assert (out_dir / "model.pt").is_file()


@pytest.mark.parametrize("teacher", ["prosodic", "linguistic"])
def test_second_call_reads_the_cache(teacher: str, toy, request, monkeypatch):
    split, cache, encoder = toy
    out_dir: Path = request.getfixturevalue(f"{teacher}_dir")
    first = TeacherOutputs.load(out_dir / "outputs.npz")
    _forbid_training(monkeypatch)
    if teacher == "prosodic":
        again = train_prosodic_teacher(PROSODIC, split, LABELS, cache, out_dir, progress=False)
    else:
        config = _linguistic_config(encoder)
        again = train_linguistic_teacher(config, split, LABELS, out_dir, progress=False)
    assert again.outputs.utt_ids == first.utt_ids
    np.testing.assert_array_equal(again.outputs.logits, first.logits)
    np.testing.assert_array_equal(again.outputs.embeddings, first.embeddings)
    saved = json.loads((out_dir / "metrics.json").read_text())
    assert again.val.to_dict() == saved["val"] and again.test.to_dict() == saved["test"]


def test_prosodic_standardises_with_training_rows_only(toy, prosodic_dir: Path):
    split, cache, _ = toy
    train = np.concatenate([cache.get(Path(r.path)) for r in split.train])
    stats = np.load(prosodic_dir / "lld_stats.npz")
    np.testing.assert_allclose(stats["mean"], train.mean(0), rtol=0, atol=1e-4)
    np.testing.assert_allclose(stats["std"], train.std(0), rtol=1e-5, atol=0)


def test_reloaded_prosodic_teacher_is_frozen_and_reproduces_outputs(toy, prosodic_dir: Path):
    split, cache, _ = toy
    model, mean, std = load_prosodic_teacher(prosodic_dir)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    rows = split.test
    with torch.no_grad():
        logits, emb = model(*batch_llds([(cache.get(Path(r.path)) - mean) / std for r in rows]))
    saved_logits, saved_emb = TeacherOutputs.load(prosodic_dir / "outputs.npz").select(
        [r.utt_id for r in rows]
    )
    np.testing.assert_allclose(logits.numpy(), saved_logits, rtol=0, atol=1e-5)
    np.testing.assert_allclose(emb.numpy(), saved_emb, rtol=0, atol=1e-5)


def test_reloaded_linguistic_teacher_is_frozen_and_reproduces_outputs(toy, linguistic_dir):
    split, _, _ = toy
    model, tokenizer = load_linguistic_teacher(linguistic_dir)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    rows = split.val
    enc = tokenizer(
        [r.text for r in rows], padding=True, truncation=True, max_length=16, return_tensors="pt"
    )
    with torch.no_grad():
        logits, emb = model(enc["input_ids"], enc["attention_mask"])
    saved = TeacherOutputs.load(linguistic_dir / "outputs.npz").select([r.utt_id for r in rows])
    np.testing.assert_allclose(logits.numpy(), saved[0], rtol=0, atol=1e-5)
    np.testing.assert_allclose(emb.numpy(), saved[1], rtol=0, atol=1e-5)


def test_same_seed_gives_identical_outputs(toy, prosodic_dir: Path, tmp_path: Path):
    split, cache, _ = toy
    again = train_prosodic_teacher(PROSODIC, split, LABELS, cache, tmp_path / "p", progress=False)
    first = TeacherOutputs.load(prosodic_dir / "outputs.npz")
    np.testing.assert_array_equal(again.outputs.logits, first.logits)
    np.testing.assert_array_equal(again.outputs.embeddings, first.embeddings)
    other = train_prosodic_teacher(
        PROSODIC, split, LABELS, cache, tmp_path / "q", seed=1, progress=False
    )
    assert not np.array_equal(other.outputs.logits, first.logits)  # the seed does matter


def test_same_seed_gives_identical_linguistic_outputs(toy, linguistic_dir: Path, tmp_path: Path):
    split, _, encoder = toy
    config = _linguistic_config(encoder)
    again = train_linguistic_teacher(config, split, LABELS, tmp_path, progress=False)
    first = TeacherOutputs.load(linguistic_dir / "outputs.npz")
    np.testing.assert_array_equal(again.outputs.logits, first.logits)
    np.testing.assert_array_equal(again.outputs.embeddings, first.embeddings)


def test_frozen_encoder_trains_the_head_only(toy, tmp_path: Path):
    split, _, encoder = toy
    config = _linguistic_config(encoder, finetune_encoder=False)
    result = train_linguistic_teacher(config, split, LABELS, tmp_path, progress=False)
    assert result.val.ua >= 0.9 and result.test.ua >= 0.9  # the head alone separates the words
    trained = torch.load(tmp_path / "model.pt")["state_dict"]
    original = fit.LinguisticTeacher(str(encoder), 2, "mean", 0.0).encoder.state_dict()
    for name, value in original.items():
        torch.testing.assert_close(trained[f"encoder.{name}"], value, rtol=0, atol=0)


def test_outputs_select_and_round_trip(tmp_path: Path):
    logits = np.arange(6, dtype=np.float32).reshape(3, 2)
    outputs = TeacherOutputs(["a", "b", "c"], logits, -logits)
    outputs.save(tmp_path / "o.npz")
    loaded = TeacherOutputs.load(tmp_path / "o.npz")
    picked_logits, picked_emb = loaded.select(["c", "a"])
    np.testing.assert_array_equal(picked_logits, [[4.0, 5.0], [0.0, 1.0]])
    np.testing.assert_array_equal(picked_emb, [[-4.0, -5.0], [-0.0, -1.0]])
    with pytest.raises(KeyError, match="'zz'"):
        loaded.select(["a", "zz"])
