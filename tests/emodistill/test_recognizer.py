"""The Python API answers what the service answers, alone or batched, without a server."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from fastapi.testclient import TestClient

import emodistill
from emodistill.audio import load_audio, write_wav
from emodistill.errors import NotAudioError
from emodistill.options import InferenceOptions
from emodistill.prediction import Prediction
from emodistill.recognizer import PROBE_CALL_S, padding_for
from emodistill.runtime import OnnxBackend
from emodistill.scoring import probabilities
from emodistill.streams import STREAM_BATCH_AUDIO_S, STREAM_MAX_CALL_S
from service.app import create_app
from service.settings import Settings
from tests.emodistill.test_segments import make_conversation
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
    answer = rec.predict(tmp_path / "clip.wav")
    assert isinstance(answer, Prediction)
    assert answer.model_dump() == served.json()
    assert served.content == answer.model_dump_json().encode()  # the JSON is its serialisation
    assert rec.predict(clip).model_dump() == served.json()


def test_long_audio_has_segments_and_predict_many_equals_each_alone(rec):
    clips = [wav_bytes(s, freq_hz=f) for s, f in ((0.7, 200), (23.0, 260), (4.0, 330))]
    together = [a.model_dump() for a in rec.predict_many(clips)]
    alone = [rec.predict(c).model_dump() for c in clips]
    assert together[1]["segments"] and len(together[1]["segments"]) == 4
    for a, b in zip(together, alone, strict=True):
        assert a["label"] == b["label"] and a["duration_s"] == b["duration_s"]
        diff = max(abs(a["probabilities"][k] - b["probabilities"][k]) for k in rec.labels)
        assert diff <= BATCH_TOLERANCE


def test_arrays_at_the_bundles_rate_and_bad_input(rec):
    samples = (0.3 * np.sin(np.arange(16_000) * 0.05)).astype(np.float32)
    assert set(rec.predict(samples).probabilities) == set(rec.labels)
    with pytest.raises(NotAudioError, match="not a recognised audio"):
        rec.predict(b"not audio at all")


def test_the_runtime_needs_no_torch_and_import_is_light():
    code = (
        "import sys, emodistill, emodistill.audio; light = 'onnxruntime' not in sys.modules; "
        "import emodistill.recognizer; print(light, 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["True", "False"]


def test_calibrated_speech_segments_are_the_services_answer_too(bundle, tmp_path, require_espeak):
    """A long recording: cut where the speakers pause, each utterance's probabilities divided
    by the bundle's temperature, the card in the model block; the service answers the same."""
    calibrated = tmp_path / "bundle"
    shutil.copytree(bundle, calibrated)
    meta = json.loads((calibrated / "bundle.json").read_text())
    meta["calibration"] = {
        "temperature": 2.0,
        "fitted_on": "test",
        "clips": 10,
        "bins": 15,
        "ece_before": 0.2,
        "ece_after": 0.05,
        "nll_before": 1.3,
        "nll_after": 1.1,
    }
    meta["note"] = "a test model"
    (calibrated / "bundle.json").write_text(json.dumps(meta))  # not among the hashed files
    audio, truth = make_conversation()
    write_wav(tmp_path / "talk.wav", audio)

    rec = emodistill.load(calibrated, device="cpu")
    answer = rec.predict(tmp_path / "talk.wav").model_dump()
    with TestClient(create_app(Settings(model=calibrated, device="cpu", warmup=False))) as client:
        served = client.post(
            "/predict",
            content=(tmp_path / "talk.wav").read_bytes(),
            headers={"content-type": "audio/wav"},
        )
    assert served.status_code == 200 and served.json() == answer
    assert answer["segmentation"] == "speech" and len(answer["segments"]) == len(truth)
    assert 0 < answer["speech_s"] < answer["duration_s"]
    assert answer["model"]["calibrated"] and answer["model"]["note"] == "a test model"
    first = answer["segments"][0]
    start, end = round(first["start_s"] * 16_000), round(first["end_s"] * 16_000)
    decoded = load_audio(tmp_path / "talk.wav")  # what the recognizer decoded
    logits = rec.backend.infer([decoded[start:end]])[0]
    expected = probabilities(logits, 2.0)
    got = np.array([first["probabilities"][label] for label in rec.labels])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert not np.allclose(got, probabilities(logits, 1.0), atol=1e-4)  # T made a difference


def test_with_dimensions_the_python_api_is_the_services_answer(bundle_with_dimensions):
    """Prediction.dimensions (and each segment's) from the Python API, bit for bit what
    /predict answers; batched with other inputs as alone (BATCH_TOLERANCE)."""
    windows = dict(segmentation="windows", window_s=2.0, hop_s=1.0, max_segment_s=2.0)
    with_dims = emodistill.load(bundle_with_dimensions, device="cpu", **windows)
    clip = wav_bytes(5.5)
    settings = Settings(model=bundle_with_dimensions, device="cpu", warmup=False, **windows)
    with TestClient(create_app(settings)) as client:
        served = client.post("/predict", content=clip, headers={"content-type": "audio/wav"})
    answer = with_dims.predict(clip)
    assert answer.dimensions is not None and answer.segments
    assert all(s.dimensions is not None for s in answer.segments)
    assert served.content == answer.model_dump_json().encode()
    alone = with_dims.predict(wav_bytes(1.2))
    together = with_dims.predict_many([wav_bytes(3.3), wav_bytes(1.2)])[1]
    assert alone.dimensions is not None and together.dimensions is not None
    for name in ("arousal", "valence", "dominance"):
        a, b = getattr(alone.dimensions, name), getattr(together.dimensions, name)
        assert a == pytest.approx(b, abs=BATCH_TOLERANCE)


