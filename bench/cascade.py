"""What the student saves: the multimodal cascade EmoDistill removes vs the student alone.

    python bench/cascade.py [--lengths-s 2,6,12] [--repeats 3] [--asr base,small] [--out FILE.json]

Per clip, on the same hardware and the same clips (synthetic-corpus speech from espeak-ng):
  cascade = ASR (Whisper-base or -small architecture) + BERT-base on the transcript
            + openSMILE eGeMAPS + the prosodic ResNet + a fusion head
  student = HuBERT-base through our ONNX path (batch 1, CPU provider), fp32 and int8
No weights can be downloaded here, so every network is its architecture with random
weights: compute is what is measured, not accuracy. Whisper decodes greedily, forced to
as many tokens as the clip's transcript has (counted with BERT's WordPiece, + 4 prompt
tokens), with its KV cache, as generation would. Each stage is the median of `repeats`,
the stages timed in alternation (bench/timing.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertModel,
    PreTrainedTokenizerBase,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
)

from bench.report import Results
from bench.timing import timed_together
from emodistill.audio import SAMPLE_RATE_HZ, load_audio, pad_batch
from emodistill.bundle import ATTENTION_MASK, INPUT_VALUES
from emodistill.runtime import make_session
from export import onnx_graph, quantize
from student.config import StudentConfig
from student.model import build_classifier
from training.corpus.synthetic_text import NEUTRAL, THING, TIME, WHO
from training.features import extract_lld
from training.teachers.linguistic import resolve_encoder
from training.teachers.prosodic import ProsodicResNet, batch_llds

WHISPER = {  # the published architectures
    "base": dict(
        d_model=512,
        encoder_layers=6,
        decoder_layers=6,
        encoder_attention_heads=8,
        decoder_attention_heads=8,
        encoder_ffn_dim=2048,
        decoder_ffn_dim=2048,
    ),
    "small": dict(
        d_model=768,
        encoder_layers=12,
        decoder_layers=12,
        encoder_attention_heads=12,
        decoder_attention_heads=12,
        encoder_ffn_dim=3072,
        decoder_ffn_dim=3072,
    ),
}


def speech(seconds: float, seed: int) -> tuple[np.ndarray, str]:
    """espeak-ng speech of about `seconds`, cut to exactly that; its (approximate) transcript."""
    rng = np.random.default_rng(seed)
    words: list[str] = []
    while len(words) < seconds * 2.8 + 4:  # ~2.8 words per second at espeak's default rate
        words += (
            rng.choice(NEUTRAL)
            .format(who=rng.choice(WHO), thing=rng.choice(THING), time=rng.choice(TIME))
            .split()
        )
    text = " ".join(words)
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        subprocess.run(["espeak-ng", "-w", f.name, text], check=True)
        audio = load_audio(f.name)
    n = int(seconds * SAMPLE_RATE_HZ)
    kept = max(1, round(len(words) * min(1.0, n / len(audio))))  # the words the cut keeps
    return np.pad(audio, (0, max(0, n - len(audio))))[:n], " ".join(words[:kept])


class Cascade:
    def __init__(self, asr: str, tokenizer: PreTrainedTokenizerBase):
        torch.manual_seed(0)
        config = WhisperConfig(num_mel_bins=80, vocab_size=51865, **WHISPER[asr])
        self.whisper = WhisperForConditionalGeneration(config).eval()
        self.features = WhisperFeatureExtractor()
        self.tokenizer = tokenizer
        self.bert = BertModel(BertConfig()).eval()  # bert-base-uncased's architecture
        self.prosodic = ProsodicResNet(4).eval()
        self.fusion = torch.nn.Linear(768 + 128, 4)

    @torch.inference_mode()
    def asr(self, audio: np.ndarray, n_tokens: int) -> None:
        mel = self.features(audio, sampling_rate=SAMPLE_RATE_HZ, return_tensors="pt").input_features
        encoded = self.whisper.model.encoder(mel).last_hidden_state
        token = torch.tensor([[50258]])  # <|startoftranscript|>
        past = None
        for _ in range(n_tokens):
            out = self.whisper(
                encoder_outputs=(encoded,),
                decoder_input_ids=token,
                past_key_values=past,
                use_cache=True,
            )
            past = out.past_key_values
            token = out.logits[:, -1:].argmax(-1)

    @torch.inference_mode()
    def text(self, transcript: str) -> torch.Tensor:
        enc = self.tokenizer(transcript, return_tensors="pt")
        return self.bert(**enc).pooler_output

    @torch.inference_mode()
    def prosody(self, lld: np.ndarray) -> torch.Tensor:
        return self.prosodic(*batch_llds([lld]))[1]

    @torch.inference_mode()
    def fuse(self, z_text: torch.Tensor, z_prosody: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.fusion(torch.cat([z_text, z_prosody], dim=-1)), dim=-1)


def student_sessions(workdir: Path) -> dict[str, ort.InferenceSession]:
    """The HuBERT-base student as the service runs it on a CPU: fp32, and int8 (`--int8`)."""
    torch.manual_seed(0)
    model = build_classifier(
        StudentConfig(pretrained=None, preset="base"), ["a", "b", "c", "d"]
    ).eval()
    onnx_graph.export_fp32(model, workdir / "student.onnx", SAMPLE_RATE_HZ, normalize=False)
    # What export tries first (export/quantize.py METHODS); cpu_peak times them all.
    quantize.quantize_int8(
        workdir / "student.onnx", workdir / "student.int8.onnx", quantize.METHODS[0], SAMPLE_RATE_HZ
    )
    return {
        name: make_session(workdir / file)  # as served
        for name, file in (("student", "student.onnx"), ("student_int8", "student.int8.onnx"))
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--lengths-s", default="2,6,12")
    p.add_argument("--asr", default="base,small", help="Whisper architectures to try")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    tokenizer = AutoTokenizer.from_pretrained(
        resolve_encoder("all-MiniLM-L6-v2")
    )  # bert-base-uncased vocab
    cascades = {name: Cascade(name, tokenizer) for name in args.asr.split(",")}
    results: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPU",
        "repeats": args.repeats,
        "clips": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        students = student_sessions(Path(tmp))
        for i, seconds in enumerate(float(s) for s in args.lengths_s.split(",")):
            audio, transcript = speech(seconds, seed=i)
            n_tokens = len(tokenizer.tokenize(transcript)) + 4
            values, mask = pad_batch([audio])
            feed = {INPUT_VALUES: values, ATTENTION_MASK: mask}
            shared = next(iter(cascades.values()))
            lld = extract_lld(audio)
            z_text, z_prosody = shared.text(transcript), shared.prosody(lld)
            stages: dict[str, Callable[[], object]] = {
                **{name: partial(s.run, None, feed) for name, s in students.items()},
                "egemaps": partial(extract_lld, audio),
                "bert_base": partial(shared.text, transcript),
                "prosodic_resnet": partial(shared.prosody, lld),
                "fusion": partial(shared.fuse, z_text, z_prosody),
                **{f"whisper_{n}": partial(c.asr, audio, n_tokens) for n, c in cascades.items()},
            }
            walls = timed_together(stages, args.repeats)
            row: dict = {"transcript_tokens": n_tokens}
            row.update({f"{name}_ms": 1000 * wall for name, wall in walls.items()})
            rest = sum(
                row[f"{k}_ms"] for k in ("egemaps", "bert_base", "prosodic_resnet", "fusion")
            )
            for name in cascades:
                row[f"cascade_{name}_ms"] = row[f"whisper_{name}_ms"] + rest
                row[f"ratio_{name}"] = row[f"cascade_{name}_ms"] / row["student_ms"]
                row[f"ratio_{name}_int8"] = row[f"cascade_{name}_ms"] / row["student_int8_ms"]
            results["clips"][f"{seconds:g}s"] = row
            print(
                f"{seconds:g} s: " + ", ".join(f"{k} {v:.1f}" for k, v in row.items()), flush=True
            )
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


def _asr_sizes(clips: dict[str, dict[str, Any]]) -> list[str]:
    """The Whisper sizes a run timed ("base", "small"), from its `whisper_<size>_ms` keys."""
    return sorted(
        {k[len("whisper_") : -3] for row in clips.values() for k in row if k.startswith("whisper_")}
    )


def report_section(results: Results, model: str) -> list[str]:
    """Section 1 of docs/benchmarks.md: each stage's ms per clip and the cascade / student
    ratios."""
    if "cascade" not in results:
        return ["Pending.", ""]
    shown_cmd, cascade = results["cascade"]
    lines = [
        f"`{shown_cmd}` ({cascade['machine']}, median of {cascade['repeats']}). Random "
        "weights in the published architectures (nothing can be downloaded here): compute, "
        "not accuracy. Whisper decodes greedily, forced to the transcript's token count.",
        "",
    ]
    asr = _asr_sizes(cascade["clips"])
    head = [
        "clip",
        "student fp32",
        "student int8",
        "eGeMAPS",
        "BERT-base",
        "prosodic ResNet",
        "fusion",
        *(f"Whisper-{a}" for a in asr),
        *(f"cascade ({a}) / student fp32, int8" for a in asr),
    ]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for clip, row in cascade["clips"].items():
        stages = ["student", "student_int8", "egemaps", "bert_base", "prosodic_resnet", "fusion"]
        cells = [row[f"{k}_ms"] for k in stages] + [row[f"whisper_{a}_ms"] for a in asr]
        ratios = [f"**{row[f'ratio_{a}']:.1f}×**, {row[f'ratio_{a}_int8']:.1f}×" for a in asr]
        lines.append("| " + " | ".join([clip, *(f"{v:.1f}" for v in cells), *ratios]) + " |")
    return [*lines, ""]


def goals(results: Results) -> list[tuple[str, str]]:
    """The student, fp32 and int8, against the goal of 5× cheaper than the cascade."""
    if "cascade" not in results:
        return []
    clips = results["cascade"][1]["clips"]
    rows = []
    for variant, suffix in (("fp32", ""), ("int8", "_int8")):
        standing = "; ".join(
            f"Whisper-{a}: "
            + ", ".join(f"{r[f'ratio_{a}{suffix}']:.1f}× ({c})" for c, r in clips.items())
            for a in _asr_sizes(clips)
        )
        rows.append((f"Student ({variant}) ≥ 5× cheaper than the cascade per utterance", standing))
    return rows


if __name__ == "__main__":
    main()
