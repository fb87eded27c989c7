"""Audio in: the one loader every stage uses (corpus preparation, features, training, serving).

Decodes with FFmpeg (`decoder`: WAV, FLAC, OGG, Opus, MP3, M4A/AAC, AIFF, AMR, video files'
audio), averages channels to mono and resamples with soxr to the model's rate; writes WAV with
soundfile. It knows nothing of labels, models or HTTP.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

from emodistill.decoder import decode_file, open_audio

# HuBERT and every feature extractor here expect 16 kHz; this is the one home of that number.
SAMPLE_RATE_HZ = 16_000

AudioSource = str | Path | bytes | BinaryIO


def _as_bytes(source: AudioSource) -> bytes:
    if isinstance(source, bytes):
        return source
    if isinstance(source, str | Path):
        return Path(source).read_bytes()
    return source.read()


def resample(samples: np.ndarray, from_rate_hz: int, to_rate_hz: int) -> np.ndarray:
    """[samples] float32 at `from_rate_hz` -> [samples'] float32 at `to_rate_hz` (soxr, HQ)."""
    if from_rate_hz == to_rate_hz:
        return np.ascontiguousarray(samples, dtype=np.float32)
    out = soxr.resample(samples.astype(np.float32, copy=False), from_rate_hz, to_rate_hz, "HQ")
    return np.ascontiguousarray(out, dtype=np.float32)


def load_audio(source: AudioSource, sample_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """Decode `source` (a path, bytes or a binary file) -> float32 mono [samples] at the rate.

    The service's decoder (FFmpeg through `decoder`, every format it reads), without the
    service's limits: corpus files are trusted. Raises emodistill.errors.AudioError when it
    cannot (OSError when the file cannot be read).
    """
    mono, info = decode_file(_as_bytes(source))
    return resample(mono, info.rate_hz, sample_rate_hz)


def normalize_clip(samples: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance over the clip: what `do_normalize` in a preprocessor config
    means (transformers' Wav2Vec2FeatureExtractor, the same epsilon)."""
    return ((samples - samples.mean()) / np.sqrt(samples.var() + 1e-7)).astype(np.float32)


def pad_batch(clips: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """clips -> (input_values [B, S_max] float32, attention_mask [B, S_max] int64), zero-padded
    at the end: the two inputs of every model in a bundle."""
    longest = max(len(c) for c in clips)
    values = np.zeros((len(clips), longest), dtype=np.float32)
    mask = np.zeros((len(clips), longest), dtype=np.int64)
    for i, clip in enumerate(clips):
        values[i, : len(clip)] = clip
        mask[i, : len(clip)] = 1
    return values, mask


def duration_s(path: str | Path) -> float:
    """Duration of an audio file in seconds: from its header where it says (no decoding),
    else decoded."""
    with open_audio(Path(path).read_bytes()) as reader:
        if reader.info.duration_s is not None:
            return reader.info.duration_s
    return len(load_audio(path, SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ


def write_wav(path: str | Path, samples: np.ndarray, sample_rate_hz: int = SAMPLE_RATE_HZ) -> None:
    """Write float32 [samples] in [-1, 1] as 16-bit PCM WAV."""
    sf.write(str(path), samples, sample_rate_hz, subtype="PCM_16")
