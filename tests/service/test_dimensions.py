"""Arousal, valence and dominance in every answer of a bundle that has them, and in none of
one that has not: /predict (per segment and aggregated), the v2 route's second tensor, the
model card, OpenAPI; a version-2 bundle answers byte for byte as before dimensions existed."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pydantic_core
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from emodistill.audio import pad_batch
from emodistill.bundle import (
    ATTENTION_MASK,
    DIMENSION_NAMES,
    INPUT_VALUES,
    METADATA,
    MODEL_FP32,
    load_bundle,
)
from emodistill.pipeline import Pipeline
from emodistill.runtime import make_session
from emodistill.scoring import probabilities
from service.app import create_app
from service.settings import Settings
from tests.service.conftest import wav_bytes

LABELS = ["neutral", "angry", "sad", "happy"]
WINDOWS = dict(segmentation="windows", window_s=2.0, hop_s=1.0, max_segment_s=2.0)


def client_for(bundle: Path, **settings) -> TestClient:
    return TestClient(create_app(Settings(model=bundle, warmup=False, **settings)))


def post_wav(client: TestClient, data: bytes):
    return client.post("/predict", content=data, headers={"content-type": "audio/wav"})


def test_predict_answers_dimensions_per_segment_and_duration_weighted(bundle_with_dimensions):
    with client_for(bundle_with_dimensions, **WINDOWS) as client:
        body = post_wav(client, wav_bytes(5.5)).json()
    assert list(body) == [
        "label",
        "probabilities",
        "dimensions",
        "duration_s",
        "speech_s",
        "segmentation",
        "segments",
        "model",
    ]
    assert list(body["dimensions"]) == list(DIMENSION_NAMES)
    segments = body["segments"]
    assert len(segments) == 5
    weights = np.array([s["end_s"] - s["start_s"] for s in segments])
    for name in DIMENSION_NAMES:
        values = np.array([s["dimensions"][name] for s in segments])
        assert ((values > 0) & (values < 1)).all()
        mean = float((weights * values).sum() / weights.sum())
        assert body["dimensions"][name] == pytest.approx(mean, abs=1e-6)
    card = body["model"]["dimensions"]
    assert card["names"] == list(DIMENSION_NAMES) and card["scale"] == [0.0, 1.0]


def test_dimensions_equal_the_graphs_own_output(bundle_with_dimensions):
    """The pipeline splits [C + 3] rows at the labels: the answer's dimensions are the ONNX
    graph's second output for the clip (1e-6, float32 through float64)."""
    samples = sf.read(io.BytesIO(wav_bytes(1.5)), dtype="float32")[0]
    values, mask = pad_batch([samples])
    session = make_session(bundle_with_dimensions / MODEL_FP32)
    logits, dims = session.run(None, {INPUT_VALUES: values, ATTENTION_MASK: mask})
    with client_for(bundle_with_dimensions) as client:
        body = post_wav(client, wav_bytes(1.5)).json()
    assert body["segments"] is None
    assert [body["dimensions"][n] for n in DIMENSION_NAMES] == pytest.approx(dims[0], abs=1e-6)
    temperature = 1.0  # the fixture has no calibration
    expected = probabilities(logits[0], temperature)
    assert [body["probabilities"][k] for k in LABELS] == pytest.approx(expected, abs=1e-6)


def test_v2_route_answers_a_second_tensor(bundle_with_dimensions):
    x = sf.read(io.BytesIO(wav_bytes(1.0)), dtype="float32")[0]
    request = {
        "inputs": [
            {
                "name": "audio",
                "shape": [2, len(x)],
                "datatype": "FP32",
                "data": [*x.tolist(), *x[::-1].tolist()],
            }
        ]
    }
    with client_for(bundle_with_dimensions) as client:
        meta = client.get("/v2/models/emodistill").json()
        answer = client.post("/v2/models/emodistill/infer", json=request).json()
        binary = client.post(
            "/v2/models/emodistill/infer",
            json={**request, "parameters": {"binary_data_output": True}},
        )
        one = post_wav(client, wav_bytes(1.0)).json()
    assert [o["name"] for o in meta["outputs"]] == ["probabilities", "dimensions"]
    assert meta["outputs"][1]["shape"] == [-1, 3]
    assert meta["parameters"]["dimensions"]["names"] == list(DIMENSION_NAMES)
    probs, dims = answer["outputs"]
    assert dims["name"] == "dimensions" and dims["shape"] == [2, 3]
    assert answer["parameters"]["dimensions"] == list(DIMENSION_NAMES)
    assert dims["data"][:3] == pytest.approx([one["dimensions"][n] for n in DIMENSION_NAMES])
    # Binary: the two tensors one after the other, each with its size.
    length = int(binary.headers["Inference-Header-Content-Length"])
    header = json.loads(binary.content[:length])
    sizes = [o["parameters"]["binary_data_size"] for o in header["outputs"]]
    assert sizes == [2 * 4 * 4, 2 * 3 * 4]
    tail = np.frombuffer(binary.content[length + sizes[0] :], "<f4")
    assert tail.tolist() == pytest.approx(dims["data"], abs=0)
    assert np.frombuffer(binary.content[length : length + sizes[0]], "<f4").tolist() == (
        pytest.approx(probs["data"], abs=0)
    )


