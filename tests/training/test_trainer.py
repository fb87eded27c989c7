"""The student loop: resume == uninterrupted, 2 gloo processes == 1 process, logging."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch

from emodistill.audio import load_audio
from student.encoders import FAMILIES
from tests.training.trainer_fixtures import LABELS, run_config, targets, write_clips
from training.distill_loss import LossTerms
from training.trainer import StudentTrainer

WORKER = Path(__file__).with_name("ddp_worker.py")
ROOT = Path(__file__).resolve().parents[2]


def train(
    clips, out: Path, resume=False, stop_after=None, per_device=4, encoder="hubert"
) -> StudentTrainer:
    config = run_config(per_device, encoder=encoder)
    trainer = StudentTrainer(
        config, LABELS, clips, clips[:4], targets(len(clips)), out, progress=False
    )
    trainer.train(resume=resume, stop_after_steps=stop_after)
    return trainer


def max_abs_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


@pytest.mark.parametrize("encoder", list(FAMILIES))
def test_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path: Path, encoder: str):
    clips = write_clips(tmp_path / "clips")
    whole = train(clips, tmp_path / "whole", encoder=encoder)
    assert whole.state.step == 4  # 2 epochs × 2 global batches of 8

    killed = train(clips, tmp_path / "resumed", stop_after=3, encoder=encoder)  # dies mid-epoch 2
    assert killed.state.step == 3 and killed.state.epoch == 1
    resumed = train(clips, tmp_path / "resumed", resume=True, encoder=encoder)

    # Tolerance 1e-6: the same operations on the same data with the same RNG draws.
    assert max_abs_diff(whole.model.state_dict(), resumed.model.state_dict()) <= 1e-6
    assert resumed.state.step == 4
    assert resumed.history[-1]["total"] == pytest.approx(whole.history[-1]["total"], abs=1e-6)


def test_every_loss_term_is_logged(tmp_path: Path):
    clips = write_clips(tmp_path / "clips")
    trainer = train(clips, tmp_path / "run")
    step = trainer.history[0]
    assert set(step) >= {f.name for f in fields(LossTerms)}
    weighted = step["ce"] + step["kl_linguistic"] + step["kl_prosodic"] + step["cos_linguistic"]
    assert step["total"] == pytest.approx(weighted + step["cos_prosodic"], rel=1e-5)
    log = [
        json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()
    ]
    assert [r["epoch"] for r in log] == [1, 2]
    assert any((tmp_path / "run" / "tensorboard").iterdir())
    assert (tmp_path / "run" / "checkpoint" / "config.json").is_file()


def test_resume_refuses_another_config(tmp_path: Path):
    clips = write_clips(tmp_path / "clips")
    train(clips, tmp_path / "run", stop_after=1)
    other = StudentTrainer(
        run_config(4, lr=5e-4),
        LABELS,
        clips,
        clips[:4],
        targets(len(clips)),
        tmp_path / "run",
        progress=False,
    )
    with pytest.raises(ValueError, match="another student/loss/optim config"):
        other.train(resume=True)


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path: Path):
    write_clips(tmp_path / "clips")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    one = [sys.executable, str(WORKER), str(tmp_path / "clips"), str(tmp_path / "one"), "4"]
    two = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        str(WORKER),
        str(tmp_path / "clips"),
        str(tmp_path / "two"),
        "4",
    ]
    for command in (one, two):  # 1 × (4 per device × 2 accumulation) vs 2 × (4 × 1)
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stderr[-3000:]

    load = lambda path: torch.load(path, weights_only=True)  # noqa: E731
    rank0, rank1 = (
        load(tmp_path / "two" / "weights_rank0.pt"),
        load(tmp_path / "two" / "weights_rank1.pt"),
    )
    single = load(tmp_path / "one" / "weights_rank0.pt")
    assert max_abs_diff(rank0, rank1) == 0.0  # DDP keeps replicas identical
    # Tolerance 1e-5: gradients are summed in another order across processes.
    assert max_abs_diff(rank0, single) <= 1e-5
    losses = [json.loads((tmp_path / d / "history.json").read_text()) for d in ("one", "two")]
    assert len(losses[0]) == len(losses[1]) == 4
    for a, b in zip(*losses, strict=True):
        assert a["total"] == pytest.approx(b["total"], abs=1e-5)


def test_evaluation_returns_each_clips_logits_as_if_alone(tmp_path: Path):
    """evaluate_student hands on logits (calibration and the runtime start from them), in the
    clips' order, equal to the model's on each clip alone, with scores from their argmax."""
    clips = write_clips(tmp_path / "clips")
    trainer = StudentTrainer(
        run_config(4),
        LABELS,
        clips,
        clips[:4],
        targets(len(clips)),
        tmp_path / "run",
        progress=False,
    )
    scores, logits = trainer.evaluate(clips)
    model = trainer.model.eval()
    with torch.no_grad():
        for i, clip in enumerate(clips):
            audio = torch.from_numpy(load_audio(clip.path))[None]
            alone = model(audio, torch.ones_like(audio, dtype=torch.long)).logits[0]
            # Tolerance 1e-5: the same clip, padded within a batch or alone.
            assert np.abs(logits[i] - alone.numpy()).max() <= 1e-5
    predicted = logits.argmax(axis=1)
    correct = sum(int(p == c.label) for p, c in zip(predicted, clips, strict=True))
    assert scores.wa == pytest.approx(correct / len(clips))
