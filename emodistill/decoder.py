"""Any recording people have -> float32 mono samples at its own rate, through FFmpeg (PyAV).

WAV (PCM, float, μ-law, A-law, ADPCM), FLAC, OGG/Vorbis, Opus (Ogg and WebM), MP3,
M4A/AAC, AIFF, AMR and the first audio stream of a video file (MP4, WebM, MKV). Only the
demuxers and decoders named here are enabled, so a crafted file cannot reach FFmpeg's other
parsers, and no demuxer that opens further files or URLs (HLS, concat) can run. The decoding
budget (frames × channels) and the duration are enforced while decoding, frame by frame, as
well as from the header where the container states them: nothing small on the wire decodes
to something huge. Raises emodistill.errors' classes; knows nothing of HTTP or models.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import av
import numpy as np

from emodistill.errors import (
    AudioError,
    AudioTooLargeError,
    AudioTooLongError,
    BadSamplesError,
    CorruptAudioError,
    NotAudioError,
    UnsupportedCodecError,
    without_addresses,
)

# FFmpeg demuxer names ("mov" covers mp4/m4a/3gp, "matroska" covers webm).
DEMUXERS = ("wav", "w64", "flac", "ogg", "mp3", "mov", "matroska", "aiff", "amr", "aac", "caf")
# Decoders of the codecs those containers carry for speech and music. PCM and ADPCM come in
# many byte orders and widths; all of theirs are in.
_DECODER_NAMES: tuple[str, ...] = ("flac", "vorbis", "opus", "libopus", "mp3", "mp3float")
_DECODER_NAMES += ("mp2", "mp2float", "aac", "aac_latm", "alac", "amrnb", "amrwb", "gsm_ms")
_DECODER_NAMES += ("libopencore_amrnb",)
DECODERS = tuple(
    sorted(
        name
        for name in av.codecs_available
        if name in _DECODER_NAMES or name.startswith(("pcm_", "adpcm_"))
    )
)
# Containers whose header states the exact length: a shorter decode means a truncated file.
# Others (MP3 without an index, streamed WebM) state an estimate, or nothing.
_EXACT_LENGTH = ("wav", "w64", "flac", "aiff", "caf")
# First bytes of the containers above: an upload that starts like one but will not open is
# corrupt (400), anything else is not audio (415).
_SIGNATURES: tuple[bytes, ...] = (b"riff", b"fLaC", b"OggS", b"ID3")
_SIGNATURES += (b"FORM", b"#!AMR")
_SIGNATURES += (b"\x1a\x45\xdf\xa3", b"caff")  # EBML (Matroska, WebM), Core Audio

# How much FFmpeg reads, and decodes, to learn the streams' parameters before decoding starts
# (its default is 5 MB). Every container here states rate, channels and codec in its header:
# 4 KB found the same parameters for every format of bench/formats.py, and for an MP3 behind
# a 200 KB ID3 tag, while opening a 3 s 16 kHz WAV fell from 3.4 to 0.3 ms of CPU.
PROBE_BYTES = 4096
# The WAV demuxer's packet size (other demuxers ignore it). Its default gave 47 packets for 3 s
# of 16 kHz PCM, each with its own Python work: decoding that WAV took 1.01 ms of CPU; 8 KB
# packets, 0.68 ms; larger ones were slower again (64 KB: 1.9 ms), in one alternating run.
WAV_PACKET_BYTES = 8192

# Samples are full scale at ±1. Float files may go past it a little (headroom); ±1000 is 60 dB
# over, far beyond any recording, and keeps the model's squares and sums well inside float32
# (samples near ±3e38 made it answer NaN; from about 1e19 up, every clip one fixed answer).
MAX_ABS_AMPLITUDE = 1000.0


@dataclass(frozen=True)
class AudioInfo:
    """What the container says, before any sample is decoded."""

    container: str  # FFmpeg's demuxer name, e.g. "wav", "mov,mp4,m4a,3gp,3g2,mj2"
    codec: str  # e.g. "pcm_s16le", "aac", "opus"
    rate_hz: int
    channels: int
    duration_s: float | None  # None where the container does not say (a live recording)

    @property
    def format(self) -> str:
        """A short name for people and metrics: WAV, MP3, MOV, MATROSKA, OGG, ..."""
        return self.container.split(",")[0].upper()


def looks_like_audio(data: bytes) -> bool:
    """Starts like one of the containers we read: RIFF only with WAVE (not WEBP or AVI),
    MP4/M4A by the `ftyp` box at byte 4, MP3 without a tag by its frame sync."""
    if data[:4] in (b"RIFF", b"RIFX", b"RF64"):
        return data[8:12] == b"WAVE"
    mp3_sync = len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0
    return data.startswith(_SIGNATURES) or data[4:8] == b"ftyp" or mp3_sync


def _duration_s(container: av.container.InputContainer, stream: av.AudioStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:  # AV_TIME_BASE units: microseconds
        return container.duration / 1_000_000
    return None


class AudioReader:
    """An opened upload: `info` from the header, then `read_mono` decodes within limits."""

    def __init__(self, container: av.container.InputContainer, stream: av.AudioStream) -> None:
        self.container = container
        self.stream = stream
        codec = stream.codec_context
        self.info = AudioInfo(
            container=container.format.name,
            codec=codec.name,
            rate_hz=int(codec.sample_rate or 0),
            channels=int(codec.channels or 0),
            duration_s=_duration_s(container, stream),
        )

    def read_mono(self, max_samples: int, max_duration_s: float) -> np.ndarray:
        """Every frame of the stream, channels averaged -> float32 [frames] at `info.rate_hz`.

        Raises AudioTooLargeError once frames × channels pass `max_samples`, AudioTooLongError
        once the decoded length passes `max_duration_s` (both checked per frame, so a stream
        that lies in its header stops as soon as it goes past), CorruptAudioError for
        undecodable or truncated data, BadSamplesError for NaN, infinite or far-beyond-full-
        scale samples.
        """
        rate_hz = self.info.rate_hz
        # Each frame's samples as decoded, in runs of one sample format and channel count
        # (a stream rarely changes either); each run is converted in one numpy pass.
        runs: list[tuple[tuple[str, bool, int], list[np.ndarray]]] = []
        decoded_samples, frames = 0, 0
        try:
            for frame in self.container.decode(self.stream):
                if frame.sample_rate != rate_hz:
                    raise CorruptAudioError("the sample rate changes inside the stream")
                channels = max(1, len(frame.layout.channels))
                decoded_samples += frame.samples * channels
                frames += frame.samples
                if decoded_samples > max_samples:
                    raise AudioTooLargeError(
                        f"audio decodes to more than {max_samples:,} samples over all channels "
                        "(max_decoded_samples): send fewer channels or a lower rate",
                    )
                if frames / rate_hz > max_duration_s:
                    raise AudioTooLongError(
                        f"audio is longer than the limit of {max_duration_s:g} s"
                    )
                layout = (frame.format.name, frame.format.is_planar, channels)
                if not runs or runs[-1][0] != layout:
                    runs.append((layout, []))
                runs[-1][1].append(frame.to_ndarray())
        except AudioError:
            raise  # a limit above: itself a ValueError, not FFmpeg's
        except (av.error.FFmpegError, ValueError) as err:
            reason = without_addresses(str(err))
            raise CorruptAudioError(f"audio data is corrupt or truncated: {reason}") from err
        chunks = [
            _checked_mono(_planar_float(np.concatenate(raw, axis=1), *layout))
            for layout, raw in runs
        ]
        mono = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        self._check_complete(len(mono))
        return mono

    def _check_complete(self, frames: int) -> None:
        declared = self.info.duration_s
        if declared is None or not frames:
            return
        decoded_s = frames / self.info.rate_hz
        exact = any(name in _EXACT_LENGTH for name in self.info.container.split(","))
        # Exact headers may round to a frame; estimates (VBR MP3) may be off by a tenth.
        if decoded_s < declared - (0.01 if exact else max(0.5, 0.5 * declared)):
            raise CorruptAudioError(
                f"audio data is truncated: the header declares {declared:.3f} s, "
                f"{decoded_s:.3f} s decoded",
            )


# Full scale of FFmpeg's integer sample formats (u8 is offset by 128), as swresample converts.
_INTEGER_SCALE = {"u8": 128.0, "s16": 32768.0, "s32": 2147483648.0, "s64": 2.0**63}


def _planar_float(raw: np.ndarray, sample_format: str, planar: bool, channels: int) -> np.ndarray:
    """Frames' samples as FFmpeg decoded them (`to_ndarray`: [channels, samples] planar,
    [1, samples × channels] interleaved) -> float32 [channels, samples] at full scale ±1.
    numpy on the decoded buffers: through swresample, each frame took about 20 µs (a 3 s WAV
    has 47), which was most of decoding's CPU."""
    name = sample_format.rstrip("p")
    if not planar:
        raw = raw.reshape(-1, channels).T
    if name in ("flt", "dbl"):
        return raw.astype(np.float32, copy=False)
    if name == "u8":
        return (raw.astype(np.float32) - 128.0) / 128.0
    return raw.astype(np.float32) * np.float32(1.0 / _INTEGER_SCALE[name])


