"""Every format people record in decodes (FFmpeg through PyAV); the limits hold for every
container, from the header and while decoding; nothing but the enabled demuxers ever runs."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.formats import FORMATS, Format, encode, tone
from emodistill.audio_input import AudioLimits, decode_upload
from emodistill.decoder import open_audio
from emodistill.errors import AudioError
from tests.conftest import audio_limits, status

RATE_HZ = 16_000
LIMITS = audio_limits(sample_rate_hz=RATE_HZ, max_duration_s=5.0)
BY_NAME = {f.name: f for f in FORMATS}
WEBM_OPUS = BY_NAME["Opus in WebM (browser recording)"]


def peak_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / RATE_HZ)[np.argmax(spectrum)])


def status_of(data: bytes, limits: AudioLimits = LIMITS) -> str:
    with pytest.raises(AudioError) as info:
        decode_upload(data, limits)
    return f"{status(info.value)} {info.value}"


@pytest.mark.parametrize("fmt", FORMATS, ids=[f.name for f in FORMATS])
def test_every_format_decodes_to_the_recording(fmt: Format) -> None:
    out = decode_upload(encode(tone(1.0, fmt.rate_hz), fmt), LIMITS, "audio/mpeg")
    assert out.samples.dtype == np.float32 and out.samples.ndim == 1
    # Lossless: every sample back. Lossy codecs add priming or pad to a block (AAC's 1024
    # samples, ADPCM's blocks, AMR's 20 ms frames): up to 50 ms.
    assert out.duration_s == pytest.approx(1.0, abs=1e-3 if not fmt.lossy else 0.05)
    assert peak_hz(out.samples) == pytest.approx(440.0, abs=4.0)
    # The tone is at half scale; AAC rings past full scale where it starts abruptly.
    assert 0.3 < float(np.abs(out.samples).max()) < (0.7 if not fmt.lossy else 1.2)
    assert out.source_rate_hz == fmt.rate_hz and out.channels == 1


def test_stereo_is_averaged_whatever_the_container() -> None:
    mp3 = BY_NAME["MP3"]
    mono = decode_upload(encode(tone(0.5, mp3.rate_hz), mp3), LIMITS).samples
    stereo = decode_upload(encode(tone(0.5, mp3.rate_hz), mp3, channels=2), LIMITS)
    assert stereo.channels == 2
    # Tolerance 0.02: the encoder codes the two channels jointly, not bit for bit as mono.
    assert np.abs(stereo.samples - mono).max() < 0.02


def _live_webm(seconds: float, channels: int = 1) -> bytes:
    """WebM/Opus as a browser's MediaRecorder streams it: no duration in the header."""
    out = io.BytesIO()
    layout = "mono" if channels == 1 else "stereo"
    with av.open(out, "w", format="webm", options={"live": "1"}) as container:
        stream = container.add_stream("libopus", rate=48_000)
        stream.layout = layout
        planar = np.repeat(tone(seconds, 48_000)[None], channels, axis=0)
        for i in range(0, planar.shape[1] - 960 + 1, 960):
            frame = av.AudioFrame.from_ndarray(planar[:, i : i + 960], format="fltp", layout=layout)
            frame.sample_rate, frame.pts, frame.time_base = 48_000, i, Fraction(1, 48_000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


def test_a_recording_without_a_duration_is_stopped_while_decoding() -> None:
    data = _live_webm(4.0)
    with open_audio(data) as reader:
        assert reader.info.duration_s is None  # the header cannot refuse it
    assert decode_upload(data, LIMITS).duration_s == pytest.approx(4.0, abs=0.05)
    short = audio_limits(sample_rate_hz=RATE_HZ, max_duration_s=2.0)
    assert status_of(data, short).startswith("413 audio is longer than the limit of 2 s")
    budget = audio_limits(sample_rate_hz=RATE_HZ, max_duration_s=5.0, max_decoded_samples=100_000)
    stereo = _live_webm(2.0, channels=2)  # 192,000 samples over both channels
    assert status_of(stereo, budget).startswith("413 audio decodes to more than 100,000 samples")


def test_the_header_refuses_what_it_declares_too_long_or_too_large() -> None:
    flac = BY_NAME["FLAC"]
    long = encode(tone(6.0, flac.rate_hz), flac)
    assert status_of(long).startswith("413 audio is 6.00 s long; the limit is 5 s")
    budget = audio_limits(sample_rate_hz=RATE_HZ, max_duration_s=5.0, max_decoded_samples=50_000)
    wide = encode(tone(1.0, flac.rate_hz), flac, channels=2)
    assert status_of(wide, budget).startswith("413 audio would decode to 88,200 samples")


@pytest.mark.parametrize("name", ["FLAC", "M4A/AAC (voice memo)", "WAV PCM 16-bit"])
def test_truncated_files_are_400(name: str) -> None:
    fmt = BY_NAME[name]
    data = encode(tone(2.0, fmt.rate_hz), fmt)
    assert status_of(data[: len(data) // 2]).startswith("400 ")


def test_a_video_without_sound_is_415() -> None:
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        video = container.add_stream("mpeg4", rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
    assert status_of(out.getvalue()).startswith("415 the mov,mp4,m4a,3gp,3g2,mj2 file has no audio")


def test_playlists_and_concat_lists_never_open_other_files(tmp_path: Path) -> None:
    """FFmpeg's HLS and concat demuxers would read the files or URLs named inside."""
    wav = tmp_path / "secret.wav"
    wav.write_bytes(encode(tone(1.0, RATE_HZ), BY_NAME["WAV PCM 16-bit"]))
    concat = f"ffconcat version 1.0\nfile '{wav}'\n".encode()
    hls = f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\nfile://{wav}\n#EXT-X-ENDLIST\n"
    for data in (concat, hls.encode()):
        assert status_of(data).startswith("415 body is not a recognised audio or video file")


# --- fuzz: mutated compressed files give a result or an AudioError, nothing else -------

FUZZ_LIMITS = audio_limits(sample_rate_hz=RATE_HZ, max_duration_s=1.0)
SMALL = [
    encode(tone(0.3, f.rate_hz), f)
    for f in (BY_NAME["MP3"], WEBM_OPUS, BY_NAME["M4A/AAC (voice memo)"], BY_NAME["AMR-NB (phone)"])
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.sampled_from(SMALL),
    edits=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=8),
    cut=st.one_of(st.none(), st.integers(0, 3000)),
)
def test_fuzz_mutated_compressed_files(base: bytes, edits: list, cut: int | None) -> None:
    data = bytearray(base)
    for offset, value in edits:
        if offset < len(data):
            data[offset] = value
    try:
        out = decode_upload(bytes(data if cut is None else data[:cut]), FUZZ_LIMITS)
    except AudioError as err:
        assert status(err) in {400, 413, 415, 422} and str(err)
        assert " at 0x" not in str(err)  # no heap addresses
        return
    assert out.samples.dtype == np.float32 and np.isfinite(out.samples).all()
    assert out.duration_s <= FUZZ_LIMITS.max_duration_s
