"""The answer for one input, as a type: what the Python API returns and the service sends.

`POST /predict`'s JSON is `Prediction`'s serialisation; `prediction.model_dump()` is the
same as a dict. Field order is the JSON's. Torch-free; knows nothing of HTTP.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from emodistill.bundle import BundleMetadata, TrainingData


class Segment(BaseModel):
    """One scored stretch of a long input (seconds of the input's audio)."""

    start_s: float
    end_s: float
    label: str
    probabilities: dict[str, float]


class ModelCard(BaseModel):
    """The `model` block of every answer: which model, what it learned from, whether its
    probabilities are calibrated, and its note."""

    name: str
    version: str
    calibrated: bool
    trained_on: TrainingData | None
    note: str | None

    @classmethod
    def of(cls, metadata: BundleMetadata) -> ModelCard:
        return cls(
            name=metadata.name,
            version=metadata.version,
            calibrated=metadata.calibration is not None,
            trained_on=metadata.trained_on,
            note=metadata.note,
        )


class Prediction(BaseModel):
    label: str
    probabilities: dict[str, float] = Field(
        description="Per label, in the bundle's order; for long audio the mean over segments "
        "weighted by their duration (silence, never scored, weighs nothing)."
    )
    duration_s: float
    speech_s: float | None = Field(
        None, description="How much of the audio was speech (long audio; null when not run)."
    )
    segmentation: Literal["whole", "speech", "windows"] = Field(
        description="whole: scored as one utterance; speech: cut at pauses; windows: fixed."
    )
    segments: list[Segment] | None = Field(
        None, description="For audio longer than max_segment_s: each segment's answer."
    )
    model: ModelCard = Field(
        description="name, version, calibrated, trained_on (corpus, speakers, held-out UA/WA) "
        "and a note on what the model can and cannot do."
    )
