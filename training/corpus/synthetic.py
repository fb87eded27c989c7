"""The synthetic demo corpus: espeak-ng speech whose emotion lives in two channels.

Like real speech, the label is carried by the words (emotion-laden vs flat sentences) and by
the prosody (pitch level and range, rate, loudness). Each emotional utterance carries its
label in one of three ways, in equal shares:
  both     emotional words, emotional prosody
  words    emotional words, neutral prosody
  prosody  neutral words,   emotional prosody
Neutral utterances have neutral words and neutral prosody. So a text-only or a prosody-only
model tops out near 75 % accuracy: only a model that uses both channels can do better.
Speakers are distinct espeak voices with their own pitch and rate, two per session
(one female, one male variant), so speaker-independent folds mean something.

Dimension targets (arousal, valence, dominance in [0, 1]) are not ratings of anyone: each
emotion has a plausible place (`EMOTION_DIMENSIONS`), and an utterance's arousal is that of
the emotion its VOICE acts, its valence that of its WORDS, its dominance their mean. So, as in
real speech, text tells valence and acoustics tell arousal, and the dimensional distillation
has a teacher that knows each best.
"""

from __future__ import annotations

import csv
import json
import random
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from tqdm import tqdm

from emodistill.audio import SAMPLE_RATE_HZ, load_audio, write_wav

from .iemocap import FOUR_CLASS_LABELS
from .manifest import RatingOrigin, Utterance, write_manifest
from .synthetic_text import EMOTIONAL, NEUTRAL, THING, TIME, WHO

MODES = ("both", "words", "prosody")
META_FILE = "synthetic_meta.csv"
CONFIG_FILE = "corpus.json"


@dataclass(frozen=True)
class Prosody:
    """Changes relative to the speaker's own voice, in percent (espeak-ng SSML <prosody>)."""

    pitch_pct: float
    range_pct: float
    rate_pct: float
    volume_pct: float

    def ssml(self, text: str) -> str:
        attrs = " ".join(
            f'{name}="{value:+.0f}%"'
            for name, value in (
                ("pitch", self.pitch_pct),
                ("range", self.range_pct),
                ("rate", self.rate_pct),
                ("volume", self.volume_pct),
            )
        )
        escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return f"<speak><prosody {attrs}>{escaped}</prosody></speak>"


# Chosen from measurements of espeak-ng 1.51 with openSMILE: each setting moves mean F0
# (pitch), F0 spread (range), duration (rate) and loudness (volume) as its name says.
EMOTION_PROSODY = {
    "neutral": Prosody(0, 0, 0, 0),
    "angry": Prosody(pitch_pct=25, range_pct=80, rate_pct=20, volume_pct=60),
    "happy": Prosody(pitch_pct=40, range_pct=120, rate_pct=10, volume_pct=25),
    "sad": Prosody(pitch_pct=-30, range_pct=-60, rate_pct=-30, volume_pct=-45),
}


# Plausible (arousal, valence, dominance) of each acted emotion on [0, 1], after where the
# circumplex model of affect places the categories: a demo's targets, not measured ratings.
EMOTION_DIMENSIONS = {
    "neutral": (0.50, 0.50, 0.50),
    "angry": (0.85, 0.15, 0.80),
    "happy": (0.75, 0.85, 0.65),
    "sad": (0.20, 0.20, 0.25),
}
DIMENSION_TARGETS = RatingOrigin(
    source="synthetic targets, not ratings: arousal of the emotion the voice acts, valence of "
    "the emotion the words carry, dominance their mean (training/corpus/synthetic.py)"
)


