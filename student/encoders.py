"""The speech encoder families a student can be: HuBERT, wav2vec 2.0 and WavLM.

All three are the same design in transformers (a conv feature encoder with 320x downsampling,
a feature projection, a transformer encoder, and a `...ForSequenceClassification` head that
projects, mean-pools over valid frames and classifies); they differ in attribute names,
in whether the projection also returns its normalised input, and in WavLM's gated relative
position bias. This module is the one place that knows which family is which.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

from transformers import (
    HubertConfig,
    HubertForSequenceClassification,
    HubertModel,
    PretrainedConfig,
    Wav2Vec2Config,
    Wav2Vec2ForSequenceClassification,
    Wav2Vec2Model,
    WavLMConfig,
    WavLMForSequenceClassification,
    WavLMModel,
)

from .config import EncoderName

SpeechClassifier: TypeAlias = (
    HubertForSequenceClassification
    | Wav2Vec2ForSequenceClassification
    | WavLMForSequenceClassification
)

# The encoder inside a classifier (its `base_model`).
SpeechEncoder: TypeAlias = HubertModel | Wav2Vec2Model | WavLMModel

# `tiny` keeps the 320x downsampling (20 ms frames) at a fraction of the width; `base` and
# `large` are the published sizes (the config classes' defaults are the base ones).
_TINY: dict[str, Any] = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=128,
    conv_dim=(32, 32, 64, 64, 64, 64, 64),  # the two full-rate convs dominate CPU time
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
)
_LARGE: dict[str, Any] = dict(
    hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096
)
# A preset's family when the config names none: the poster's student.
DEFAULT_ENCODER: EncoderName = "hubert"
PRESETS: dict[str, dict[str, Any]] = {"tiny": _TINY, "base": {}, "large": _LARGE}
# First-layer norm of each preset when the config names none: the published checkpoints'.
PRESET_NORM = {"tiny": "group", "base": "group", "large": "layer"}


@dataclass(frozen=True)
class EncoderFamily:
    name: EncoderName
    config_class: type[PretrainedConfig]
    classifier_class: type[SpeechClassifier]
    # do_normalize of the published checkpoints, per preset size: fairseq trained the base
    # HuBERT and WavLM on raw waveforms and the large ones (and every wav2vec 2.0) on
    # normalised ones.
    preset_normalize: dict[str, bool]


FAMILIES: dict[str, EncoderFamily] = {
    "hubert": EncoderFamily(
        "hubert",
        HubertConfig,
        HubertForSequenceClassification,
        {"tiny": False, "base": False, "large": True},
    ),
    "wav2vec2": EncoderFamily(
        "wav2vec2",
        Wav2Vec2Config,
        Wav2Vec2ForSequenceClassification,
        {"tiny": True, "base": True, "large": True},
    ),
    "wavlm": EncoderFamily(
        "wavlm",
        WavLMConfig,
        WavLMForSequenceClassification,
        {"tiny": True, "base": False, "large": True},
    ),
}


class UnsupportedEncoderError(ValueError):
    """A checkpoint whose architecture is none of FAMILIES'; the message names it."""


def family_of(model_type: str | None) -> EncoderFamily:
    """The family of a config.json's `model_type` ("hubert", "wav2vec2", "wavlm")."""
    if model_type not in FAMILIES:
        raise UnsupportedEncoderError(
            f"model_type {model_type!r} is not a supported speech encoder "
            f"(supported: {', '.join(FAMILIES)})"
        )
    return FAMILIES[model_type]


def norm_settings(norm: str) -> dict[str, Any]:
    """transformers couples the first-layer norm with where the transformer's LayerNorms sit."""
    if norm == "layer":
        return dict(feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True)
    return dict(feat_extract_norm="group", do_stable_layer_norm=False, conv_bias=False)
