"""The answer for one input, as a type: what the Python API returns and the service sends.

`POST /predict`'s JSON is `Prediction`'s serialisation; `prediction.model_dump()` is the
same as a dict. Field order is the JSON's. An output the bundle does not have is left out of
the serialisation entirely: `dimensions` (answers and model card) for a bundle without them,
so a bundle of version 1 or 2 answers byte for byte as it did before dimensions existed, and
`label` and `probabilities` for a dimensions-only bundle. Torch-free; knows nothing of HTTP.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer

from emodistill.bundle import BundleMetadata, DimensionsTraining, TrainingData

DIMENSIONS_KEY = "dimensions"
# The keys of the bundle's outputs: absent from an answer when the bundle lacks that output.
OUTPUT_KEYS = ("label", "probabilities", DIMENSIONS_KEY)


class OmitsAbsentOutputs(BaseModel):
    """Serialises without an output's key (`OUTPUT_KEYS`) when it is None (see the module
    docstring)."""

    # Unannotated on purpose: an annotated return type would replace the model's own schema
    # in OpenAPI (pydantic takes the serializer's return type as the serialisation schema).
    @model_serializer(mode="wrap")
    def _omit_absent_dimensions(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        data = handler(self)
        if isinstance(data, dict):
            for key in OUTPUT_KEYS:
                if key in data and data[key] is None:
                    del data[key]
        return data


class Dimensions(BaseModel):
    """Arousal, valence and dominance, each on the bundle's scale (0 low, 1 high)."""

    arousal: float = Field(description="How activated or calm: 0 calm, 1 heated.")
    valence: float = Field(description="How negative or positive: 0 negative, 1 positive.")
    dominance: float = Field(description="How submissive or in control: 0 weak, 1 dominant.")


DIMENSIONS_FIELD = Field(
    None,
    description="Arousal, valence and dominance on [0, 1], for a bundle that has them (absent "
    "otherwise); for long audio the mean over segments weighted by their duration.",
)
LABEL_FIELD = Field(
    None, description="The most probable category; absent for a dimensions-only bundle."
)
PROBABILITIES_FIELD = Field(
    None,
    description="Per label, in the bundle's order; for long audio the mean over segments "
    "weighted by their duration (silence, never scored, weighs nothing). Absent for a "
    "dimensions-only bundle.",
)


class Segment(OmitsAbsentOutputs):
    """One scored stretch of a long input (seconds of the input's audio)."""

    start_s: float
    end_s: float
    label: str | None = LABEL_FIELD
    probabilities: dict[str, float] | None = PROBABILITIES_FIELD
    dimensions: Dimensions | None = DIMENSIONS_FIELD


class DimensionsCard(BaseModel):
    """The model card's word on the dimensions: their scale, what they were learned from and
    their concordance (CCC) on speakers the model never heard."""

    names: list[str]
    scale: tuple[float, float]
    trained: DimensionsTraining | None


class ModelCard(OmitsAbsentOutputs):
    """The `model` block of every answer: which model, what it learned from, whether its
    probabilities are calibrated, its note, and (when it has them) its dimensions."""

    name: str
    version: str
    calibrated: bool
    trained_on: TrainingData | None
    note: str | None
    dimensions: DimensionsCard | None = Field(
        None, description="Absent when the model has no dimensions."
    )

    @classmethod
    def of(cls, metadata: BundleMetadata) -> ModelCard:
        spec = metadata.dimensions
        return cls(
            name=metadata.name,
            version=metadata.version,
            calibrated=metadata.calibration is not None,
            trained_on=metadata.trained_on,
            note=metadata.note,
            dimensions=None
            if spec is None
            else DimensionsCard(names=spec.names, scale=spec.scale, trained=spec.trained),
        )


class Prediction(OmitsAbsentOutputs):
    label: str | None = LABEL_FIELD
    probabilities: dict[str, float] | None = PROBABILITIES_FIELD
    dimensions: Dimensions | None = DIMENSIONS_FIELD
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
