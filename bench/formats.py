"""The recording formats people send, written with PyAV's own encoders (FFmpeg in its wheel):
the table the decoder's tests and the decode benchmark share.

Each entry names a container and codec as FFmpeg writes them, and the rate they are written
at (AMR-NB is 8 kHz by definition, Opus 48 kHz). `video=True` adds a small MPEG-4 video
stream, so the audio is a video file's first audio track.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction
from typing import cast

import av
import numpy as np
import soundfile as sf


@dataclass(frozen=True)
class Format:
    name: str
    container: str  # FFmpeg muxer
    codec: str  # FFmpeg encoder
    rate_hz: int
    video: bool = False
    lossy: bool = True


FORMATS = [
    Format("WAV PCM 16-bit", "wav", "pcm_s16le", 16_000, lossy=False),
    Format("WAV float", "wav", "pcm_f32le", 44_100, lossy=False),
    Format("WAV μ-law", "wav", "pcm_mulaw", 8_000),
    Format("WAV A-law", "wav", "pcm_alaw", 8_000),
    Format("WAV IMA ADPCM", "wav", "adpcm_ima_wav", 16_000),
    Format("WAV MS ADPCM", "wav", "adpcm_ms", 16_000),
    Format("FLAC", "flac", "flac", 44_100, lossy=False),
    Format("OGG/Vorbis", "ogg", "vorbis", 44_100),
    Format("Opus in Ogg", "ogg", "libopus", 48_000),
    Format("Opus in WebM (browser recording)", "webm", "libopus", 48_000),
    Format("MP3", "mp3", "libmp3lame", 44_100),
    Format("M4A/AAC (voice memo)", "ipod", "aac", 44_100),
    Format("AIFF", "aiff", "pcm_s16be", 44_100, lossy=False),
    Format("AMR-NB (phone)", "amr", "libopencore_amrnb", 8_000),
    Format("MP4 video, AAC", "mp4", "aac", 44_100, video=True),
    Format("MKV video, Opus", "matroska", "libopus", 48_000, video=True),
]


def tone(seconds: float, rate_hz: int, freq_hz: float = 440.0) -> np.ndarray:
    """float32 [samples]: a sine at half scale."""
    t = np.arange(round(seconds * rate_hz)) / rate_hz
    return (0.5 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def encode(samples: np.ndarray, fmt: Format, channels: int = 1) -> bytes:
    """float32 mono [samples] at `fmt.rate_hz` -> the file's bytes (`channels` copies)."""
    out = io.BytesIO()
    planar = np.repeat(samples[None].astype(np.float32), channels, axis=0)
    if fmt.codec == "vorbis":  # FFmpeg's own Vorbis encoder is experimental: libvorbis's
        sf.write(out, planar.T, fmt.rate_hz, format="OGG", subtype="VORBIS")
        return out.getvalue()
    layout = "mono" if channels == 1 else "stereo"
    with av.open(out, "w", format=fmt.container) as container:
        stream = cast(av.AudioStream, container.add_stream(fmt.codec, rate=fmt.rate_hz))
        stream.layout = layout
        if fmt.video:  # every stream is added before the first packet is written
            _add_video(container, len(samples) / fmt.rate_hz)
        frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout=layout)
        frame.sample_rate = fmt.rate_hz
        # Encoders take fixed-size frames, in their own sample format.
        to_codec = av.AudioResampler(
            format=stream.codec_context.format, layout=layout, rate=fmt.rate_hz
        )
        fifo = av.AudioFifo()
        for converted in to_codec.resample(frame):
            fifo.write(converted)
        size = stream.codec_context.frame_size or 1024
        while fifo.samples:
            chunk = fifo.read(size) if fifo.samples >= size else fifo.read()
            for packet in stream.encode(chunk):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


def _add_video(container: av.container.OutputContainer, seconds: float) -> None:
    video = cast(av.VideoStream, container.add_stream("mpeg4", rate=25))
    video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
    black = np.zeros((48, 64, 3), np.uint8)
    for i in range(max(1, round(seconds * 25))):
        frame = av.VideoFrame.from_ndarray(black, format="rgb24")
        frame.pts, frame.time_base = i, Fraction(1, 25)
        for packet in video.encode(frame):
            container.mux(packet)
    for packet in video.encode(None):
        container.mux(packet)
