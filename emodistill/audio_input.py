"""Uploaded bytes -> model-ready samples, or an AudioError that says precisely why not.

Responsible for: checking the declared Content-Type, enforcing the rate, channel, duration
and decoding-budget limits from the container's header BEFORE decoding (and, through
`decoder`, again while decoding, for containers that do not state them or lie), detecting
truncated or corrupt data and NaN/Inf samples, and handing back float32 mono at the model's
rate (decoding is `decoder`'s, with FFmpeg; soxr resampling `emodistill.audio`'s).

Knows nothing of HTTP, models or labels: each failure is its own class of emodistill.errors
(not audio, unsupported codec, corrupt, too long, too large, too short, a rate or channel count
outside the limits, bad samples); service/errors.py maps them to statuses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from emodistill.audio import resample
from emodistill.decoder import AudioInfo, open_audio
from emodistill.errors import (
    AudioFormatError,
    AudioTooLargeError,
    AudioTooLongError,
    AudioTooShortError,
    BadSamplesError,
    CorruptAudioError,
    NotAudioError,
)

# Content-Types that are neither audio/* nor video/* but are used for audio in practice.
_AUDIO_LIKE_TYPES = frozenset({"application/octet-stream", "application/ogg", "application/x-ogg"})
# Chunks of the non-finite check over the resampled clip: the boolean temporary stays small.
_BLOCK_SAMPLES = 1 << 18
# RIFF writers that stream (size unknown when the header is written) put 0, or a size near
# 2 or 4 GiB (espeak-ng: 0x7FFFF000), in the size field: far beyond any upload within limits.
_STREAMED_RIFF_SIZE = 0x7FFF0000


@dataclass(frozen=True)
class AudioLimits:
    """What the decoder accepts (built from emodistill.options.InferenceOptions, whose fields
    hold the defaults of the duration and the decoding budget)."""

    sample_rate_hz: int
    max_duration_s: float
    # The decoding work: frames × channels, from the header before decoding (never read past).
    max_decoded_samples: int
    min_duration_s: float = 0.1
    min_input_rate_hz: int = 8000
    max_input_rate_hz: int = 192000
    # Many channels of compressed silence would decode to far more samples than were uploaded.
    max_channels: int = 32

    def __post_init__(self) -> None:
        if self.sample_rate_hz <= 0 or not 0 <= self.min_duration_s <= self.max_duration_s:
            raise ValueError(f"inconsistent audio limits: {self}")
        if self.max_decoded_samples < 1:
            raise ValueError(f"inconsistent audio limits: {self}")
        if not 0 < self.min_input_rate_hz <= self.max_input_rate_hz or self.max_channels < 1:
            raise ValueError(f"inconsistent audio limits: {self}")


@dataclass(frozen=True)
class DecodedAudio:
    """float32 mono `samples` at the model's rate, and what the original upload was."""

    samples: np.ndarray
    duration_s: float
    source_rate_hz: int
    channels: int
    format: str


def _check_content_type(content_type: str | None) -> None:
    if not content_type or not content_type.strip():
        return
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type.startswith(("audio/", "video/")) or media_type in _AUDIO_LIKE_TYPES:
        return
    raise NotAudioError(
        f"Content-Type {media_type!r} is not audio; send a recording as audio/*, video/* or "
        "application/octet-stream",
    )


def _riff_data_shortfall_bytes(data: bytes) -> int:
    """Bytes the WAV's 'data' chunk declares but the upload lacks (0 when whole or unknown).

    libsndfile silently clips a WAV's frame count to the bytes present, so a cut-off upload
    would otherwise pass as a shorter clip.
    """
    if data[:4] not in (b"RIFF", b"RIFX") or data[8:12] != b"WAVE":
        return 0  # RF64 keeps its sizes in a ds64 chunk; libsndfile checks those itself.
    byteorder: Literal["little", "big"] = "little" if data[:4] == b"RIFF" else "big"
    offset = 12
    while offset + 8 <= len(data):
        chunk_id = data[offset : offset + 4]
        size_bytes = int.from_bytes(data[offset + 4 : offset + 8], byteorder)
        if chunk_id == b"data":
            if size_bytes == 0 or size_bytes >= _STREAMED_RIFF_SIZE:
                return 0
            return max(0, size_bytes - (len(data) - offset - 8))
        offset += 8 + size_bytes + (size_bytes & 1)  # chunks are padded to even sizes
    return 0


