"""Batches of audio for the student: a dataset, a length-bucketed sampler and a collator.

The sampler makes every global batch (per-device batch × accumulation × world size) from
clips of similar length and hands each rank its micro-batches, so one process with
accumulation sees exactly the clips that several processes see together. Crops are drawn
from (seed, epoch, clip), never from a process's RNG, so resumed and distributed runs
crop alike. Knows nothing of models or losses.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from emodistill.audio import load_audio, pad_batch

# A clip's label when it has dimensional ratings only: cross-entropy ignores it.
NO_LABEL = -100


@dataclass(frozen=True)
class Clip:
    utt_id: str
    path: str
    label: int  # index into the labels, or NO_LABEL
    duration_s: float
    dimensions: tuple[float, float, float] | None = None  # DIMENSION_NAMES' order; None: unrated


def ratings_of(clips: Sequence[Clip]) -> np.ndarray:
    """[N, 3] float64 (the ratings as given, for CCC) in DIMENSION_NAMES' order; NaN rows for
    unrated clips."""
    unrated = (np.nan, np.nan, np.nan)
    rows = [c.dimensions if c.dimensions is not None else unrated for c in clips]
    return np.array(rows, np.float64).reshape(-1, 3)


class ClipDataset(Dataset):
    """Decoded audio [samples], randomly cropped to `max_samples` when training."""

    def __init__(self, clips: Sequence[Clip], max_samples: int | None = None, seed: int = 0):
        self.clips = list(clips)
        self.max_samples = max_samples
        self.seed = seed
        self.epoch = 0  # set before each epoch; workers are re-created per epoch

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> tuple[int, np.ndarray]:
        samples = load_audio(self.clips[index].path)
        if self.max_samples is not None and len(samples) > self.max_samples:
            rng = random.Random(f"{self.seed}/{self.epoch}/{index}")
            start = rng.randrange(len(samples) - self.max_samples + 1)
            samples = samples[start : start + self.max_samples]
        return index, samples


class BucketedBatchSampler(Sampler[list[int]]):
    """Per-rank micro-batches of clip indices; see the module docstring.

    Each epoch: a seeded permutation, cut into windows of `bucket_batches` global batches,
    each window sorted by length and cut into global batches, whose order is shuffled.
    Global batch g is split into world × accumulation micro-batches; rank r takes micro-
    batches r·accum … r·accum + accum - 1. An incomplete last global batch is dropped.
    """

    def __init__(
        self,
        lengths: Sequence[float],
        per_device_batch: int,
        accumulation: int,
        world_size: int = 1,
        rank: int = 0,
        bucket_batches: int = 8,
        seed: int = 0,
    ):
        self.lengths = list(lengths)
        self.per_device = per_device_batch
        self.accumulation = accumulation
        self.world_size = world_size
        self.rank = rank
        self.global_batch = per_device_batch * accumulation * world_size
        self.bucket_batches = bucket_batches
        self.seed = seed
        self.epoch = 0
        self.skip_steps = 0  # global batches already done this epoch (resume)
        if len(self.lengths) < self.global_batch:
            raise ValueError(
                f"{len(self.lengths)} training clips cannot fill one global batch of "
                f"{self.global_batch}; lower optim.global_batch_size"
            )

    @property
    def steps_per_epoch(self) -> int:
        return len(self.lengths) // self.global_batch

    def global_batches(self, epoch: int) -> list[list[int]]:
        rng = random.Random(f"{self.seed}/{epoch}")
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        usable = self.steps_per_epoch * self.global_batch
        window = self.global_batch * self.bucket_batches
        batches = []
        for start in range(0, usable, window):
            chunk = sorted(order[start : min(start + window, usable)], key=self.lengths.__getitem__)
            batches += [
                chunk[i : i + self.global_batch] for i in range(0, len(chunk), self.global_batch)
            ]
        rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.global_batches(self.epoch)[self.skip_steps :]:
            for a in range(self.accumulation):
                m = self.rank * self.accumulation + a
                yield batch[m * self.per_device : (m + 1) * self.per_device]

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.skip_steps) * self.accumulation


def eval_batches(lengths: Sequence[float], max_batch_audio_s: float) -> list[list[int]]:
    """Indices grouped by length so each batch pads to at most `max_batch_audio_s` in total."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current and lengths[i] * (len(current) + 1) > max_batch_audio_s:
            batches.append(current)
            current = []
        current.append(i)
    return [*batches, current] if current else batches


@dataclass
class Batch:
    indices: torch.Tensor  # [B] positions in the dataset
    input_values: torch.Tensor  # [B, S] float32
    attention_mask: torch.Tensor  # [B, S] int64, 1 = sample
    labels: torch.Tensor  # [B] int64, NO_LABEL where the clip has none
    ratings: torch.Tensor  # [B, 3] float32, NaN rows where the clip is not rated


class Collator:
    """Pads raw audio as every bundle's consumer does (`emodistill.audio.pad_batch`); the
    student normalises inside its forward, so there is no preprocessing here."""

    def __init__(
        self,
        labels: Sequence[int],
        ratings: Sequence[tuple[float, float, float] | None] | None = None,
    ):
        self.labels = list(labels)
        unrated = (np.nan, np.nan, np.nan)
        rows = ratings if ratings is not None else [None] * len(self.labels)
        self.ratings = np.array([r if r is not None else unrated for r in rows], np.float32)

    def __call__(self, items: list[tuple[int, np.ndarray]]) -> Batch:
        indices = [i for i, _ in items]
        values, mask = pad_batch([samples for _, samples in items])
        return Batch(
            indices=torch.tensor(indices),
            input_values=torch.from_numpy(values),
            attention_mask=torch.from_numpy(mask),
            labels=torch.tensor([self.labels[i] for i in indices]),
            ratings=torch.from_numpy(self.ratings[indices].reshape(len(indices), 3)),
        )

    @classmethod
    def of(cls, clips: Sequence[Clip]) -> Collator:
        """The collator of `clips`' labels and ratings."""
        return cls([c.label for c in clips], [c.dimensions for c in clips])