def test_openapi_documents_the_field(bundle_with_dimensions):
    with client_for(bundle_with_dimensions) as client:
        schemas = client.get("/openapi.json").json()["components"]["schemas"]
    for model in ("Prediction", "Segment"):
        field = schemas[model]["properties"]["dimensions"]
        assert "arousal" in field["description"].lower()
        assert {"$ref": "#/components/schemas/Dimensions"} in field["anyOf"]
    assert set(schemas["Dimensions"]["properties"]) == set(DIMENSION_NAMES)
    assert "dimensions" in schemas["ModelCard"]["properties"]


@pytest.fixture
def version_2_bundle(bundle: Path, tmp_path: Path) -> Path:
    """The session's categories-only bundle, its bundle.json as version 2 wrote it."""
    old = tmp_path / "v2"
    shutil.copytree(bundle, old)
    data = json.loads((old / METADATA).read_text())
    del data["dimensions"]
    data["bundle_version"] = 2
    (old / METADATA).write_text(json.dumps(data, indent=2))
    return old


def test_a_version_2_bundle_answers_byte_for_byte_as_before(version_2_bundle, bundle):
    """Keys, their order and every value as before dimensions existed, down to the bytes:
    the expected JSON is built here from the graph's own logits, not from the service."""
    metadata = load_bundle(version_2_bundle)
    assert metadata.bundle_version == 2 and metadata.dimensions is None
    # The samples as the service decodes them (the half before the model, unchanged here).
    samples = Pipeline(metadata).prepare(wav_bytes(1.5)).samples
    values, mask = pad_batch([samples])
    outputs = make_session(version_2_bundle / MODEL_FP32).run(
        None, {INPUT_VALUES: values, ATTENTION_MASK: mask}
    )
    assert len(outputs) == 1  # categories only
    # The answer is the duration-weighted mean over its spans: one span of len(samples), whose
    # weighting (p * n / n) can move the last bit, so the expectation weighs the same way.
    n = float(len(samples))
    probs = probabilities(outputs[0][0]) * n / n
    with client_for(version_2_bundle) as client:
        raw = post_wav(client, wav_bytes(1.5))
        meta = client.get("/v2/models/emodistill").json()
    body = raw.json()
    expected = {
        "label": LABELS[int(probs.argmax())],
        "probabilities": {k: float(p) for k, p in zip(LABELS, probs, strict=True)},
        "duration_s": body["duration_s"],
        "speech_s": None,
        "segmentation": "whole",
        "segments": None,
        "model": {
            "name": "emodistill",
            "version": "1",
            "calibrated": False,
            "trained_on": None,
            "note": None,
        },
    }
    # Serialised as the service serialises any response (pydantic-core's float formatting).
    assert raw.content == pydantic_core.to_json(expected)
    assert b"dimensions" not in raw.content
    assert [o["name"] for o in meta["outputs"]] == ["probabilities"]
    assert "dimensions" not in meta["parameters"]
    # The same model declared as version 3 without dimensions answers the same bytes.
    with client_for(bundle) as client:
        assert post_wav(client, wav_bytes(1.5)).content == raw.content


# --- a dimensions-only bundle: no label, no probabilities, in every answer --------------------


def test_a_dimensions_only_bundle_answers_dimensions_alone(dimensions_only_bundle):
    """/predict, per segment too: the graph's one output, and no category keys at all."""
    samples = sf.read(io.BytesIO(wav_bytes(1.5)), dtype="float32")[0]
    values, mask = pad_batch([samples])
    [dims] = make_session(dimensions_only_bundle / MODEL_FP32).run(
        None, {INPUT_VALUES: values, ATTENTION_MASK: mask}
    )
    with client_for(dimensions_only_bundle, **WINDOWS) as client:
        one = post_wav(client, wav_bytes(1.5)).json()
        long = post_wav(client, wav_bytes(5.5)).json()
    assert list(one) == [
        "dimensions",
        "duration_s",
        "speech_s",
        "segmentation",
        "segments",
        "model",
    ]
    assert [one["dimensions"][n] for n in DIMENSION_NAMES] == pytest.approx(dims[0], abs=1e-6)
    assert len(long["segments"]) == 5
    for segment in long["segments"]:
        assert list(segment) == ["start_s", "end_s", "dimensions"]
    assert one["model"]["dimensions"]["names"] == list(DIMENSION_NAMES)


def test_a_dimensions_only_bundle_has_one_v2_tensor(dimensions_only_bundle):
    x = sf.read(io.BytesIO(wav_bytes(1.0)), dtype="float32")[0]
    request = {"inputs": [{"name": "audio", "shape": [1, len(x)], "datatype": "FP32",
                           "data": x.tolist()}]}  # fmt: skip
    with client_for(dimensions_only_bundle) as client:
        meta = client.get("/v2/models/emodistill").json()
        answer = client.post("/v2/models/emodistill/infer", json=request).json()
        one = post_wav(client, wav_bytes(1.0)).json()
    assert [o["name"] for o in meta["outputs"]] == ["dimensions"]
    assert meta["parameters"]["labels"] == []
    [dims] = answer["outputs"]
    assert dims["name"] == "dimensions" and dims["shape"] == [1, 3]
    assert dims["data"] == pytest.approx([one["dimensions"][n] for n in DIMENSION_NAMES])


def test_the_schemas_say_category_keys_may_be_absent(bundle_with_dimensions):
    with client_for(bundle_with_dimensions) as client:
        schemas = client.get("/openapi.json").json()["components"]["schemas"]
    for model in ("Prediction", "Segment"):
        assert not {"label", "probabilities"} & set(schemas[model].get("required", []))
        assert "dimensions-only" in schemas[model]["properties"]["label"]["description"]
