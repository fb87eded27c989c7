"""Audio in: the one loader every stage uses (corpus preparation, features, training, serving).

Decodes with soundfile (WAV, FLAC, OGG), averages channels to mono and resamples with
soxr to the model's rate. It knows nothing of labels, models or HTTP.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

# HuBERT and every feature extractor here expect 16 kHz; this is the one home of that number.
SAMPLE_RATE_HZ = 16_000
# Samples are full scale at ±1. Float files may go past it a little (headroom); ±1000 is 60 dB
# over, far beyond any recording, and keeps the model's squares and sums well inside float32
# (samples near ±3e38 made it answer NaN; from about 1e19 up, every clip one fixed answer).
MAX_ABS_AMPLITUDE = 1000.0

AudioSource = str | Path | bytes | BinaryIO


class AudioDecodeError(ValueError):
    """The input could not be decoded as audio; the message says why."""


def _as_file(source: AudioSource) -> str | BinaryIO:
    if isinstance(source, bytes):
        return io.BytesIO(source)
    if isinstance(source, Path):
        return str(source)
    return source


def to_mono(samples: np.ndarray) -> np.ndarray:
    """[samples, channels] or [samples] -> [samples], channels averaged."""
    if samples.ndim == 1:
        return samples
    if samples.shape[1] == 1:
        return samples[:, 0]  # a view: a mean over one channel was a tenth of decoding's time
    return samples.mean(axis=1)


def resample(samples: np.ndarray, from_rate_hz: int, to_rate_hz: int) -> np.ndarray:
    """[samples] float32 at `from_rate_hz` -> [samples'] float32 at `to_rate_hz` (soxr, HQ)."""
    if from_rate_hz == to_rate_hz:
        return np.ascontiguousarray(samples, dtype=np.float32)
    out = soxr.resample(samples.astype(np.float32, copy=False), from_rate_hz, to_rate_hz, "HQ")
    return np.ascontiguousarray(out, dtype=np.float32)


def load_audio(source: AudioSource, sample_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """Decode `source` (a path, bytes or a binary file) -> float32 mono [samples] at the rate.

    Raises AudioDecodeError when soundfile cannot read it.
    """
    try:
        samples, rate_hz = sf.read(_as_file(source), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise AudioDecodeError(f"cannot decode audio: {err}") from err
    return resample(to_mono(samples), rate_hz, sample_rate_hz)


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
    """Duration of an audio file in seconds, read from its header (no decoding)."""
    info = sf.info(str(path))
    return info.frames / info.samplerate


def write_wav(path: str | Path, samples: np.ndarray, sample_rate_hz: int = SAMPLE_RATE_HZ) -> None:
    """Write float32 [samples] in [-1, 1] as 16-bit PCM WAV."""
    sf.write(str(path), samples, sample_rate_hz, subtype="PCM_16")
