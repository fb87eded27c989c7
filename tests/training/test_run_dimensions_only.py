"""End to end on a corpus rated in dimensions only: no categories anywhere.

A manifest CSV with `arousal,valence,dominance` and no `label` column trains both teachers'
and the student's dimensional heads (no classifier to learn), and exports a bundle whose
graph has the one output `dimensions` [batch, 3].
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import soundfile as sf
import yaml

from emodistill.bundle import DIMENSION_NAMES, DIMENSIONS, read_metadata
from tests.conftest import tone, write_tiny_bert
from training.cli import main

SPEAKERS = ("s1", "s2", "s3", "s4")
WORDS = ("calm", "quiet", "loud", "angry", "very", "day")
CLIPS_PER_SPEAKER = 6


def write_rated_corpus(folder: Path) -> Path:
    """Tones whose pitch and loudness follow arousal, with a text that names it; a CSV with
    no label column. Returns the CSV."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["path,speaker,text,arousal,valence,dominance"]
    for s, speaker in enumerate(SPEAKERS):
        for i in range(CLIPS_PER_SPEAKER):
            arousal = (i + 0.5) / CLIPS_PER_SPEAKER
            audio = (0.2 + 0.6 * arousal) * tone(0.4 + 0.05 * s, freq_hz=200 + 400 * arousal)
            path = folder / f"{speaker}_{i}.wav"
            sf.write(path, audio.astype(np.float32), 16_000)
            text = "very loud angry day" if arousal > 0.5 else "calm quiet day"
            lines.append(f"{path.name},{speaker},{text},{arousal:.3f},{1 - arousal:.3f},{0.3 + 0.4 * arousal:.3f}")
    csv = folder / "rated.csv"
    csv.write_text("\n".join(lines) + "\n")
    return csv


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dimensions_only")
    csv = write_rated_corpus(root / "audio")
    config = {
        "name": "rated",
        "out_dir": str(root / "runs"),
        "feature_cache": str(root / "cache"),
        "folds": [0],
        "corpus": {"kind": "manifest", "csv": str(csv), "prepared_dir": str(root / "corpus")},
        "linguistic": {"encoder": str(write_tiny_bert(root / "bert", WORDS)), "epochs": 2},
        "prosodic": {"channels": [4, 8, 8, 8], "epochs": 2, "batch_size": 8},
        "student": {
            "pretrained": None,
            "preset": "tiny",
            "freeze_feature_encoder": False,
            "classifier_proj_size": 16,
        },
        "optim": {
            "global_batch_size": 8,
            "per_device_batch_size": 8,
            "epochs": 2,
            "max_train_audio_s": 1.0,
            "num_workers": 0,
            "lr": 1e-3,
        },
    }
    path = root / "rated.yaml"
    path.write_text(yaml.safe_dump(config))
    main(["run", "--config", str(path), "--quiet"])
    return root / "runs" / "rated"