def _check_header(info: AudioInfo, data: bytes, limits: AudioLimits) -> None:
    """Every limit that the header alone decides, so nothing oversized is ever decoded."""
    rate_hz = info.rate_hz
    if not limits.min_input_rate_hz <= rate_hz <= limits.max_input_rate_hz:
        raise AudioFormatError(
            f"sample rate {rate_hz} Hz is outside the accepted "
            f"{limits.min_input_rate_hz}-{limits.max_input_rate_hz} Hz",
        )
    if not 1 <= info.channels <= limits.max_channels:
        raise AudioFormatError(
            f"{info.channels} channels; at most {limits.max_channels} are accepted"
        )
    if info.container == "wav" and (missing := _riff_data_shortfall_bytes(data)) > 0:
        raise CorruptAudioError(f"WAV data is truncated: {missing} declared bytes are missing")
    if info.duration_s is None:
        return  # a live recording (WebM from a browser): decoding enforces the limits
    frames = round(info.duration_s * rate_hz)
    if (decoded := frames * info.channels) > limits.max_decoded_samples:
        raise AudioTooLargeError(
            f"audio would decode to {decoded:,} samples ({frames:,} frames × {info.channels} "
            f"channels at {rate_hz} Hz); the limit is {limits.max_decoded_samples:,} "
            "(max_decoded_samples): send fewer channels or a lower rate",
        )
    if info.duration_s > limits.max_duration_s:
        raise AudioTooLongError(
            f"audio is {info.duration_s:.2f} s long; the limit is {limits.max_duration_s:g} s"
        )


def _all_finite(samples: np.ndarray) -> bool:
    return all(
        np.isfinite(samples[i : i + _BLOCK_SAMPLES]).all()
        for i in range(0, len(samples), _BLOCK_SAMPLES)
    )


def decode_upload(
    data: bytes, limits: AudioLimits, content_type: str | None = None
) -> DecodedAudio:
    """Uploaded bytes -> float32 mono at `limits.sample_rate_hz`, or raise an AudioError:
    NotAudioError (or a Content-Type that is not audio), UnsupportedCodecError,
    CorruptAudioError (corrupt or truncated), AudioTooLongError / AudioTooLargeError (from the
    header before decoding where it says, and while decoding), AudioTooShortError (empty or
    too short), AudioFormatError (a rate or channel count outside the limits), BadSamplesError.
    """
    _check_content_type(content_type)
    if not data:
        raise AudioTooShortError("request body is empty; send an audio file")
    with open_audio(data) as reader:
        info = reader.info
        _check_header(info, data, limits)
        mono = reader.read_mono(limits.max_decoded_samples, limits.max_duration_s)
    if len(mono) == 0:
        raise AudioTooShortError("audio contains no samples")
    duration_s = len(mono) / info.rate_hz
    if duration_s < limits.min_duration_s:
        raise AudioTooShortError(
            f"audio is {duration_s:.3f} s long; at least {limits.min_duration_s:g} s is needed"
        )
    samples = resample(mono, info.rate_hz, limits.sample_rate_hz)
    del mono  # the resampled copy is all that is kept
    if not _all_finite(samples):
        # Finite but enormous float samples (far beyond full scale) can overflow the filter.
        raise BadSamplesError("audio sample values are out of range (overflow on resampling)")
    return DecodedAudio(
        samples=samples,
        duration_s=duration_s,
        source_rate_hz=info.rate_hz,
        channels=info.channels,
        format=info.format,
    )
