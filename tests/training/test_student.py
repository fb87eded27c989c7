"""The student checkpoint is a standard Hugging Face folder that gives our probabilities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForAudioClassification, HubertConfig, HubertModel, pipeline

from tests.conftest import tone
from training.config import StudentConfig
from training.student import (
    HEADS_FILE,
    EmoDistillStudent,
    build_classifier,
    build_feature_extractor,
)

LABELS = ["neutral", "angry", "sad", "happy"]


def tiny(norm: str = "group", **kw) -> StudentConfig:
    return StudentConfig(pretrained=None, preset="tiny", feat_extract_norm=norm, **kw)


def clips() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [
        tone(1.3, freq_hz=220) + 0.05 * rng.standard_normal(20800).astype(np.float32),
        tone(0.6, freq_hz=330),
    ]


def _alone_and_batched(student, extractor, clips_):
    batch = extractor(clips_, sampling_rate=16_000, padding=True, return_tensors="pt")
    singles = [extractor(c, sampling_rate=16_000, return_tensors="pt") for c in clips_]
    return batch, singles


@pytest.mark.parametrize("norm", ["group", "layer"])
def test_saved_checkpoint_loads_in_transformers_with_our_probabilities(tmp_path: Path, norm):
    torch.manual_seed(0)
    config = tiny(norm, do_normalize=True)
    student = EmoDistillStudent(build_classifier(config, LABELS), {"linguistic": 12}).eval()
    extractor = build_feature_extractor(config)
    student.save(tmp_path, extractor)
    auto = AutoModelForAudioClassification.from_pretrained(tmp_path).eval()
    batch, singles = _alone_and_batched(student, extractor, clips())

    with torch.no_grad():
        batched = student(batch.input_values, batch.attention_mask).logits
        for i, single in enumerate(singles):
            alone = student(single.input_values, single.attention_mask).logits
            theirs = auto(single.input_values, attention_mask=single.attention_mask).logits
            # Tolerance 1e-5 (fp32): the same computation, summed in another order.
            torch.testing.assert_close(alone, theirs, atol=1e-5, rtol=0)
            torch.testing.assert_close(batched[i : i + 1], alone, atol=1e-5, rtol=0)

    classify = pipeline("audio-classification", model=str(tmp_path), top_k=None)
    for clip, single in zip(clips(), singles, strict=True):
        with torch.no_grad():
            expected = torch.softmax(student(single.input_values, single.attention_mask).logits, -1)
        got = {d["label"]: d["score"] for d in classify({"raw": clip, "sampling_rate": 16_000})}
        assert set(got) == set(LABELS)
        for j, label in enumerate(LABELS):
            assert got[label] == pytest.approx(float(expected[0, j]), abs=1e-5)


def test_transformers_own_batched_forward_is_not_invariant_for_group_norm():
    """The trap the batch-invariant forward removes (shared/reference/serving.md)."""
    torch.manual_seed(0)
    config = tiny("group", do_normalize=False)
    model = build_classifier(config, LABELS).eval()
    extractor = build_feature_extractor(config)
    short = tone(0.3, freq_hz=300)
    batch = extractor([short, tone(2.0)], sampling_rate=16_000, padding=True, return_tensors="pt")
    alone = extractor(short, sampling_rate=16_000, return_tensors="pt")
    with torch.no_grad():
        theirs_batched = model(batch.input_values, attention_mask=batch.attention_mask).logits[0]
        theirs_alone = model(alone.input_values, attention_mask=alone.attention_mask).logits[0]
        ours = EmoDistillStudent(model, {})(batch.input_values, batch.attention_mask).logits[0]
    assert float((theirs_batched - theirs_alone).abs().max()) > 1e-3
    assert float((ours - theirs_alone).abs().max()) <= 1e-5


def test_labels_preprocessor_and_heads_are_saved(tmp_path: Path):
    config = tiny(classifier_proj_size=16)
    student = EmoDistillStudent(build_classifier(config, LABELS), {"linguistic": 8, "prosodic": 4})
    torch.nn.init.constant_(student.heads["prosodic"].weight, 0.25)
    student.save(tmp_path, build_feature_extractor(config))

    auto = AutoModelForAudioClassification.from_pretrained(tmp_path)
    assert auto.config.id2label == dict(enumerate(LABELS))
    assert (tmp_path / "preprocessor_config.json").is_file() and (tmp_path / HEADS_FILE).is_file()
    back = EmoDistillStudent.load(tmp_path)
    assert {k: h.out_features for k, h in back.heads.items()} == {"linguistic": 8, "prosodic": 4}
    assert torch.all(back.heads["prosodic"].weight == 0.25)
    assert build_feature_extractor(config).sampling_rate == 16_000


def test_feature_encoder_is_frozen_by_default():
    model = build_classifier(StudentConfig(pretrained=None, preset="tiny"), LABELS)
    encoder = [p.requires_grad for p in model.hubert.feature_extractor.parameters()]
    assert encoder and not any(encoder)
    assert all(p.requires_grad for p in model.hubert.encoder.parameters())
    trainable = build_classifier(tiny(freeze_feature_encoder=False), LABELS)
    assert all(p.requires_grad for p in trainable.hubert.feature_extractor.parameters())


def test_pretrained_folder_loads_with_a_new_head(tmp_path: Path):
    """The from_pretrained path used for facebook/hubert-*, on a local HuBERT folder."""
    torch.manual_seed(0)
    backbone = HubertModel(
        HubertConfig(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            conv_dim=(16,) * 7,
            num_conv_pos_embeddings=8,
            num_conv_pos_embedding_groups=2,
        )
    )
    backbone.save_pretrained(tmp_path)
    model = build_classifier(
        StudentConfig(pretrained=str(tmp_path), classifier_proj_size=8), LABELS
    )
    assert model.config.num_labels == 4 and model.config.id2label[2] == "sad"
    loaded = model.hubert.encoder.layers[0].attention.k_proj.weight
    torch.testing.assert_close(loaded, backbone.encoder.layers[0].attention.k_proj.weight)


def test_one_source_only():
    with pytest.raises(ValueError, match="exactly one"):
        StudentConfig(pretrained="facebook/hubert-base-ls960", preset="tiny")
    with pytest.raises(ValueError, match="presets only"):
        StudentConfig(feat_extract_norm="layer")
