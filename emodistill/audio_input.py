"""Uploaded bytes -> model-ready samples, or an AudioInputError that says precisely why not.

Responsible for: checking the declared Content-Type, recognising the container (WAV, FLAC,
OGG through soundfile), enforcing the rate/duration/channel limits from the header BEFORE
decoding, detecting truncated or corrupt data and NaN/Inf samples, and handing back float32 mono
at the model's rate (channel averaging and soxr resampling are `emodistill.audio`'s).

Knows nothing of HTTP frameworks, models or labels: the error carries a status code and a
human-readable detail, and the HTTP layer turns it into a response.

415 vs 400: bytes that soundfile cannot open are 400 ("corrupt") only when they carry the
signature of a format we accept (RIFF/RIFX/RF64 + WAVE, fLaC, OggS); anything else is 415 (not
audio). Bytes soundfile does open but as a format we do not accept (AIFF, MP3, ...) are 415. Once
opened as an accepted format, any later failure (data cut short, decoder error) is 400.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Literal

import numpy as np
import soundfile as sf

from emodistill.audio import MAX_ABS_AMPLITUDE, resample, to_mono

ACCEPTED_FORMATS = frozenset({"WAV", "WAVEX", "RF64", "FLAC", "OGG"})
# Content-Types that are not audio/* but are used for audio in practice.
_AUDIO_LIKE_TYPES = frozenset({"application/octet-stream", "application/ogg", "application/x-ogg"})
# Bounds the per-block scratch buffer (samples over all channels): 1 MiB of float32.
_BLOCK_SAMPLES = 1 << 18
# RIFF writers that stream (size unknown when the header is written) put these in the size field.
_UNKNOWN_RIFF_SIZES = frozenset({0, 0xFFFFFFFF})


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
    if media_type.startswith("audio/") or media_type in _AUDIO_LIKE_TYPES:
        return
    raise AudioInputError(
        415,
        f"Content-Type {media_type!r} is not audio; send WAV, FLAC or OGG/Vorbis as audio/* "
        "or application/octet-stream",
    )


def _has_accepted_signature(data: bytes) -> bool:
    if data[:4] in (b"RIFF", b"RIFX", b"RF64") and data[8:12] == b"WAVE":
        return True
    return data[:4] in (b"fLaC", b"OggS")


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
            if size_bytes in _UNKNOWN_RIFF_SIZES:
                return 0
            return max(0, size_bytes - (len(data) - offset - 8))
        offset += 8 + size_bytes + (size_bytes & 1)  # chunks are padded to even sizes
    return 0


def _reason(err: Exception) -> str:
    """libsndfile's message without the Python object reprs it embeds (heap addresses)."""
    return re.sub(r"<[^<>]* at 0x[0-9a-fA-F]+>", "the upload", str(err))


def _open(data: bytes) -> sf.SoundFile:
    try:
        return sf.SoundFile(io.BytesIO(data))  # BytesIO shares the bytes; no copy
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        if _has_accepted_signature(data):
            detail = f"audio file is corrupt or truncated: {_reason(err)}"
            raise AudioInputError(400, detail) from err
        raise AudioInputError(
            415, "body is not a recognised audio file; send WAV, FLAC or OGG/Vorbis"
        ) from err


def _check_header(f: sf.SoundFile, data: bytes, limits: AudioLimits) -> None:
    """Every limit that the header alone decides, so nothing oversized is ever decoded."""
    if f.format not in ACCEPTED_FORMATS:
        raise AudioInputError(
            415, f"audio format {f.format} is not supported; send WAV, FLAC or OGG/Vorbis"
        )
    rate_hz = f.samplerate
    if not limits.min_input_rate_hz <= rate_hz <= limits.max_input_rate_hz:
        raise AudioInputError(
            422,
            f"sample rate {rate_hz} Hz is outside the accepted "
            f"{limits.min_input_rate_hz}-{limits.max_input_rate_hz} Hz",
        )
    if not 1 <= f.channels <= limits.max_channels:
        raise AudioInputError(
            422, f"{f.channels} channels; at most {limits.max_channels} are accepted"
        )
    if f.format in ("WAV", "WAVEX") and (missing := _riff_data_shortfall_bytes(data)) > 0:
        raise AudioInputError(400, f"WAV data is truncated: {missing} declared bytes are missing")
    if f.frames <= 0:
        raise AudioInputError(422, "audio contains no samples")
    if (decoded := f.frames * f.channels) > limits.max_decoded_samples:
        raise AudioInputError(
            413,
            f"audio would decode to {decoded:,} samples ({f.frames:,} frames × {f.channels} "
            f"channels at {rate_hz} Hz); the limit is {limits.max_decoded_samples:,} "
            "(max_decoded_samples): send fewer channels or a lower rate",
        )
    duration_s = f.frames / rate_hz
    if duration_s > limits.max_duration_s:
        raise AudioInputError(
            413, f"audio is {duration_s:.2f} s long; the limit is {limits.max_duration_s:g} s"
        )
    if duration_s < limits.min_duration_s:
        raise AudioInputError(
            422, f"audio is {duration_s:.3f} s long; at least {limits.min_duration_s:g} s is needed"
        )


