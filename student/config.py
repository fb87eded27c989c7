"""The student's typed config (the `student:` block of a run config). Unknown keys are errors."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

EncoderName = Literal["hubert", "wav2vec2", "wavlm"]


class StudentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pretrained: str | None = Field(
        "facebook/hubert-base-ls960",
        description="Hub name or local folder of a HuBERT, wav2vec 2.0 or WavLM checkpoint "
        "(e.g. microsoft/wavlm-large); null to use `preset`.",
    )
    preset: Literal["tiny", "base", "large"] | None = Field(
        None, description="Random init from a named architecture (tiny: tests and the demo)."
    )
    encoder: EncoderName | None = Field(
        None,
        description="Encoder family. Preset: which one (default hubert). Pretrained: read from "
        "the checkpoint; when given too, a checkpoint of another family is an error.",
    )
    feat_extract_norm: Literal["group", "layer"] | None = Field(
        None, description="Preset only: first-layer norm (base uses group, large layer)."
    )
    do_normalize: bool | None = Field(
        None, description="Per-clip zero-mean unit-variance input; null: the checkpoint's own."
    )
    classifier_proj_size: int = Field(256, description="Width of the pooled embedding.")
    freeze_feature_encoder: bool = True
    mask_time_prob: float = Field(0.05, description="SpecAugment over time while training.")
    layerdrop: float = 0.05
    hidden_dropout: float = 0.1

    @model_validator(mode="after")
    def _one_source(self) -> StudentConfig:
        if (self.pretrained is None) == (self.preset is None):
            raise ValueError("student: give exactly one of `pretrained` and `preset`")
        if self.feat_extract_norm is not None and self.preset is None:
            raise ValueError("student.feat_extract_norm applies to presets only")
        return self
