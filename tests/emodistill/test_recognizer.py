"""The Python API answers what the service answers, alone or batched, without a server."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from fastapi.testclient import TestClient

import emodistill
from emodistill.audio_input import AudioInputError
from service.app import create_app
from service.settings import Settings
from tests.service.conftest import wav_bytes

BATCH_TOLERANCE = 1e-5  # the batch-invariant graph; BLAS may round differently by batch size


@pytest.fixture(scope="module")
def rec(bundle):
    return emodistill.load(bundle, device="cpu")


def test_predict_is_the_services_answer_bit_for_bit(bundle, rec, tmp_path):
    clip = wav_bytes(2.3)
    (tmp_path / "clip.wav").write_bytes(clip)
    with TestClient(create_app(Settings(model=bundle, device="cpu", warmup=False))) as client:
        served = client.post("/predict", content=clip, headers={"content-type": "audio/wav"})
    assert served.status_code == 200
    assert rec.predict(tmp_path / "clip.wav") == served.json()
    assert rec.predict(clip) == served.json()


def test_long_audio_has_segments_and_predict_many_equals_each_alone(rec):
    clips = [wav_bytes(s, freq_hz=f) for s, f in ((0.7, 200), (23.0, 260), (4.0, 330))]
    together = rec.predict_many(clips)
    alone = [rec.predict(c) for c in clips]
    assert together[1]["segments"] and len(together[1]["segments"]) == 4
    for a, b in zip(together, alone, strict=True):
        assert a["label"] == b["label"] and a["duration_s"] == b["duration_s"]
        diff = max(abs(a["probabilities"][k] - b["probabilities"][k]) for k in rec.labels)
        assert diff <= BATCH_TOLERANCE


def test_arrays_at_the_bundles_rate_and_bad_input(rec):
    samples = (0.3 * np.sin(np.arange(16_000) * 0.05)).astype(np.float32)
    assert set(rec.predict(samples)["probabilities"]) == set(rec.labels)
    with pytest.raises(AudioInputError) as err:
        rec.predict(b"not audio at all")
    assert err.value.status_code == 415


def test_the_runtime_needs_no_torch_and_import_is_light():
    code = (
        "import sys, emodistill, emodistill.audio; light = 'onnxruntime' not in sys.modules; "
        "import emodistill.recognizer; print(light, 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["True", "False"]