def _checked_mono(planar: np.ndarray) -> np.ndarray:
    """[channels, frames] float32 -> [frames], refusing NaN, inf and absurd amplitudes."""
    with np.errstate(invalid="ignore", over="ignore"):  # refused just below
        # One channel: a view (a mean over it was a tenth of decoding's time).
        mono = planar[0] if len(planar) == 1 else planar.mean(axis=0, dtype=np.float32)
    if not np.isfinite(mono).all():
        raise BadSamplesError("audio contains NaN or infinite sample values")
    if mono.size and float(np.abs(mono).max()) > MAX_ABS_AMPLITUDE:
        raise BadSamplesError(
            f"audio sample values go beyond ±{MAX_ABS_AMPLITUDE:g}; full scale is ±1",
        )
    return np.ascontiguousarray(mono)


@contextmanager
def open_audio(data: bytes) -> Iterator[AudioReader]:
    """The first audio stream of `data`, opened with only DEMUXERS and DECODERS enabled.

    Raises NotAudioError (no container we read, or no audio stream in it), CorruptAudioError
    (it starts like audio but FFmpeg cannot open it), UnsupportedCodecError (an audio codec
    outside DECODERS).
    """
    options = {
        "format_whitelist": ",".join(DEMUXERS),
        "codec_whitelist": ",".join(DECODERS),
        "probesize": str(PROBE_BYTES),
        "max_size": str(WAV_PACKET_BYTES),
    }
    try:
        container = av.open(io.BytesIO(data), mode="r", options=options, metadata_errors="ignore")
    except (av.error.FFmpegError, ValueError, UnicodeDecodeError) as err:
        if looks_like_audio(data):
            reason = without_addresses(str(err))
            raise CorruptAudioError(f"audio file is corrupt or truncated: {reason}") from err
        raise NotAudioError("body is not a recognised audio or video file") from err
    try:
        if not container.streams.audio:
            raise NotAudioError(f"the {container.format.name} file has no audio stream")
        stream = container.streams.audio[0]
        # No codec context: FFmpeg has no enabled decoder for the stream's codec.
        codec = stream.codec_context.name if stream.codec_context is not None else None
        if codec not in DECODERS:
            raise UnsupportedCodecError(f"audio codec {codec or 'unknown'} is not supported")
        yield AudioReader(container, stream)
    finally:
        container.close()


def decode_file(data: bytes) -> tuple[np.ndarray, AudioInfo]:
    """Trusted input (a corpus file): (float32 mono at the file's own rate, its info)."""
    with open_audio(data) as reader:
        mono = reader.read_mono(max_samples=2**40, max_duration_s=float("inf"))
        return mono, reader.info
