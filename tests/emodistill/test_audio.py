"""The one audio loader: formats, rates, channels, errors."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emodistill.audio import SAMPLE_RATE_HZ, duration_s, load_audio
from emodistill.errors import AudioError, CorruptAudioError, NotAudioError
from tests.conftest import AUDIO_FORMATS, tone


def dominant_hz(x: np.ndarray, rate_hz: int) -> float:
    spectrum = np.abs(np.fft.rfft(x))
    return float(np.argmax(spectrum) * rate_hz / len(x))


@pytest.mark.parametrize(("fmt", "subtype"), AUDIO_FORMATS)
@pytest.mark.parametrize("rate_hz", [8_000, 44_100, 192_000])
def test_every_format_and_rate_becomes_16khz_mono_float32(tmp_path, fmt, subtype, rate_hz):
    stereo = np.stack([tone(1.0, rate_hz), tone(1.0, rate_hz)], axis=1)
    path = tmp_path / f"a.{fmt.lower()}"
    sf.write(str(path), stereo, rate_hz, format=fmt, subtype=subtype)

    x = load_audio(path)

    assert x.dtype == np.float32 and x.ndim == 1
    # 1 s at 16 kHz, give or take the filter edge; FFmpeg trims Vorbis to its block, not to
    # the last sample (up to 24 ms more at 8 kHz).
    slack = 2 if subtype != "VORBIS" else 0.03 * SAMPLE_RATE_HZ
    assert abs(len(x) - SAMPLE_RATE_HZ) <= slack
    assert dominant_hz(x, SAMPLE_RATE_HZ) == pytest.approx(440.0, abs=2.0)
    assert 0.3 < np.abs(x).max() < 0.6  # the tone was at half scale


def test_channels_are_averaged(tmp_path):
    left, right = tone(0.5), np.zeros(8000, dtype=np.float32)
    path = tmp_path / "lr.wav"
    sf.write(str(path), np.stack([left, right], axis=1), SAMPLE_RATE_HZ, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(path), left / 2, atol=1e-7)


def test_bytes_file_objects_and_paths_agree(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(str(path), tone(0.3), SAMPLE_RATE_HZ)
    from_path = load_audio(path)
    np.testing.assert_array_equal(load_audio(path.read_bytes()), from_path)
    np.testing.assert_array_equal(load_audio(io.BytesIO(path.read_bytes())), from_path)
    np.testing.assert_array_equal(load_audio(str(path)), from_path)
    assert duration_s(path) == pytest.approx(0.3, abs=1e-4)


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"", NotAudioError),
        (b"not audio at all", NotAudioError),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", CorruptAudioError),
    ],
)
def test_undecodable_input_raises_what_went_wrong(payload: bytes, error: type[AudioError]):
    with pytest.raises(error, match="audio"):
        load_audio(payload)


def test_missing_file_raises_os_error(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        load_audio(tmp_path / "nope.wav")
