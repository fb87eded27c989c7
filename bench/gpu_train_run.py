"""A short EmoDistill training run of the student: the real trainer, data loader included.

    python -m bench.gpu_train_run [--preset base] [--device cuda] [--steps 8]
                                  [--per-device-batch 8] [--global-batch 32] [--crop-s 8]
                                  [--workers 4] [--out FILE.json]

`training.trainer.StudentTrainer` as `python -m training run` drives it (decoding WAV files
through FFmpeg in DataLoader workers, bucketed batches, bf16 autocast on CUDA, gradient
accumulation, clipping, AdamW, the schedule), stopped after `steps` optimizer steps. One GPU's
share of the paper's run by default: 8 clips per micro-batch × 4 accumulation = 32 per step
(global 128 over 4 GPUs), crops of 8 s.

The audio is written here, not spoken: the synthetic corpus needs espeak-ng, which the GPU
host lacks, and carrying its WAVs would take megabytes of the 64 MiB each command may carry.
Throughput and memory depend on the clips' lengths and the batch shapes, not on the words, so
speech-like signals (export.parity.probe_clips) of 2-12 s stand in; the teachers' outputs are
random tensors of their shapes (their values cost nothing). Reports audio-seconds per second
over the whole run (first steps and data loading included) and peak GPU memory.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import soundfile as sf
import torch

from emodistill.audio import SAMPLE_RATE_HZ
from export.parity import probe_clips
from student.config import StudentConfig
from training.config import CorpusConfig, OptimConfig, RunConfig
from training.data import Clip
from training.distributed import DistContext
from training.trainer import StudentTrainer, TeacherTargets

LABELS = ["neutral", "angry", "sad", "happy"]
TEACHER_DIMS = {"linguistic": 768, "prosodic": 128}  # BERT-base, ProsodicResNet's default


def write_clips(folder: Path, n: int, min_s: float, max_s: float) -> list[Clip]:
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    for i, samples in enumerate(probe_clips(n, min_s, max_s, SAMPLE_RATE_HZ, seed=5)):
        path = folder / f"u{i:04d}.wav"
        sf.write(path, samples, SAMPLE_RATE_HZ, subtype="PCM_16")
        clips.append(Clip(f"u{i:04d}", str(path), i % len(LABELS), len(samples) / SAMPLE_RATE_HZ))
    return clips


def train_run(
    preset: str,
    device: str,
    steps: int,
    per_device_batch: int,
    global_batch: int,
    crop_s: float,
    workers: int,
    workdir: Path,
) -> dict[str, Any]:
    clips = write_clips(workdir / "clips", steps * global_batch, 2.0, 12.0)
    torch.manual_seed(0)
    targets = TeacherTargets(
        logits={t: torch.randn(len(clips), len(LABELS)) for t in TEACHER_DIMS},
        embeddings={t: torch.randn(len(clips), d) for t, d in TEACHER_DIMS.items()},
    )
    run = RunConfig(
        name="gpu-check",
        out_dir=workdir / "runs",
        corpus=CorpusConfig(kind="prepared", prepared_dir=workdir),
        student=StudentConfig(pretrained=None, preset=preset),
        optim=OptimConfig(
            per_device_batch_size=per_device_batch,
            global_batch_size=global_batch,
            epochs=1,
            max_train_audio_s=crop_s,
            checkpoint_every_steps=10**9,  # one state file, at the stop
            bf16=True,
            num_workers=workers,
        ),
    )
    cuda = device.startswith("cuda")
    trainer = StudentTrainer(
        run,
        LABELS,
        clips,
        clips[:per_device_batch],
        targets,
        workdir / "out",
        DistContext(device=torch.device(device)),
        progress=False,
    )
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = trainer.train(stop_after_steps=steps)
    wall = time.perf_counter() - start
    return {
        "preset": preset,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "dtype": "bf16" if cuda else "fp32",  # the trainer's autocast is CUDA-only
        "steps": result.steps,
        "per_device_batch": per_device_batch,
        "global_batch": global_batch,
        "crop_s": crop_s,
        "data_workers": workers,
        "wall_s": wall,
        "audio_s_per_s": result.audio_s_per_s,
        "peak_memory_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else 0.0,
        "last_loss": trainer.history[-1]["total"],
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--preset", default="base", choices=["tiny", "base", "large"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=int, default=8, help="optimizer steps")
    p.add_argument("--per-device-batch", type=int, default=8)
    p.add_argument("--global-batch", type=int, default=32)
    p.add_argument("--crop-s", type=float, default=8.0)
    p.add_argument("--workers", type=int, default=4, help="DataLoader workers")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        row = train_run(
            args.preset,
            args.device,
            args.steps,
            args.per_device_batch,
            args.global_batch,
            args.crop_s,
            args.workers,
            Path(tmp),
        )
    print(json.dumps(row, indent=2), flush=True)
    if args.out:
        args.out.write_text(json.dumps(row, indent=2) + "\n")


if __name__ == "__main__":
    main()
