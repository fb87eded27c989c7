"""decode_upload: every accepted format decodes to float32 mono at the model's rate; every bad
upload raises AudioError with the right status; nothing else ever escapes (fuzzed)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emodistill.audio_input import AudioLimits, DecodedAudio, decode_upload
from emodistill.errors import AudioError
from tests.conftest import AUDIO_FORMATS, audio_limits, status

RATE_HZ = 16_000
LIMITS = audio_limits(sample_rate_hz=RATE_HZ, max_duration_s=2.0)


def tone(seconds: float, rate_hz: int, freq_hz: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * rate_hz)) / rate_hz
    return (0.5 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def encode(samples: np.ndarray, rate_hz: int, fmt: str = "WAV", subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate_hz, format=fmt, subtype=subtype)
    return buf.getvalue()


def peak_hz(samples: np.ndarray, rate_hz: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate_hz)[np.argmax(spectrum)])


def status_of(data: bytes, content_type: str | None = None, limits: AudioLimits = LIMITS) -> str:
    with pytest.raises(AudioError) as info:
        decode_upload(data, limits, content_type)
    return f"{status(info.value)} {info.value}"


# --- what decodes ------------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "subtype"), AUDIO_FORMATS)
def test_every_format_decodes_to_float32_mono_at_model_rate(fmt: str, subtype: str) -> None:
    data = encode(tone(0.5, 22_050), 22_050, fmt, subtype)
    out = decode_upload(data, LIMITS, "audio/wav")
    assert isinstance(out, DecodedAudio)
    assert out.samples.dtype == np.float32 and out.samples.ndim == 1
    assert out.samples.flags.c_contiguous
    # Lossless formats give every sample back; FFmpeg's Vorbis decoder drops the first
    # half-block (256 samples at 22.05 kHz, 12 ms), as lossy decoders may.
    slack_s = 1e-3 if subtype != "VORBIS" else 0.015
    assert out.duration_s == pytest.approx(0.5, abs=slack_s)
    assert len(out.samples) == pytest.approx(0.5 * RATE_HZ, abs=slack_s * RATE_HZ)
    assert (out.source_rate_hz, out.channels, out.format) == (22_050, 1, fmt)
    assert abs(peak_hz(out.samples, RATE_HZ) - 440) <= 4
    assert np.isfinite(out.samples).all()


def test_stereo_is_averaged_to_mono() -> None:
    left = tone(0.5, RATE_HZ)
    out = decode_upload(
        encode(np.stack([left, np.zeros_like(left)], 1), RATE_HZ, subtype="FLOAT"), LIMITS
    )
    assert out.channels == 2
    np.testing.assert_allclose(out.samples, left / 2, atol=1e-6)


@pytest.mark.parametrize("rate_hz", [8_000, 44_100, 192_000])
def test_any_accepted_rate_is_resampled_and_keeps_pitch(rate_hz: int) -> None:
    out = decode_upload(encode(tone(1.0, rate_hz), rate_hz), LIMITS)
    assert out.source_rate_hz == rate_hz
    assert len(out.samples) == pytest.approx(RATE_HZ, abs=2)
    assert abs(peak_hz(out.samples, RATE_HZ) - 440) <= 2


def test_silence_is_a_normal_result() -> None:
    out = decode_upload(encode(np.zeros(8000, np.float32), RATE_HZ), LIMITS)
    assert out.samples.dtype == np.float32 and not out.samples.any()


@pytest.mark.parametrize(
    "content_type", [None, "", "audio/wav", "audio/x-flac; rate=16000", "application/octet-stream"]
)
def test_audio_like_content_types_are_accepted(content_type: str | None) -> None:
    assert decode_upload(encode(tone(0.2, RATE_HZ), RATE_HZ), LIMITS, content_type).channels == 1


# --- what is refused, and why ------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"hello, this is plain text and not audio at all\n" * 4,
        b'{"audio": "base64..."}',
        b"\x89PNG\r\n\x1a\n" + bytes(200),
        np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes(),
        b"RIFF\x10\x00\x00\x00WEBPVP8 " + bytes(64),  # RIFF, but an image
    ],
    ids=["text", "json", "png", "random", "webp"],
)
def test_not_audio_is_415(data: bytes) -> None:
    assert status_of(data).startswith("415 body is not a recognised audio or video file")


@pytest.mark.parametrize("content_type", ["text/plain", "application/json", "image/png"])
def test_non_audio_content_type_is_415_even_for_good_audio(content_type: str) -> None:
    detail = status_of(encode(tone(0.2, RATE_HZ), RATE_HZ), content_type)
    assert detail.startswith("415 Content-Type") and content_type in detail


def test_audio_in_a_container_we_do_not_read_is_415() -> None:
    """Sun AU: FFmpeg could read it, but its demuxer is not among those enabled."""
    assert status_of(encode(tone(0.2, RATE_HZ), RATE_HZ, "AU")).startswith("415 ")


def test_truncated_wav_is_400() -> None:
    data = encode(tone(0.5, RATE_HZ), RATE_HZ)
    assert status_of(data[: len(data) // 2]).startswith("400 WAV data is truncated")
    assert status_of(data[:44]).startswith("400 WAV data is truncated")  # header, no data


@pytest.mark.parametrize("fmt", ["FLAC", "OGG"])
def test_truncated_flac_and_ogg_are_400(fmt: str) -> None:
    data = encode(tone(0.5, RATE_HZ), RATE_HZ, fmt, "VORBIS" if fmt == "OGG" else "PCM_16")
    for cut in (len(data) // 2, 60):
        assert status_of(data[:cut]).startswith("400 audio"), cut


def test_riff_wave_header_with_garbage_after_it_is_400() -> None:
    garbage = np.random.default_rng(1).integers(0, 256, 500, dtype=np.uint8).tobytes()
    assert status_of(b"RIFF\xf8\x01\x00\x00WAVE" + garbage).startswith("400 audio file is corrupt")


def test_empty_body_zero_samples_and_too_short_are_422() -> None:
    assert status_of(b"").startswith("422 request body is empty")
    assert status_of(encode(np.zeros(0, np.float32), RATE_HZ)).startswith("422 audio contains no")
    assert "at least 0.1 s" in status_of(encode(tone(0.05, RATE_HZ), RATE_HZ))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_samples_are_422(bad: float) -> None:
    samples = tone(0.5, RATE_HZ)
    samples[1234] = bad
    assert status_of(encode(samples, RATE_HZ, subtype="FLOAT")).startswith("422 audio contains NaN")


@pytest.mark.parametrize("rate_hz", [4_000, 200_000])
def test_rate_outside_the_accepted_range_is_422(rate_hz: int) -> None:
    assert status_of(encode(tone(0.5, rate_hz), rate_hz)).startswith(f"422 sample rate {rate_hz}")


def test_too_many_channels_is_422() -> None:
    assert status_of(encode(np.zeros((1600, 33), np.float32), RATE_HZ)).startswith(
        "422 33 channels"
    )


@pytest.mark.parametrize(("fmt", "subtype"), [("WAV", "PCM_16"), ("FLAC", "PCM_16")])
def test_too_long_is_413_from_the_header_without_decoding(
    fmt: str, subtype: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = encode(tone(3.0, 8_000), 8_000, fmt, subtype)

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("an over-long upload must be refused before decoding")

    monkeypatch.setattr(sf.SoundFile, "read", no_decoding)
    monkeypatch.setattr(sf, "read", no_decoding)
    assert status_of(data).startswith("413 audio is 3.00 s long; the limit is 2 s")


def test_errors_have_distinct_details() -> None:
    wav = encode(tone(0.5, RATE_HZ), RATE_HZ)
    details = {
        status_of(b"plain text"),
        status_of(wav, "text/plain"),
        status_of(wav[:1000]),
        status_of(b""),
        status_of(encode(tone(0.05, RATE_HZ), RATE_HZ)),
        status_of(encode(tone(3.0, RATE_HZ), RATE_HZ)),
        status_of(encode(tone(0.5, 4_000), 4_000)),
    }
    assert len(details) == 7


def test_limits_must_be_consistent() -> None:
    with pytest.raises(ValueError):
        audio_limits(sample_rate_hz=RATE_HZ, max_duration_s=0.05)  # below the 0.1 s minimum
    with pytest.raises(ValueError):
        audio_limits(sample_rate_hz=RATE_HZ, max_duration_s=1.0, min_input_rate_hz=0)


def test_module_imports_no_torch() -> None:
    code = "import sys, emodistill.audio_input; assert 'torch' not in sys.modules"
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True, timeout=60)


# --- fuzz: either a valid result or an AudioError, never anything else --------------

FUZZ_LIMITS = audio_limits(sample_rate_hz=RATE_HZ, max_duration_s=1.0)
FUZZ_SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
SMALL_WAVS = [
    encode(tone(0.2, 8_000), 8_000),
    encode(np.stack([tone(0.15, 11_025)] * 2, 1), 11_025, subtype="FLOAT"),
]


def assert_valid_or_refused(data: bytes) -> None:
    try:
        out = decode_upload(data, FUZZ_LIMITS)
    except AudioError as err:
        assert status(err) in {400, 413, 415, 422}
        assert str(err)
        return
    assert out.samples.dtype == np.float32 and out.samples.ndim == 1
    assert np.isfinite(out.samples).all()
    assert FUZZ_LIMITS.min_duration_s <= out.duration_s <= FUZZ_LIMITS.max_duration_s
    assert out.channels >= 1 and len(out.samples) > 0


@FUZZ_SETTINGS
@given(st.binary(max_size=2048))
def test_fuzz_random_bytes(data: bytes) -> None:
    assert_valid_or_refused(data)


@FUZZ_SETTINGS
@given(
    base=st.sampled_from(SMALL_WAVS),
    edits=st.lists(st.tuples(st.integers(0, 43), st.integers(0, 255)), max_size=6),
    cut=st.one_of(st.none(), st.integers(0, 4000)),
)
def test_fuzz_mutated_wav_headers(
    base: bytes, edits: list[tuple[int, int]], cut: int | None
) -> None:
    data = bytearray(base)
    for index, value in edits:
        data[index] = value
    assert_valid_or_refused(bytes(data if cut is None else data[:cut]))