class SyntheticConfig(BaseModel):
    """Everything that decides the corpus; saved beside it as corpus.json."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = Field(0, description="Same seed, same corpus, sample for sample.")
    sessions: int = Field(5, ge=4, description="Two speakers (F and M voice) per session.")
    utterances_per_speaker: int = Field(48, ge=4, description="Balanced over the 4 labels.")
    prosody_jitter_pct: float = Field(
        12.0, ge=0, description="Std of per-utterance noise added to each prosody setting."
    )
    snr_db_range: tuple[float, float] = Field(
        (20.0, 40.0), description="Background noise level, drawn per utterance."
    )
    workers: int = Field(4, ge=1, description="espeak-ng processes at once.")


@dataclass(frozen=True)
class Speaker:
    speaker: str  # e.g. "S01F"
    session: str  # e.g. "S01"
    voice: str  # espeak-ng voice+variant
    pitch: int  # espeak -p, 0..99
    speed_wpm: int  # espeak -s


@dataclass(frozen=True)
class PlannedUtterance:
    utt_id: str
    speaker: Speaker
    label: str
    mode: str
    text: str
    prosody: Prosody
    snr_db: float
    noise_seed: int


class EspeakMissingError(RuntimeError):
    pass


def espeak_binary() -> str:
    found = shutil.which("espeak-ng")
    if not found:
        raise EspeakMissingError(
            "espeak-ng is not installed; the synthetic corpus is spoken with it. "
            "Install it with `apt-get install espeak-ng` (Debian, Ubuntu) "
            "or `brew install espeak-ng` (macOS)."
        )
    return found


def make_speakers(config: SyntheticConfig, rng: random.Random) -> list[Speaker]:
    female, male = ["f1", "f2", "f3", "f4", "f5"], ["m1", "m2", "m3", "m4", "m5", "m6", "m7"]
    speakers = []
    for s in range(1, config.sessions + 1):
        session = f"S{s:02d}"
        for gender, variants, pitch_range in (("F", female, (55, 80)), ("M", male, (20, 45))):
            speakers.append(
                Speaker(
                    speaker=f"{session}{gender}",
                    session=session,
                    voice=f"en-us+{variants[(s - 1) % len(variants)]}",
                    pitch=rng.randint(*pitch_range),
                    speed_wpm=rng.randint(150, 190),
                )
            )
    return speakers


def _fill(template: str, rng: random.Random) -> str:
    return template.format(who=rng.choice(WHO), thing=rng.choice(THING), time=rng.choice(TIME))


def _jitter(base: Prosody, rng: random.Random, std_pct: float) -> Prosody:
    values = {k: v + rng.gauss(0.0, std_pct) for k, v in asdict(base).items()}
    values["volume_pct"] = max(values["volume_pct"], -80.0)  # never silent
    return Prosody(**values)


def plan_corpus(config: SyntheticConfig) -> list[PlannedUtterance]:
    """Every random choice, made up front from the seed (synthesis order cannot matter)."""
    rng = random.Random(config.seed)
    plan = []
    for speaker in make_speakers(config, rng):
        labels = [FOUR_CLASS_LABELS[i % 4] for i in range(config.utterances_per_speaker)]
        rng.shuffle(labels)
        # Per speaker and emotion, the three modes in equal shares, in random order.
        modes: dict[str, list[str]] = {}
        for emotion in EMOTIONAL:
            modes[emotion] = [MODES[j % 3] for j in range(labels.count(emotion))]
            rng.shuffle(modes[emotion])
        for i, label in enumerate(labels):
            mode = "both" if label == "neutral" else modes[label].pop()
            words, voice = channels(label, mode)
            template = rng.choice(EMOTIONAL[words] if words != "neutral" else NEUTRAL)
            plan.append(
                PlannedUtterance(
                    utt_id=f"{speaker.speaker}_{i:04d}",
                    speaker=speaker,
                    label=label,
                    mode=mode,
                    text=_fill(template, rng),
                    prosody=_jitter(EMOTION_PROSODY[voice], rng, config.prosody_jitter_pct),
                    snr_db=rng.uniform(*config.snr_db_range),
                    noise_seed=rng.getrandbits(32),
                )
            )
    return plan


def channels(label: str, mode: str) -> tuple[str, str]:
    """(the emotion of the words, the emotion of the voice) of a `label` carried by `mode`."""
    words = label if mode in ("both", "words") else "neutral"
    voice = label if mode in ("both", "prosody") else "neutral"
    return words, voice


def dimension_targets(item: PlannedUtterance) -> tuple[float, float, float]:
    """(arousal, valence, dominance): see the module docstring."""
    words, voice = channels(item.label, item.mode)
    arousal = EMOTION_DIMENSIONS[voice][0]
    valence = EMOTION_DIMENSIONS[words][1]
    dominance = (EMOTION_DIMENSIONS[voice][2] + EMOTION_DIMENSIONS[words][2]) / 2
    return arousal, valence, dominance


def synthesize(item: PlannedUtterance, espeak: str) -> np.ndarray:
    """Speak one planned utterance -> float32 [samples] at 16 kHz, with background noise."""
    spk = item.speaker
    command = [espeak, "-m", "-v", spk.voice, "-p", str(spk.pitch), "-s", str(spk.speed_wpm)]
    result = subprocess.run(
        [*command, "--stdout", item.prosody.ssml(item.text)], capture_output=True, check=True
    )
    speech = load_audio(result.stdout)
    rng = np.random.default_rng(item.noise_seed)
    speech_power = float(np.mean(speech**2)) + 1e-12
    noise_std = np.sqrt(speech_power / 10 ** (item.snr_db / 10))
    noisy = speech + rng.normal(0.0, noise_std, speech.shape).astype(np.float32)
    return np.clip(noisy, -1.0, 1.0)


def build_corpus(config: SyntheticConfig, out_dir: Path, progress: bool = True) -> list[Utterance]:
    """Write wavs, manifest.csv, labels.json, synthetic_meta.csv and corpus.json into out_dir."""
    espeak = espeak_binary()
    out_dir = out_dir.resolve()
    plan = plan_corpus(config)

    def render(item: PlannedUtterance) -> Utterance:
        wav = out_dir / "wav" / item.speaker.speaker / f"{item.utt_id}.wav"
        wav.parent.mkdir(parents=True, exist_ok=True)
        samples = synthesize(item, espeak)
        write_wav(wav, samples)
        arousal, valence, dominance = dimension_targets(item)
        return Utterance(
            utt_id=item.utt_id,
            path=str(wav),
            label=item.label,
            speaker=item.speaker.speaker,
            session=item.speaker.session,
            text=item.text,
            duration_s=len(samples) / SAMPLE_RATE_HZ,
            arousal=arousal,
            valence=valence,
            dominance=dominance,
        )

    start = time.perf_counter()
    with ThreadPoolExecutor(config.workers) as pool:
        rows = list(
            tqdm(pool.map(render, plan), total=len(plan), desc="espeak-ng", disable=not progress)
        )
    write_manifest(rows, out_dir, FOUR_CLASS_LABELS, DIMENSION_TARGETS)
    _write_meta(plan, out_dir / META_FILE)
    version = subprocess.run([espeak, "--version"], capture_output=True, text=True).stdout.strip()
    record = {
        "config": config.model_dump(mode="json"),
        "espeak_ng": version,
        "build_s": round(time.perf_counter() - start, 2),
    }
    (out_dir / CONFIG_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return rows


def _write_meta(plan: list[PlannedUtterance], path: Path) -> None:
    """Per utterance: which channel carries the label, and the prosody it was spoken with."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["utt_id", "mode", "voice", *asdict(EMOTION_PROSODY["neutral"])])
        for item in plan:
            writer.writerow(
                [item.utt_id, item.mode, item.speaker.voice]
                + [f"{v:.2f}" for v in asdict(item.prosody).values()]
            )


def read_meta(corpus_dir: Path) -> dict[str, dict[str, str]]:
    with (corpus_dir / META_FILE).open(newline="") as f:
        return {row["utt_id"]: row for row in csv.DictReader(f)}
