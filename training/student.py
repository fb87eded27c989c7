"""The HuBERT student: a standard Hugging Face audio classifier plus two training-only heads.

The classifier is `HubertForSequenceClassification` (HuBERT -> projector -> mean over valid
frames -> linear), so its saved folder loads with `AutoModelForAudioClassification` and
`pipeline("audio-classification")`; our forward is its batch-invariant equivalent
(`batch_invariant.py`). `EmoDistillStudent` adds the projection heads z'_L and z'_P that map
the pooled embedding to each teacher's embedding size; they are used in training only and
saved apart. Knows nothing of teachers' internals, losses or data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import HubertConfig, HubertForSequenceClassification, Wav2Vec2FeatureExtractor

from emodistill.audio import SAMPLE_RATE_HZ

from .batch_invariant import classify
from .config import StudentConfig

HEADS_FILE = "projection_heads.pt"

# Architectures for random initialisation. `base` and `large` are HuBERT-base/large as
# published; `tiny` keeps the 320x downsampling (20 ms frames) at a fraction of the width.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        conv_dim=(32, 32, 64, 64, 64, 64, 64),  # the two full-rate convs dominate CPU time
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
    ),
    "base": dict(feat_extract_norm="group"),
    "large": dict(
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        intermediate_size=4096,
        feat_extract_norm="layer",
    ),
}
# fairseq trained HuBERT-base on raw waveforms and HuBERT-large on normalised ones.
PRESET_NORMALIZE = {"tiny": False, "base": False, "large": True}


def _norm_settings(norm: str) -> dict[str, Any]:
    """HF couples the first-layer norm with where the transformer's LayerNorms sit."""
    if norm == "layer":
        return dict(feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True)
    return dict(feat_extract_norm="group", do_stable_layer_norm=False, conv_bias=False)


def _head_settings(config: StudentConfig, labels: list[str]) -> dict[str, Any]:
    return dict(
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        classifier_proj_size=config.classifier_proj_size,
        use_weighted_layer_sum=False,
        mask_time_prob=config.mask_time_prob,
        layerdrop=config.layerdrop,
        hidden_dropout=config.hidden_dropout,
    )


def build_classifier(config: StudentConfig, labels: list[str]) -> HubertForSequenceClassification:
    """A HuBERT classifier: pretrained (hub name or folder) or a preset with random init."""
    if config.pretrained is not None:
        model = HubertForSequenceClassification.from_pretrained(
            config.pretrained, **_head_settings(config, labels)
        )
    else:
        assert config.preset is not None
        arch = dict(PRESETS[config.preset])
        norm = config.feat_extract_norm or arch.pop("feat_extract_norm", "group")
        arch.pop("feat_extract_norm", None)
        hf_config = HubertConfig(**arch, **_norm_settings(norm), **_head_settings(config, labels))
        model = HubertForSequenceClassification(hf_config)
    if config.freeze_feature_encoder:
        model.freeze_feature_encoder()
    return model


def build_feature_extractor(config: StudentConfig) -> Wav2Vec2FeatureExtractor:
    """The preprocessor saved beside the checkpoint: rate, padding and normalisation."""
    do_normalize = config.do_normalize
    if do_normalize is None and config.preset is not None:
        do_normalize = PRESET_NORMALIZE[config.preset]
    if do_normalize is None and config.pretrained is not None:
        try:
            found = Wav2Vec2FeatureExtractor.from_pretrained(config.pretrained)
            do_normalize = bool(found.do_normalize)
        except OSError:  # hub checkpoints of HuBERT-base ship no preprocessor config
            do_normalize = "large" in config.pretrained
    return Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=SAMPLE_RATE_HZ,
        padding_value=0.0,
        do_normalize=bool(do_normalize),
        return_attention_mask=True,
    )


@dataclass
class StudentOutput:
    logits: torch.Tensor  # [B, C]
    embedding: torch.Tensor  # [B, P] pooled projector output
    projected: dict[str, torch.Tensor]  # teacher -> [B, D_teacher]


class EmoDistillStudent(nn.Module):
    """The classifier plus one linear projection head per teacher embedding size."""

    def __init__(self, classifier: HubertForSequenceClassification, head_dims: dict[str, int]):
        super().__init__()
        self.classifier = classifier
        width = classifier.config.classifier_proj_size
        self.heads = nn.ModuleDict({name: nn.Linear(width, dim) for name, dim in head_dims.items()})

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor) -> StudentOutput:
        """input_values [B, S] float, attention_mask [B, S] (1 = sample) -> StudentOutput.

        The batch-invariant forward (`batch_invariant.classify`): a clip's logits do not
        depend on its batch, and equal those of the saved checkpoint run on the clip alone.
        """
        logits, embedding = classify(self.classifier, input_values, attention_mask)
        projected = {name: head(embedding) for name, head in self.heads.items()}
        return StudentOutput(logits, embedding, projected)

    def save(self, out_dir: Path, feature_extractor: Wav2Vec2FeatureExtractor) -> None:
        """A standard HF folder (config, weights, preprocessor) + the heads beside it."""
        out_dir.mkdir(parents=True, exist_ok=True)
        self.classifier.save_pretrained(out_dir)
        feature_extractor.save_pretrained(out_dir)
        dims = {name: head.out_features for name, head in self.heads.items()}
        torch.save({"dims": dims, "state": self.heads.state_dict()}, out_dir / HEADS_FILE)

    @classmethod
    def load(cls, checkpoint_dir: Path) -> EmoDistillStudent:
        classifier = HubertForSequenceClassification.from_pretrained(checkpoint_dir)
        heads_file = checkpoint_dir / HEADS_FILE
        saved = torch.load(heads_file, weights_only=True) if heads_file.is_file() else None
        student = cls(classifier, saved["dims"] if saved else {})
        if saved:
            student.heads.load_state_dict(saved["state"])
        return student
