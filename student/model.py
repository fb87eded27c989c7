"""The student: a standard Hugging Face audio classifier plus two training-only heads.

The classifier is a `...ForSequenceClassification` of one of `encoders.FAMILIES` (encoder ->
projector -> mean over valid frames -> linear), so its saved folder loads with
`AutoModelForAudioClassification` and `pipeline("audio-classification")`; our forward is its
batch-invariant equivalent (`batch_invariant.py`), with the preprocessor's per-clip
normalisation inside it, so the model's input is raw audio. `EmoDistillStudent` adds the
projection heads z'_L and z'_P that map the pooled embedding to each teacher's embedding
size; they are used in training only and saved apart. It may also have a dimensional head
(`DimensionHead`: arousal, valence, dominance in [0, 1] from the same pooled embedding,
beside the classifier), which IS used at inference: export reads it from `DIMENSION_HEAD_FILE`
beside the classifier's folder, whose standard files stay loadable by transformers.
Knows nothing of teachers' internals, losses or data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, Wav2Vec2FeatureExtractor

from emodistill.audio import SAMPLE_RATE_HZ
from emodistill.bundle import DIMENSION_NAMES, MODEL_CONFIG, PREPROCESSOR_CONFIG

from .batch_invariant import classify
from .config import StudentConfig
from .encoders import (
    DEFAULT_ENCODER,
    PRESET_NORM,
    PRESETS,
    SpeechClassifier,
    UnsupportedEncoderError,
    family_of,
    norm_settings,
)

# Training only: never copied into a bundle (emodistill/bundle.py names the files that are).
HEADS_FILE = "projection_heads.pt"
# The dimensional head's names and weights; export puts it into the graphs.
DIMENSION_HEAD_FILE = "dimension_head.pt"


class DimensionHead(nn.Module):
    """Pooled embedding [B, P] -> dimensions [B, len(names)] in (0, 1): linear, then sigmoid,
    so every answer lies on the scale the ratings were prepared to (DIMENSION_SCALE)."""

    def __init__(self, width: int, names: tuple[str, ...] = DIMENSION_NAMES):
        super().__init__()
        self.names = names
        self.linear = nn.Linear(width, len(names))

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.linear(embedding))

    def save(self, path: Path) -> None:
        torch.save({"names": list(self.names), "state": self.state_dict()}, path)

    @classmethod
    def load(cls, path: Path) -> DimensionHead:
        saved = torch.load(path, weights_only=True)
        head = cls(saved["state"]["linear.weight"].shape[1], tuple(saved["names"]))
        head.load_state_dict(saved["state"])
        return head.eval()


def load_dimension_head(checkpoint_dir: Path) -> DimensionHead | None:
    """The checkpoint's dimensional head, or None when the student has none."""
    path = Path(checkpoint_dir) / DIMENSION_HEAD_FILE
    return DimensionHead.load(path) if path.is_file() else None


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


def build_classifier(config: StudentConfig, labels: list[str]) -> SpeechClassifier:
    """A speech classifier: pretrained (hub name or folder) or a preset with random init."""
    if config.pretrained is not None:
        found = AutoConfig.from_pretrained(config.pretrained).model_type
        family = family_of(found)
        if config.encoder is not None and config.encoder != family.name:
            raise UnsupportedEncoderError(
                f"student.encoder is {config.encoder}, but {config.pretrained} is a {found}"
            )
        model = family.classifier_class.from_pretrained(
            config.pretrained, **_head_settings(config, labels)
        )
    else:
        assert config.preset is not None
        family = family_of(config.encoder or DEFAULT_ENCODER)
        norm = config.feat_extract_norm or PRESET_NORM[config.preset]
        hf_config = family.config_class(
            **PRESETS[config.preset], **norm_settings(norm), **_head_settings(config, labels)
        )
        model = family.classifier_class(hf_config)
    if config.freeze_feature_encoder:
        model.freeze_feature_encoder()
    return model


