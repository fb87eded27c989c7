"""The model bundle: the one contract between export (which writes it) and the service.

A bundle is a folder holding the ONNX student (fp32 for CPU, fp16 for CUDA, optionally
int8 for CPU), the student's `config.json` (labels) and `preprocessor_config.json`
(sample rate, normalisation) as training saved them, and `bundle.json` (this module's
`BundleMetadata`): labels in output order, tensor names and shapes, opset, a sha256 per
file, training metrics and the parity figures measured at export. Torch-free.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MODEL_FP32 = "model.onnx"
MODEL_FP16 = "model.fp16.onnx"
MODEL_INT8 = "model.int8.onnx"
MODEL_CONFIG = "config.json"
PREPROCESSOR_CONFIG = "preprocessor_config.json"
METADATA = "bundle.json"
# Written by training beside the student checkpoint; export copies it into bundle.json.
TRAINING_METRICS = "training_metrics.json"
# 3: the graph may have a second output, `dimensions` (declared in `outputs`, described by
# `dimensions`); 2: the graph applies do_normalize itself (`normalized_in_graph`); 1 left it
# to the caller. Every version still loads and answers as it did.
BUNDLE_VERSION = 3

# Tensor names of every ONNX file in a bundle (also the Triton model's).
INPUT_VALUES = "input_values"  # float32 [batch, samples]
ATTENTION_MASK = "attention_mask"  # int64 [batch, samples], 1 = real sample
LOGITS = "logits"  # float32 [batch, labels]
DIMENSIONS = "dimensions"  # float32 [batch, len(DIMENSION_NAMES)], each in DIMENSION_SCALE

# The dimensional output's order, everywhere (training targets, the graph, every answer).
DIMENSION_NAMES = ("arousal", "valence", "dominance")
# Every corpus's ratings are scaled into this range when prepared (IEMOCAP's 1-5, ...).
DIMENSION_SCALE = (0.0, 1.0)


class TensorSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    dtype: str
    shape: list[str | int]


class Calibration(BaseModel):
    """Temperature scaling, fitted after training on the validation speakers' predictions."""

    model_config = ConfigDict(extra="forbid")
    temperature: float = Field(gt=0, description="Probabilities are softmax(logits / this).")
    fitted_on: str = Field(description="Which predictions, e.g. a fold's validation speakers.")
    clips: int
    bins: int = Field(description="Equal-width confidence bins of the ECE.")
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float


class TrainingData(BaseModel):
    """What the student learned from, and how well it did on speakers it never heard."""

    model_config = ConfigDict(extra="forbid")
    corpus: str = Field(description="e.g. iemocap, synthetic (espeak-ng), a manifest's name.")
    utterances: int = Field(description="Training and validation utterances of the fold.")
    speakers: int
    protocol: str = Field(description="speaker or session: what the held-out group is.")
    fold: int | None = None
    test_speakers: list[str] = Field(default_factory=list)
    test_ua: float | None = Field(None, description="Unweighted accuracy, held-out speakers.")
    test_wa: float | None = Field(None, description="Weighted accuracy, held-out speakers.")


class DimensionsTraining(BaseModel):
    """What the dimensional head learned from, and its concordance on unheard speakers."""

    model_config = ConfigDict(extra="forbid")
    targets: str = Field(description="Whose ratings, on what scale, e.g. IEMOCAP's 1-5.")
    utterances: int = Field(description="Training and validation utterances with ratings.")
    test_ccc: dict[str, float] = Field(
        default_factory=dict, description="Concordance correlation per dimension, held out."
    )


class DimensionSpec(BaseModel):
    """bundle.json's `dimensions`: the names (output order) and scale of the second output."""

    model_config = ConfigDict(extra="forbid")
    names: list[str] = Field(description="Output order of the dimensions tensor.")
    scale: tuple[float, float] = Field(description="Low and high end of every dimension.")
    trained: DimensionsTraining | None = None


