"""The student checkpoint is a standard Hugging Face folder that gives our probabilities, for
each encoder family (HuBERT, wav2vec 2.0, WavLM)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    AutoModelForAudioClassification,
    HubertConfig,
    HubertModel,
    Wav2Vec2Config,
    Wav2Vec2Model,
    WavLMConfig,
    WavLMModel,
    pipeline,
)

from emodistill.audio import pad_batch
from student.config import StudentConfig
from student.encoders import FAMILIES, UnsupportedEncoderError
from student.model import (
    HEADS_FILE,
    EmoDistillStudent,
    build_classifier,
    build_feature_extractor,
)
from tests.conftest import tone

LABELS = ["neutral", "angry", "sad", "happy"]
ENCODERS = list(FAMILIES)


def tiny(norm: str = "group", encoder: str = "hubert", **kw) -> StudentConfig:
    return StudentConfig(
        pretrained=None, preset="tiny", encoder=encoder, feat_extract_norm=norm, **kw
    )


def clips() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [
        3.0 * tone(1.3, freq_hz=220) + 0.05 * rng.standard_normal(20800).astype(np.float32),
        tone(0.6, freq_hz=330),
        0.1 * tone(0.25, freq_hz=180),
    ]


def tensors(batch: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    values, mask = pad_batch(batch)
    return torch.from_numpy(values), torch.from_numpy(mask)


@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize("norm", ["group", "layer"])
@pytest.mark.parametrize("do_normalize", [False, True])
def test_saved_checkpoint_loads_in_transformers_with_our_probabilities(
    tmp_path: Path, encoder, norm, do_normalize
):
    """Ours on raw audio, batched or alone == transformers on the clip after its own
    preprocessor (the normalisation is inside our forward)."""
    torch.manual_seed(0)
    config = tiny(norm, encoder, do_normalize=do_normalize)
    extractor = build_feature_extractor(config)
    student = EmoDistillStudent(build_classifier(config, LABELS), extractor, {"linguistic": 12})
    student.eval().save(tmp_path)
    auto = AutoModelForAudioClassification.from_pretrained(tmp_path).eval()
    assert type(auto) is FAMILIES[encoder].classifier_class

    with torch.no_grad():
        batched = student(*tensors(clips())).logits
        for i, clip in enumerate(clips()):
            alone = student(*tensors([clip])).logits
            prepared = extractor(clip, sampling_rate=16_000, return_tensors="pt")
            theirs = auto(prepared.input_values, attention_mask=prepared.attention_mask).logits
            # Tolerance 1e-5 (fp32): the same computation, summed in another order.
            torch.testing.assert_close(alone, theirs, atol=1e-5, rtol=0)
            torch.testing.assert_close(batched[i : i + 1], alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_the_audio_classification_pipeline_gives_our_probabilities(tmp_path: Path, encoder):
    torch.manual_seed(0)
    config = tiny("layer", encoder, do_normalize=True)
    extractor = build_feature_extractor(config)
    student = EmoDistillStudent(build_classifier(config, LABELS), extractor, {})
    student.eval().save(tmp_path)
    classify = pipeline("audio-classification", model=str(tmp_path), top_k=None)
    for clip in clips():
        with torch.no_grad():
            expected = torch.softmax(student(*tensors([clip])).logits, -1)
        got = {d["label"]: d["score"] for d in classify({"raw": clip, "sampling_rate": 16_000})}
        assert set(got) == set(LABELS)
        for j, label in enumerate(LABELS):
            assert got[label] == pytest.approx(float(expected[0, j]), abs=1e-5)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_transformers_own_batched_forward_is_not_invariant_for_group_norm(encoder):
    """The trap the batch-invariant forward removes."""
    torch.manual_seed(0)
    config = tiny("group", encoder, do_normalize=False)
    model = build_classifier(config, LABELS).eval()
    short, long = tone(0.3, freq_hz=300), tone(2.0)
    values, mask = tensors([short, long])
    with torch.no_grad():
        theirs_batched = model(values, attention_mask=mask).logits[0]
        theirs_alone = model(*tensors([short])[:1]).logits[0]
        student = EmoDistillStudent(model, build_feature_extractor(config), {})
        ours = student(values, mask).logits[0]
    assert float((theirs_batched - theirs_alone).abs().max()) > 1e-3
    assert float((ours - theirs_alone).abs().max()) <= 1e-5


def test_labels_preprocessor_and_heads_are_saved(tmp_path: Path):
    config = tiny(classifier_proj_size=16)
    extractor = build_feature_extractor(config)
    heads = {"linguistic": 8, "prosodic": 4}
    student = EmoDistillStudent(build_classifier(config, LABELS), extractor, heads)
    torch.nn.init.constant_(student.heads["prosodic"].weight, 0.25)
    student.save(tmp_path)

    auto = AutoModelForAudioClassification.from_pretrained(tmp_path)
    assert auto.config.id2label == dict(enumerate(LABELS))
    assert (tmp_path / "preprocessor_config.json").is_file() and (tmp_path / HEADS_FILE).is_file()
    back = EmoDistillStudent.load(tmp_path)
    assert {k: h.out_features for k, h in back.heads.items()} == {"linguistic": 8, "prosodic": 4}
    assert torch.all(back.heads["prosodic"].weight == 0.25)
    assert back.normalize == student.normalize
    assert build_feature_extractor(config).sampling_rate == 16_000


@pytest.mark.parametrize("encoder", ENCODERS)
def test_feature_encoder_is_frozen_by_default(encoder):
    model = build_classifier(StudentConfig(pretrained=None, preset="tiny", encoder=encoder), LABELS)
    frozen = [p.requires_grad for p in model.base_model.feature_extractor.parameters()]
    assert frozen and not any(frozen)
    assert all(p.requires_grad for p in model.base_model.encoder.parameters())
    trainable = build_classifier(tiny(encoder=encoder, freeze_feature_encoder=False), LABELS)
    assert all(p.requires_grad for p in trainable.base_model.feature_extractor.parameters())


BACKBONES = {
    "hubert": (HubertConfig, HubertModel),
    "wav2vec2": (Wav2Vec2Config, Wav2Vec2Model),
    "wavlm": (WavLMConfig, WavLMModel),
}


@pytest.mark.parametrize("encoder", ENCODERS)
def test_pretrained_folder_loads_with_a_new_head(tmp_path: Path, encoder):
    """The from_pretrained path used for hub ids (facebook/hubert-base-ls960,
    facebook/wav2vec2-base, microsoft/wavlm-large), on a local folder of each family: the
    family comes from the checkpoint, with no other config line."""
    torch.manual_seed(0)
    config_class, model_class = BACKBONES[encoder]
    backbone = model_class(
        config_class(
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
    config = StudentConfig(pretrained=str(tmp_path), classifier_proj_size=8)
    model = build_classifier(config, LABELS)
    assert type(model) is FAMILIES[encoder].classifier_class
    assert model.config.num_labels == 4 and model.config.id2label[2] == "sad"
    loaded = model.base_model.encoder.layers[0].attention.k_proj.weight
    torch.testing.assert_close(loaded, backbone.encoder.layers[0].attention.k_proj.weight)

    other = next(e for e in ENCODERS if e != encoder)
    with pytest.raises(UnsupportedEncoderError, match=f"student.encoder is {other}"):
        build_classifier(StudentConfig(pretrained=str(tmp_path), encoder=other), LABELS)


def test_a_checkpoint_of_another_kind_is_refused(tmp_path: Path):
    from transformers import BertConfig, BertModel

    bert = BertModel(BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2))
    bert.save_pretrained(tmp_path)
    with pytest.raises(UnsupportedEncoderError, match="'bert' is not a supported speech encoder"):
        build_classifier(StudentConfig(pretrained=str(tmp_path)), LABELS)


def test_one_source_only():
    with pytest.raises(ValueError, match="exactly one"):
        StudentConfig(pretrained="facebook/hubert-base-ls960", preset="tiny")
    with pytest.raises(ValueError, match="presets only"):
        StudentConfig(feat_extract_norm="layer")
