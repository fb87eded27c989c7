"""A tiny, fast student set-up shared by the trainer tests and the DDP worker script."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from training.config import RunConfig
from training.data import Clip
from training.trainer import TeacherTargets

LABELS = ["low", "high"]

# A run config's `student` for end-to-end runs: a tiny preset, random init, no hub.
TINY_STUDENT = {
    "pretrained": None,
    "preset": "tiny",
    "freeze_feature_encoder": False,
    "classifier_proj_size": 16,
}


def tiny_optim(global_batch: int, epochs: int, max_train_audio_s: float) -> dict[str, object]:
    """A run config's `optim` for end-to-end runs: one process, no workers, lr 1e-3."""
    return {
        "global_batch_size": global_batch,
        "per_device_batch_size": global_batch,
        "epochs": epochs,
        "max_train_audio_s": max_train_audio_s,
        "num_workers": 0,
        "lr": 1e-3,
    }


def write_clips(folder: Path, n: int = 16, write: bool = True) -> list[Clip]:
    """n tone clips, 0.4-1.0 s, label = pitch (low/high), deterministic; write=False lists."""
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    rng = np.random.default_rng(0)
    for i in range(n):
        seconds = 0.4 + 0.6 * ((i * 5) % n) / n
        label = i % 2
        t = np.arange(int(seconds * 16_000)) / 16_000
        x = 0.4 * np.sin(2 * np.pi * (180 if label == 0 else 420) * t)
        x = (x + 0.02 * rng.standard_normal(t.shape)).astype(np.float32)
        path = folder / f"c{i:02d}.wav"
        if write:
            sf.write(str(path), x, 16_000, subtype="FLOAT")
        clips.append(Clip(f"c{i:02d}", str(path), label, seconds))
    return clips


def targets(n: int) -> TeacherTargets:
    g = torch.Generator().manual_seed(1)
    return TeacherTargets(
        logits={
            "linguistic": torch.randn(n, 2, generator=g),
            "prosodic": torch.randn(n, 2, generator=g),
        },
        embeddings={
            "linguistic": torch.randn(n, 12, generator=g),
            "prosodic": torch.randn(n, 6, generator=g),
        },
    )


def run_config(per_device: int, epochs: int = 2, encoder: str = "hubert", **optim) -> RunConfig:
    """Global batch 8; dropout, SpecAugment and LayerDrop on, so RNG handling is exercised."""
    return RunConfig.model_validate(
        {
            "name": "t",
            "corpus": {"kind": "prepared", "prepared_dir": "unused"},
            "student": {
                "pretrained": None,
                "preset": "tiny",
                "encoder": encoder,
                "freeze_feature_encoder": False,
                "classifier_proj_size": 16,
                "mask_time_prob": 0.2,
                "hidden_dropout": 0.1,
                "layerdrop": 0.1,
            },
            "optim": {
                "global_batch_size": 8,
                "per_device_batch_size": per_device,
                "epochs": epochs,
                "max_train_audio_s": 0.8,
                "num_workers": 0,
                "lr": 1e-3,
                "warmup_fraction": 0.25,
                "checkpoint_every_steps": 1,
                "patience_epochs": 10,
                **optim,
            },
        }
    )