class TrainingRecord(BaseModel):
    """training_metrics.json: what training hands export, beside the student checkpoint.

    Export copies `calibration`, `trained_on` and `note` into bundle.json's fields of those
    names and the whole record into `training_metrics`. Every field may be absent: checkpoints
    written before calibration existed hold only fold, test_speakers, student_val and test.
    """

    model_config = ConfigDict(extra="forbid")
    fold: int | None = None
    test_speakers: list[str] | None = None
    student_val: dict[str, Any] | None = Field(
        None, description="wa, ua, confusion and labels on the validation speakers (best epoch)."
    )
    test: dict[str, Any] | None = Field(None, description="The same on the held-out speakers.")
    calibration: Calibration | None = None
    trained_on: TrainingData | None = None
    note: str | None = Field(None, description="What a user must know before trusting it.")
    dimensions: DimensionsTraining | None = Field(
        None, description="Absent: the student has no dimensional head."
    )


class BundleMetadata(BaseModel):
    """bundle.json. Unknown keys are errors, so a service never misreads a newer bundle."""

    model_config = ConfigDict(extra="forbid")

    bundle_version: int = BUNDLE_VERSION
    name: str
    version: str
    labels: list[str] = Field(description="Output order of the logits.")
    sample_rate_hz: int
    do_normalize: bool = Field(description="Zero-mean unit-variance per clip before the model.")
    normalized_in_graph: bool = Field(
        False,
        description="True: the ONNX graphs apply do_normalize themselves and every consumer "
        "feeds raw audio. Absent (bundle version 1): the caller normalises.",
    )
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    opset: int
    files: dict[str, str] = Field(description="File name -> sha256 of every other file.")
    source: dict[str, Any] = Field(default_factory=dict, description="Checkpoint, architecture.")
    training_metrics: dict[str, Any] = Field(default_factory=dict)
    parity: dict[str, Any] = Field(default_factory=dict, description="Figures measured at export.")
    calibration: Calibration | None = Field(None, description="None: raw softmax, unchecked.")
    trained_on: TrainingData | None = None
    note: str | None = Field(None, description="What a user must know before trusting it.")
    dimensions: DimensionSpec | None = Field(
        None,
        description="Version 3: the graphs' second output, `dimensions`. Absent: categories "
        "only (every bundle of version 1 or 2).",
    )

    @property
    def dimension_names(self) -> list[str]:
        """The dimensions output's names in order; [] when the bundle has none."""
        return list(self.dimensions.names) if self.dimensions is not None else []


class BundleError(ValueError):
    """A bundle is missing, incomplete or altered; the message says what and where."""


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_metadata(bundle_dir: Path) -> BundleMetadata:
    path = Path(bundle_dir) / METADATA
    if not path.is_file():
        raise BundleError(f"{bundle_dir} is not a model bundle: {METADATA} is missing")
    try:
        return BundleMetadata.model_validate(json.loads(path.read_text()))
    except (ValueError, json.JSONDecodeError) as err:
        raise BundleError(f"{path} is not a valid bundle description: {err}") from err


def checksum_problems(bundle_dir: Path, metadata: BundleMetadata) -> list[str]:
    """One line per file that is missing or whose sha256 differs from bundle.json's."""
    problems = []
    for name, expected in sorted(metadata.files.items()):
        path = Path(bundle_dir) / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif (actual := sha256_of(path)) != expected:
            problems.append(
                f"{name}: sha256 {actual[:12]}… does not match bundle.json's {expected[:12]}…"
            )
    return problems


def load_bundle(bundle_dir: Path, verify: bool = True) -> BundleMetadata:
    """bundle.json, after checking every file's sha256 (BundleError naming the bad ones)."""
    metadata = read_metadata(bundle_dir)
    if verify and (problems := checksum_problems(bundle_dir, metadata)):
        raise BundleError(f"bundle {bundle_dir} is corrupt:\n  " + "\n  ".join(problems))
    return metadata
