"""Uploaded bytes -> model-ready samples, or an AudioInputError that says precisely why not.

Responsible for: checking the declared Content-Type, enforcing the rate, channel, duration
and decoding-budget limits from the container's header BEFORE decoding (and, through
`decoder`, again while decoding, for containers that do not state them or lie), detecting
truncated or corrupt data and NaN/Inf samples, and handing back float32 mono at the model's
rate (decoding is `decoder`'s, with FFmpeg; soxr resampling `emodistill.audio`'s).

Knows nothing of HTTP frameworks, models or labels: the error carries a status code and a
human-readable detail, and the HTTP layer turns it into a response.

415: not a container we read, no audio stream, or an audio codec we do not decode.
400: it starts like a container we read but is corrupt or truncated. 413: longer than the
limits, or more samples than the decoding budget. 422: empty, too short, a rate or channel
count outside the limits, NaN/Inf or absurd sample values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import numpy as np

from emodistill.audio import resample
from emodistill.decoder import AudioInfo, DecodeError, open_audio

# Content-Types that are neither audio/* nor video/* but are used for audio in practice.
_AUDIO_LIKE_TYPES = frozenset({"application/octet-stream", "application/ogg", "application/x-ogg"})
# Chunks of the non-finite check over the resampled clip: the boolean temporary stays small.
_BLOCK_SAMPLES = 1 << 18
# RIFF writers that stream (size unknown when the header is written) put 0, or a size near
# 2 or 4 GiB (espeak-ng: 0x7FFFF000), in the size field: far beyond any upload within limits.
_STREAMED_RIFF_SIZE = 0x7FFF0000


# The default limits (the service's settings and the Python API take them from here).
MAX_AUDIO_S = 600.0
# The decoding work: frames × channels, from the header before decoding (and never read
# past). 57.6 M is 600 s of 48 kHz stereo; a 252 KB FLAC of 599 s × 8 channels × 192 kHz
# (920 M) is refused instead of decoding for seconds into ~700 MB.
MAX_DECODED_SAMPLES = 57_600_000


class AudioInputError(Exception):
    """The upload cannot be used; `status_code` is the HTTP status, `detail` the reason."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(f"{status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


@dataclass(frozen=True)
class AudioLimits:
    """What the service accepts. `max_duration_s` precedes the defaults so positions stay valid."""

    sample_rate_hz: int
    max_duration_s: float
    min_duration_s: float = 0.1
    min_input_rate_hz: int = 8000
    max_input_rate_hz: int = 192000
    # Many channels of compressed silence would decode to far more samples than were uploaded.
    max_channels: int = 32
    max_decoded_samples: int = MAX_DECODED_SAMPLES

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
    raise AudioInputError(
        415,
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


def _reason(err: Exception) -> str:
    """FFmpeg's message without the Python object reprs it embeds (heap addresses)."""
    return re.sub(r"<[^<>]* at 0x[0-9a-fA-F]+>", "the upload", str(err))


# How each decoding failure is answered.
_STATUS: dict[str, int] = {
    "not_audio": 415,
    "unsupported": 415,
    "corrupt": 400,
    "too_long": 413,
    "too_large": 413,
    "bad_values": 422,
}


def _check_header(info: AudioInfo, data: bytes, limits: AudioLimits) -> None:
    """Every limit that the header alone decides, so nothing oversized is ever decoded."""
    rate_hz = info.rate_hz
    if not limits.min_input_rate_hz <= rate_hz <= limits.max_input_rate_hz:
        raise AudioInputError(
            422,
            f"sample rate {rate_hz} Hz is outside the accepted "
            f"{limits.min_input_rate_hz}-{limits.max_input_rate_hz} Hz",
        )
    if not 1 <= info.channels <= limits.max_channels:
        raise AudioInputError(
            422, f"{info.channels} channels; at most {limits.max_channels} are accepted"
        )
    if info.container == "wav" and (missing := _riff_data_shortfall_bytes(data)) > 0:
        raise AudioInputError(400, f"WAV data is truncated: {missing} declared bytes are missing")
    if info.duration_s is None:
        return  # a live recording (WebM from a browser): decoding enforces the limits
    frames = round(info.duration_s * rate_hz)
    if (decoded := frames * info.channels) > limits.max_decoded_samples:
        raise AudioInputError(
            413,
            f"audio would decode to {decoded:,} samples ({frames:,} frames × {info.channels} "
            f"channels at {rate_hz} Hz); the limit is {limits.max_decoded_samples:,} "
            "(max_decoded_samples): send fewer channels or a lower rate",
        )
    if info.duration_s > limits.max_duration_s:
        raise AudioInputError(
            413, f"audio is {info.duration_s:.2f} s long; the limit is {limits.max_duration_s:g} s"
        )


def _all_finite(samples: np.ndarray) -> bool:
    return all(
        np.isfinite(samples[i : i + _BLOCK_SAMPLES]).all()
        for i in range(0, len(samples), _BLOCK_SAMPLES)
    )


def decode_upload(
    data: bytes, limits: AudioLimits, content_type: str | None = None
) -> DecodedAudio:
    """Uploaded bytes -> float32 mono at `limits.sample_rate_hz`, or raise AudioInputError.

    415 not audio / unsupported codec or Content-Type; 400 corrupt or truncated; 413 longer
    than `max_duration_s` or beyond the decoding budget (from the header before decoding where
    it says, and while decoding); 422 empty, too short, NaN/Inf samples, or a rate or channel
    count outside the limits.
    """
    _check_content_type(content_type)
    if not data:
        raise AudioInputError(422, "request body is empty; send an audio file")
    try:
        with open_audio(data) as reader:
            info = reader.info
            _check_header(info, data, limits)
            mono = reader.read_mono(limits.max_decoded_samples, limits.max_duration_s)
    except DecodeError as err:
        raise AudioInputError(_STATUS[err.kind], _reason(err)) from err
    if len(mono) == 0:
        raise AudioInputError(422, "audio contains no samples")
    duration_s = len(mono) / info.rate_hz
    if duration_s < limits.min_duration_s:
        raise AudioInputError(
            422, f"audio is {duration_s:.3f} s long; at least {limits.min_duration_s:g} s is needed"
        )
    samples = resample(mono, info.rate_hz, limits.sample_rate_hz)
    del mono  # the resampled copy is all that is kept
    if not _all_finite(samples):
        # Finite but enormous float samples (far beyond full scale) can overflow the filter.
        raise AudioInputError(422, "audio sample values are out of range (overflow on resampling)")
    return DecodedAudio(
        samples=samples,
        duration_s=duration_s,
        source_rate_hz=info.rate_hz,
        channels=info.channels,
        format=info.format,
    )
