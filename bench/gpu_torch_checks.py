"""The student in PyTorch on one device: batched == alone, bf16 against fp32, one training step.

    python -m bench.gpu_torch_checks [--preset base] [--device cuda] [--clips 12] [--out FILE]

Runs with whatever transformers the environment has and says which: the GPU checklist runs it
once on our pin (4.57) and once on the GPU host's own transformers 5.x, so the JSON answers
whether the student's forward and training step work there. Random init, the classifier
scaled so logits spread as in a trained model (argmax ties would make agreement meaningless).
Figures: max |Δprobability| of each clip batched (padded, speech-like clips 0.5-12 s) against
alone, in fp32 and under bf16 autocast; bf16 against fp32 (argmax agreement, max
|Δprobability|); one EmoDistill step (bench/train_probe.py) with a finite loss.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers

from bench.train_probe import probe
from emodistill.audio import SAMPLE_RATE_HZ, pad_batch
from export.parity import probe_clips
from student.batch_invariant import classify
from student.config import StudentConfig
from student.model import build_classifier, build_feature_extractor

LABELS = ["neutral", "angry", "sad", "happy"]
# A trained classifier's logits spread over several units; random init's sit near zero.
LOGIT_SPREAD = 20.0


def _probabilities(
    model: torch.nn.Module, clips: list[np.ndarray], device: str, bf16: bool, normalize: bool
) -> np.ndarray:
    """[N, C] probabilities of `clips` in one padded batch."""
    values, mask = pad_batch(clips)
    x, am = torch.from_numpy(values).to(device), torch.from_numpy(mask).to(device)
    with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
        logits = classify(model, x, am, normalize)[0]  # type: ignore[arg-type]
    return torch.softmax(logits.float(), dim=-1).cpu().numpy()


def checks(preset: str, device: str, n_clips: int, train_step: bool = True) -> dict[str, Any]:
    torch.manual_seed(0)
    config = StudentConfig(pretrained=None, preset=preset)
    model = build_classifier(config, LABELS).eval().to(device)
    with torch.no_grad():
        model.classifier.weight.mul_(LOGIT_SPREAD)
    normalize = bool(build_feature_extractor(config).do_normalize)
    clips = probe_clips(n_clips, 0.5, 12.0, SAMPLE_RATE_HZ, seed=4)
    out: dict[str, Any] = {
        "preset": preset,
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else device,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "clips": n_clips,
        "lengths_s": [0.5, 12.0],
    }
    by_dtype = {}
    for name, bf16 in (("fp32", False), ("bf16", True)):
        batched = _probabilities(model, clips, device, bf16, normalize)
        alone = np.concatenate([_probabilities(model, [c], device, bf16, normalize) for c in clips])
        out[f"{name}_batched_vs_alone_max_abs_probability"] = float(np.abs(batched - alone).max())
        by_dtype[name] = alone
    out["bf16_vs_fp32_argmax_agreement"] = float(
        np.mean(by_dtype["bf16"].argmax(1) == by_dtype["fp32"].argmax(1))
    )
    out["bf16_vs_fp32_max_abs_probability"] = float(
        np.abs(by_dtype["bf16"] - by_dtype["fp32"]).max()
    )
    if train_step:
        step = probe(preset, batch=4, crop_s=2.0, steps=1, device=device, bf16=device != "cpu")
        out["training_step"] = {k: step[k] for k in ("dtype", "batch", "crop_s", "loss")}
        out["training_step_ok"] = bool(np.isfinite(float(step["loss"])))
    return out


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--preset", default="base", choices=["tiny", "base", "large"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--clips", type=int, default=12)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    result = checks(args.preset, args.device, args.clips)
    print(json.dumps(result, indent=2), flush=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