def _read_mono(f: sf.SoundFile) -> np.ndarray:
    """Decode all header-declared frames block by block into one float32 mono buffer.

    Averaging per block keeps memory at one mono copy plus a small scratch block, whatever
    the channel count; the non-finite check runs per block for the same reason.
    """
    frames = f.frames
    mono = np.empty(frames, dtype=np.float32)
    block = np.empty((max(1, _BLOCK_SAMPLES // f.channels), f.channels), dtype=np.float32)
    pos = 0
    while pos < frames:
        want = min(len(block), frames - pos)
        try:
            got = f.read(want, dtype="float32", always_2d=True, out=block[:want])
        except (sf.LibsndfileError, RuntimeError, ValueError) as err:
            detail = f"audio data is corrupt or truncated: {_reason(err)}"
            raise AudioInputError(400, detail) from err
        if len(got) == 0:
            break
        # Averaging inf with -inf or overflowing float32 would warn; it is refused just below.
        with np.errstate(invalid="ignore", over="ignore"):
            chunk = to_mono(got)
        if not np.isfinite(chunk).all():
            raise AudioInputError(422, "audio contains NaN or infinite sample values")
        if len(chunk) and float(np.abs(chunk).max()) > MAX_ABS_AMPLITUDE:
            raise AudioInputError(
                422,
                f"audio sample values go beyond ±{MAX_ABS_AMPLITUDE:g}; full scale is ±1",
            )
        mono[pos : pos + len(got)] = chunk
        pos += len(got)
    if pos < frames:
        raise AudioInputError(
            400, f"audio data is truncated: the header declares {frames} frames, found {pos}"
        )
    return mono


def _all_finite(samples: np.ndarray) -> bool:
    # Chunked so the boolean temporary stays small.
    return all(
        np.isfinite(samples[i : i + _BLOCK_SAMPLES]).all()
        for i in range(0, len(samples), _BLOCK_SAMPLES)
    )


def decode_upload(
    data: bytes, limits: AudioLimits, content_type: str | None = None
) -> DecodedAudio:
    """Uploaded bytes -> float32 mono at `limits.sample_rate_hz`, or raise AudioInputError.

    415 not audio / unsupported format or Content-Type; 400 an accepted format that is corrupt
    or truncated; 413 longer than `max_duration_s` (decided from the header, before decoding);
    422 empty, too short, NaN/Inf samples, or a rate or channel count outside the limits.
    """
    _check_content_type(content_type)
    if not data:
        raise AudioInputError(422, "request body is empty; send an audio file")
    with _open(data) as f:
        _check_header(f, data, limits)
        mono = _read_mono(f)
        source_rate_hz, channels, fmt = f.samplerate, f.channels, f.format
    duration_s = len(mono) / source_rate_hz
    samples = resample(mono, source_rate_hz, limits.sample_rate_hz)
    del mono  # the resampled copy is all that is kept
    if not _all_finite(samples):
        # Finite but enormous float samples (far beyond full scale) can overflow the filter.
        raise AudioInputError(422, "audio sample values are out of range (overflow on resampling)")
    return DecodedAudio(
        samples=samples,
        duration_s=duration_s,
        source_rate_hz=source_rate_hz,
        channels=channels,
        format=fmt,
    )
