"""The v2 routes as the Open Inference Protocol's own client sees them (tritonclient[http])."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from service.app import create_app
from service.settings import Settings
from tests.service.conftest import serving

KEY = "s3cret"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def server(bundle):
    with serving(create_app(Settings(model=bundle, api_key=KEY, warmup=False))) as url:
        yield triton.InferenceServerClient(url.removeprefix("http://"))


def _tone(seconds: float, freq_hz: float) -> np.ndarray:
    t = np.arange(int(seconds * 16_000)) / 16_000
    return (0.3 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def _infer(client, clips: np.ndarray, binary_in: bool, binary_out: bool) -> np.ndarray:
    audio = triton.InferInput("audio", list(clips.shape), "FP32")
    audio.set_data_from_numpy(clips, binary_data=binary_in)
    wanted = triton.InferRequestedOutput("probabilities", binary_data=binary_out)
    # tritonclient writes its own headers into the dict it is given: a fresh one each call.
    result = client.infer("emodistill", [audio], outputs=[wanted], headers=dict(AUTH))
    return result.as_numpy("probabilities")


def test_health_server_and_model_metadata(server):
    assert server.is_server_live() and server.is_server_ready()
    assert server.is_model_ready("emodistill", headers=dict(AUTH))  # it names the model
    assert not server.is_model_ready("emodistill")  # 401 without the key
    assert server.get_server_metadata()["extensions"] == ["binary_tensor_data"]
    meta = server.get_model_metadata("emodistill", headers=dict(AUTH))
    assert meta["name"] == "emodistill" and meta["outputs"][0]["name"] == "probabilities"


@pytest.mark.parametrize("binary_in, binary_out", [(True, True), (False, False), (True, False)])
def test_infer_in_every_encoding_gives_the_same_probabilities(server, binary_in, binary_out):
    clips = np.stack([_tone(1.0, 220.0), _tone(1.0, 330.0)])
    probs = _infer(server, clips, binary_in, binary_out)
    reference = _infer(server, clips, binary_in=False, binary_out=False)
    assert probs.shape == (2, 4) and probs.dtype == np.float32
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert np.array_equal(probs, reference)  # the same float32 either way


def test_errors_reach_the_client_as_the_protocol_words_them(server):
    with pytest.raises(InferenceServerException, match="missing or wrong API key"):
        _infer_without_key(server)
    with pytest.raises(InferenceServerException, match=r"shorter than 0\.1 s"):
        _infer(server, np.zeros((1, 100), np.float32), binary_in=True, binary_out=True)


def _infer_without_key(client) -> None:
    audio = triton.InferInput("audio", [1, 16_000], "FP32")
    audio.set_data_from_numpy(np.zeros((1, 16_000), np.float32))
    client.infer("emodistill", [audio])


def test_a_bundle_with_dimensions_answers_both_tensors_to_tritons_client(bundle_with_dimensions):
    app = create_app(Settings(model=bundle_with_dimensions, warmup=False))
    with serving(app) as url:
        client = triton.InferenceServerClient(url.removeprefix("http://"))
        meta = client.get_model_metadata("emodistill")
        assert [o["name"] for o in meta["outputs"]] == ["probabilities", "dimensions"]
        clips = np.stack([_tone(1.0, 220.0), _tone(1.0, 330.0)])
        audio = triton.InferInput("audio", list(clips.shape), "FP32")
        audio.set_data_from_numpy(clips, binary_data=True)
        for binary in (True, False):
            wanted = [
                triton.InferRequestedOutput(name, binary_data=binary)
                for name in ("probabilities", "dimensions")
            ]
            result = client.infer("emodistill", [audio], outputs=wanted)
            probs, dims = result.as_numpy("probabilities"), result.as_numpy("dimensions")
            assert probs.shape == (2, 4) and dims.shape == (2, 3) and dims.dtype == np.float32
            assert ((dims > 0) & (dims < 1)).all()
