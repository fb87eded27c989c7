"""Training throughput and peak memory of one EmoDistill student step (the GPU checklist).

    python bench/train_probe.py [--preset base] [--batch 32] [--crop-s 8] [--steps 20]
                                [--device cuda] [--bf16] [--out FILE.json]

The step is the real one, minus the data pipeline: the student (random init of the preset)
with its two projection heads, the EmoDistill loss (training/distill_loss.py, defaults of
training/config.py) against cached teacher outputs, AdamW, bf16 autocast where asked. The
teacher outputs are random tensors of the teachers' shapes (BERT-base's 768-wide embedding,
the prosodic ResNet's 128): what they hold costs nothing, their shape is what the step sees.
Audio is random noise in crops of `crop-s` (the training crop, `max_train_audio_s`).

Reports audio-seconds per second of training (median over the steps after two warm-ups) and
peak GPU memory (torch.cuda.max_memory_allocated), and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from bench.report import Results, pending
from emodistill.audio import SAMPLE_RATE_HZ
from student.config import StudentConfig
from student.model import EmoDistillStudent, build_classifier, build_feature_extractor
from training.config import LossConfig
from training.distill_loss import EmoDistillLoss

LABELS = ["neutral", "angry", "sad", "happy"]
TEACHER_DIMS = {"linguistic": 768, "prosodic": 128}  # BERT-base, ProsodicResNet's default
WARM_UP_STEPS = 2


def probe(
    preset: str, batch: int, crop_s: float, steps: int, device: str, bf16: bool
) -> dict[str, float | int | str]:
    torch.manual_seed(0)
    config = StudentConfig(pretrained=None, preset=preset)
    classifier = build_classifier(config, LABELS)
    extractor = build_feature_extractor(config)
    model = EmoDistillStudent(classifier, extractor, TEACHER_DIMS).to(device).train()
    loss_fn = EmoDistillLoss(LossConfig())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    samples = int(crop_s * SAMPLE_RATE_HZ)
    values = 0.1 * torch.randn(batch, samples, device=device)
    mask = torch.ones(batch, samples, dtype=torch.long, device=device)
    labels = torch.randint(0, len(LABELS), (batch,), device=device)
    teacher_logits = {t: torch.randn(batch, len(LABELS), device=device) for t in TEACHER_DIMS}
    teacher_emb = {t: torch.randn(batch, d, device=device) for t, d in TEACHER_DIMS.items()}
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    walls = []
    for step in range(WARM_UP_STEPS + steps):
        start = time.perf_counter()
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
            out = model(values, mask)
            terms = loss_fn(out.logits.float(), labels, teacher_logits, out.projected, teacher_emb)
        optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        optimizer.step()
        if cuda:
            torch.cuda.synchronize()
        if step >= WARM_UP_STEPS:
            walls.append(time.perf_counter() - start)
    wall = statistics.median(walls)
    return {
        "preset": preset,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "dtype": "bf16" if bf16 else "fp32",
        "batch": batch,
        "crop_s": crop_s,
        "steps": steps,
        "ms_per_step": 1000 * wall,
        "audio_s_per_s": batch * crop_s / wall,
        "peak_memory_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else 0.0,
        "loss": float(terms.total.detach()),
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--preset", default="base", choices=["tiny", "base", "large"])
    p.add_argument("--batch", type=int, default=32, help="per-device batch (paper: 128 / 4)")
    p.add_argument("--crop-s", type=float, default=8.0, help="training crop (max_train_audio_s)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast, as training runs on GPU")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    row = probe(args.preset, args.batch, args.crop_s, args.steps, args.device, args.bf16)
    print(
        f"{row['preset']} {row['dtype']} batch {row['batch']} × {row['crop_s']:.0f} s on "
        f"{row['device']}: {row['ms_per_step']:.0f} ms/step, {row['audio_s_per_s']:.0f} "
        f"audio-s/s, peak {row['peak_memory_mb']:.0f} MB",
        flush=True,
    )
    if args.out:
        args.out.write_text(json.dumps(row, indent=2) + "\n")


def report_section(results: Results, model: str) -> list[str]:
    """Section 4 of docs/benchmarks.md: one training step per student on a GPU."""
    lines = [
        "One EmoDistill step (student, both projection heads, the loss against cached teacher "
        "outputs, AdamW) in bf16 at the paper's per-GPU batch, 128 / 4 = 32 crops of 8 s "
        "(`bench/train_probe.py`).",
        "",
    ]
    rows = [results[name] for name in ("train_gpu", "train_large_gpu") if name in results]
    if not rows:
        return [*lines, *pending("train_gpu", model)]
    lines += [
        "| student | device | batch × crop | ms / step | audio-s / s | peak memory |",
        "|---|---|---|---|---|---|",
    ]
    for _, r in rows:
        lines.append(
            f"| {r['preset']} | {r['device']} | {r['batch']} × {r['crop_s']:.0f} s | "
            f"{r['ms_per_step']:.0f} | {r['audio_s_per_s']:.0f} | {r['peak_memory_mb']:.0f} MB |"
        )
    return [*lines, "", *(f"`{cmd}`" for cmd, _ in rows), ""]


if __name__ == "__main__":
    main()