def build_feature_extractor(config: StudentConfig) -> Wav2Vec2FeatureExtractor:
    """The preprocessor saved beside the checkpoint: rate, padding and normalisation."""
    do_normalize = config.do_normalize
    if do_normalize is None and config.preset is not None:
        do_normalize = family_of(config.encoder or DEFAULT_ENCODER).preset_normalize[config.preset]
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


def load_classifier(checkpoint_dir: Path) -> tuple[SpeechClassifier, bool]:
    """A saved student folder -> (classifier in eval mode, do_normalize of its preprocessor)."""
    config = json.loads((Path(checkpoint_dir) / MODEL_CONFIG).read_text())
    model = family_of(config.get("model_type")).classifier_class.from_pretrained(checkpoint_dir)
    preprocessor = json.loads((Path(checkpoint_dir) / PREPROCESSOR_CONFIG).read_text())
    return model.eval(), bool(preprocessor.get("do_normalize"))


@dataclass
class StudentOutput:
    logits: torch.Tensor  # [B, C]
    embedding: torch.Tensor  # [B, P] pooled projector output
    projected: dict[str, torch.Tensor]  # teacher -> [B, D_teacher]
    dimensions: torch.Tensor | None = None  # [B, 3] in (0, 1); None without the head


class EmoDistillStudent(nn.Module):
    """The classifier plus one linear projection head per teacher embedding size.

    `feature_extractor` is the preprocessor saved with it; its `do_normalize` is applied
    inside `forward`, so callers pass raw audio.
    """

    def __init__(
        self,
        classifier: SpeechClassifier,
        feature_extractor: Wav2Vec2FeatureExtractor,
        head_dims: dict[str, int],
        dimensions: bool = False,
    ):
        super().__init__()
        self.classifier = classifier
        self.feature_extractor = feature_extractor
        width = classifier.config.classifier_proj_size
        self.heads = nn.ModuleDict({name: nn.Linear(width, dim) for name, dim in head_dims.items()})
        self.dimension_head = DimensionHead(width) if dimensions else None

    @property
    def normalize(self) -> bool:
        return bool(self.feature_extractor.do_normalize)

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor) -> StudentOutput:
        """input_values [B, S] float raw audio, attention_mask [B, S] (1 = sample).

        The batch-invariant forward (`batch_invariant.classify`): a clip's logits do not
        depend on its batch, and equal those of the saved checkpoint run by transformers on
        the clip alone (after its preprocessor).
        """
        logits, embedding = classify(self.classifier, input_values, attention_mask, self.normalize)
        projected = {name: head(embedding) for name, head in self.heads.items()}
        dimensions = self.dimension_head(embedding) if self.dimension_head is not None else None
        return StudentOutput(logits, embedding, projected, dimensions)

    def save(self, out_dir: Path) -> None:
        """A standard HF folder (config, weights, preprocessor) + the heads beside it."""
        out_dir.mkdir(parents=True, exist_ok=True)
        self.classifier.save_pretrained(out_dir)
        self.feature_extractor.save_pretrained(out_dir)
        dims = {name: head.out_features for name, head in self.heads.items()}
        torch.save({"dims": dims, "state": self.heads.state_dict()}, out_dir / HEADS_FILE)
        (out_dir / DIMENSION_HEAD_FILE).unlink(missing_ok=True)
        if self.dimension_head is not None:
            self.dimension_head.save(out_dir / DIMENSION_HEAD_FILE)

    @classmethod
    def load(cls, checkpoint_dir: Path) -> EmoDistillStudent:
        classifier, _ = load_classifier(checkpoint_dir)
        extractor = Wav2Vec2FeatureExtractor.from_pretrained(checkpoint_dir)
        heads_file = checkpoint_dir / HEADS_FILE
        saved = torch.load(heads_file, weights_only=True) if heads_file.is_file() else None
        dimension_head = load_dimension_head(checkpoint_dir)
        student = cls(classifier, extractor, saved["dims"] if saved else {})
        if saved:
            student.heads.load_state_dict(saved["state"])
        student.dimension_head = dimension_head
        return student