def test_scoring_splits_logits_from_dimensions_and_weights_by_duration():
    """combine() on hand-made rows [C + D]: probabilities from the first C, dimensions from
    the rest, both the duration-weighted mean of the spans (two spans, 1 s and 3 s)."""
    from emodistill.scoring import combine
    from emodistill.segments import ClipPlan

    plan = ClipPlan(mode="windows", spans=[(0, 16_000), (16_000, 64_000)], speech_s=None)
    rows = [np.array([0.0, 1.0, 0.2, 0.4, 0.6]), np.array([1.0, 0.0, 0.6, 0.8, 1.0])]
    dims = ["arousal", "valence", "dominance"]
    [answer] = combine([plan], rows, ["a", "b"], 16_000, 1.0, dims)
    assert answer["dimensions"] == pytest.approx({"arousal": 0.5, "valence": 0.7, "dominance": 0.9})
    assert answer["segments"][0]["dimensions"] == pytest.approx(
        dict(zip(dims, [0.2, 0.4, 0.6], strict=True))
    )
    p0, p1 = probabilities(rows[0][:2]), probabilities(rows[1][:2])
    assert answer["probabilities"]["a"] == pytest.approx((p0[0] + 3 * p1[0]) / 4, abs=1e-12)
    [plain] = combine([plan], [r[:2] for r in rows], ["a", "b"], 16_000)
    assert plain["dimensions"] is None and plain["probabilities"] == answer["probabilities"]


def test_a_dimensions_only_bundle_answers_dimensions_alone(dimensions_only_bundle):
    """No label and no probabilities (None, and absent from the dict), the dimensions as the
    service answers them, bit for bit."""
    rec = emodistill.load(dimensions_only_bundle, device="cpu")
    assert rec.labels == [] and rec.dimensions == ["arousal", "valence", "dominance"]
    clip = wav_bytes(1.5)
    answer = rec.predict(clip)
    assert answer.label is None and answer.probabilities is None
    assert answer.dimensions is not None
    assert "label" not in answer.model_dump() and "probabilities" not in answer.model_dump()
    settings = Settings(model=dimensions_only_bundle, device="cpu", warmup=False)
    with TestClient(create_app(settings)) as client:
        served = client.post("/predict", content=clip, headers={"content-type": "audio/wav"})
    assert served.content == answer.model_dump_json().encode()


def _slow_calls(monkeypatch, seconds_per_audio_s: float) -> list[float]:
    """Every OnnxBackend.warm_up takes `seconds_per_audio_s` per second of its audio; returns
    the lengths it was asked for."""
    asked: list[float] = []

    def warm_up(self, batch_size: int, seconds: float) -> float:
        asked.append(seconds)
        return seconds_per_audio_s * seconds

    monkeypatch.setattr(OnnxBackend, "warm_up", warm_up)
    return asked


def test_a_model_that_holds_the_cores_batches_without_padding(bundle, monkeypatch):
    """load() times a short call: where a 24 s call would take ≥ STREAM_MAX_CALL_S on every
    core (HuBERT-base: about 2 s), clips batch with equal lengths only, as the service does,
    and predict_many then answers what predict answers, bit for bit."""
    asked = _slow_calls(monkeypatch, 0.1)  # a 24 s call: 2.4 s
    heavy = emodistill.load(bundle, device="cpu")
    assert heavy.options.max_batch_padding == 0.0 and asked == [PROBE_CALL_S] * 2
    clips = [wav_bytes(s, freq_hz=f) for s, f in ((1.0, 200), (1.05, 300), (2.0, 250))]
    together = [a.model_dump() for a in heavy.predict_many(clips)]
    assert together == [heavy.predict(c).model_dump() for c in clips]
    _slow_calls(monkeypatch, 0.99 * STREAM_MAX_CALL_S / STREAM_BATCH_AUDIO_S)  # just below
    assert emodistill.load(bundle, device="cpu").options.max_batch_padding == 0.1


def test_a_padding_the_caller_gives_is_kept_and_only_the_cpu_is_timed(bundle, monkeypatch):
    asked = _slow_calls(monkeypatch, 0.1)
    given_by_name = emodistill.load(bundle, device="cpu", max_batch_padding=0.2)
    assert given_by_name.options.max_batch_padding == 0.2
    given = InferenceOptions(max_batch_padding=0.3)
    both = emodistill.load(bundle, device="cpu", options=given, max_batch_size=8).options
    assert (both.max_batch_padding, both.max_batch_size) == (0.3, 8)
    assert asked == []  # nothing to decide: no timing call
    left = emodistill.load(bundle, device="cpu", options=InferenceOptions(), max_batch_size=8)
    assert left.options.max_batch_padding == 0.0  # left to its default, so decided

    class OnTheGpu:
        provider = "CUDAExecutionProvider"

        def warm_up(self, batch_size: int, seconds: float) -> float:
            raise AssertionError("a GPU's calls are not timed: batching pays there")

    assert padding_for(OnTheGpu(), InferenceOptions()).max_batch_padding == 0.1  # type: ignore[arg-type]
