"""eGeMAPS LLDs: shape, frame rate, and the content-addressed cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_tone
from training import features
from training.features import (
    EGEMAPS_LLD_COUNT,
    EgemapsCache,
    cache_key,
    extract_all,
    feature_names,
)


def test_lld_shape_is_25_per_10ms_frame(tmp_path: Path):
    wav = write_tone(tmp_path / "a.wav", seconds=1.0)
    lld, hit = EgemapsCache(tmp_path / "cache").load_or_extract(wav)
    assert not hit
    assert lld.dtype == np.float32 and lld.shape[1] == EGEMAPS_LLD_COUNT == len(feature_names())
    assert abs(lld.shape[0] - 100) <= 5  # 1 s at a 10 ms hop, openSMILE trims the edges
    assert "Loudness_sma3" in feature_names() and "F0semitoneFrom27.5Hz_sma3nz" in feature_names()


def test_second_extraction_reads_the_cache(tmp_path: Path, monkeypatch):
    wavs = [write_tone(tmp_path / f"{i}.wav", seconds=0.3 + 0.1 * i) for i in range(3)]
    cache = EgemapsCache(tmp_path / "cache")
    calls: list[int] = []
    real = features.extract_lld
    monkeypatch.setattr(features, "extract_lld", lambda x, *a: calls.append(1) or real(x, *a))

    first = extract_all(wavs, cache, workers=1, progress=False)
    second = extract_all(wavs, cache, workers=1, progress=False)

    assert (first.cache_hits, len(calls)) == (0, 3)
    assert second.cache_hits == 3 and len(calls) == 3  # nothing extracted the second time
    assert second.audio_s == pytest.approx(first.audio_s)
    np.testing.assert_array_equal(
        cache.get(wavs[1]), features.extract_lld(features.load_audio(wavs[1]))
    )


def test_key_follows_content_not_name(tmp_path: Path):
    a = write_tone(tmp_path / "a.wav", seconds=0.4)
    copy = tmp_path / "renamed.wav"
    shutil.copy(a, copy)
    other = write_tone(tmp_path / "b.wav", seconds=0.5)
    assert cache_key(a) == cache_key(copy) != cache_key(other)
    assert features.FEATURE_VERSION.startswith("eGeMAPSv02-LLD/opensmile-")


def test_parallel_extraction_fills_the_same_cache(tmp_path: Path):
    wavs = [write_tone(tmp_path / f"{i}.wav", seconds=0.3 + 0.05 * i) for i in range(4)]
    cache = EgemapsCache(tmp_path / "cache")
    stats = extract_all(wavs, cache, workers=2, progress=False)
    assert stats.utterances == 4 and stats.cache_hits == 0 and stats.audio_s_per_s > 0
    assert all(cache.get(w) is not None for w in wavs)
    assert "audio-seconds per second" in str(stats)
