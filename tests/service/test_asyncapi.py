"""docs/asyncapi.yaml (served at GET /asyncapi.yaml) says what the code does: every event type
emodistill.live can send and no other, each payload's fields, types and bounds as the pydantic
models have them, the error codes and close codes service/stream.py uses, the limits it sends.
Fast: no model, no server (the route is read without the lifespan)."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from fastapi.testclient import TestClient
from pydantic import BaseModel

from emodistill import live
from emodistill.bundle import TrainingData
from emodistill.prediction import OUTPUT_KEYS, ModelCard, Prediction, Segment
from service import stream

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "docs" / "asyncapi.yaml"

# The document's schema components and the models they write out.
MODELS: dict[str, type[BaseModel]] = {
    "StreamConfig": live.StreamConfig,
    "SessionStarted": live.SessionStarted,
    "UtteranceStart": live.UtteranceStart,
    "Interim": live.Interim,
    "UtteranceEnd": live.UtteranceEnd,
    "SessionEnded": live.SessionEnded,
    "StreamError": live.StreamError,
    "Prediction": Prediction,
    "Segment": Segment,
    "ModelCard": ModelCard,
    "TrainingData": TrainingData,
}
CLIENT_MODEL = "StreamConfig"  # parsed from the client; every other one is sent
# The model says `str`; the document lists the codes service/stream.py uses (checked below).
NARROWED = {("StreamError", "code")}
BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "enum", "const")


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return yaml.safe_load(DOCUMENT.read_text())


def resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follows local `$ref`s ("#/a/b/c") to a node without one."""
    while "$ref" in node:
        target: Any = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def operation_payloads(doc: dict[str, Any], action: str) -> list[dict[str, Any]]:
    """The payload schema of every message of the operations with `action` (send: events)."""
    payloads = []
    for operation in doc["operations"].values():
        if operation["action"] == action:
            for message in operation["messages"]:
                payloads.append(resolve(doc, resolve(doc, message)["payload"]))
    return payloads


def json_types(schema: dict[str, Any], defs: dict[str, Any]) -> frozenset[str]:
    """The JSON types a schema admits, from pydantic's form (anyOf, $ref into $defs) or the
    document's (type lists, oneOf, $ref into components): objects by name where named."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return frozenset({f"object:{name}"} if name in MODELS else json_types(defs[name], defs))
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return frozenset().union(*(json_types(s, defs) for s in schema[key]))
    kind = schema.get("type")
    kinds = frozenset(kind if isinstance(kind, list) else [kind])
    if "array" in kinds:
        items = "|".join(sorted(json_types(schema["items"], defs)))
        return kinds - {"array"} | {f"array of {items}"}
    return kinds


def bounds(schema: dict[str, Any]) -> dict[str, Any]:
    """minimum, enum, ... of a field, from anyOf's non-null branch too (null left out)."""
    found = {k: v for k, v in schema.items() if k in BOUNDS}
    for branch in schema.get("anyOf", []):
        found |= {k: v for k, v in branch.items() if k in BOUNDS}
    if "enum" in found:
        found["enum"] = sorted(v for v in found["enum"] if v is not None)
    return found


def source_strings(pattern: str, module: object) -> set[str]:
    return set(re.findall(pattern, inspect.getsource(module)))  # type: ignore[arg-type]


# --- event types and client messages --------------------------------------------------------


def test_the_event_types_are_the_ones_the_code_sends(doc):
    union = {m.model_fields["type"].default for m in get_args(get_args(live.Event)[0])}
    # Every `type: Literal["x"] = "x"` in live.py, so an event class left out of the union
    # still counts; the client's config is the one that is not sent.
    declared = source_strings(r'type: Literal\["([\w.]+)"\] = "\1"', live) - {"config"}
    documented = {p["properties"]["type"]["const"] for p in operation_payloads(doc, "send")}
    assert union == declared == documented
    assert documented == {"session.started", "utterance.start", "interim", "utterance.end",
                          "session.ended", "error"}  # fmt: skip


def test_the_client_messages_are_the_ones_the_route_reads(doc):
    read = source_strings(r'_message_type\(message.get\("text"\)\) == "(\w+)"', stream)
    documented = operation_payloads(doc, "receive")
    json_types_sent = {p["properties"]["type"]["const"] for p in documented if "properties" in p}
    assert json_types_sent == read | {live.StreamConfig.model_fields["type"].default}
    assert {"type": "string", "format": "binary"} in documented  # the audio frames


# --- payloads ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MODELS))
def test_each_payload_has_the_models_fields_types_and_bounds(doc, name):
    ours = doc["components"]["schemas"][name]
    theirs = MODELS[name].model_json_schema(mode="serialization")
    defs = theirs.get("$defs", {})
    assert set(ours["properties"]) == set(theirs["properties"])
    if name == CLIENT_MODEL:  # every field has a default; the document asks for `type`
        assert set(theirs.get("required", [])) <= {"type"} == set(ours["required"])
        assert ours["additionalProperties"] is False  # extra="forbid": unknown fields are errors
    else:  # sent with model_dump_json(): every field present, null where the type allows,
        # but an output the bundle lacks, whose key is left out (prediction.OUTPUT_KEYS)
        absent_when_none = set(OUTPUT_KEYS)
        assert set(ours["required"]) == set(theirs["properties"]) - absent_when_none
    for field, schema in theirs["properties"].items():
        mine = ours["properties"][field]
        assert json_types(mine, doc["components"]["schemas"]) == json_types(schema, defs), field
        if (name, field) not in NARROWED:
            assert bounds(mine) == bounds(schema), field
        if name == CLIENT_MODEL and field != "type":  # what a field left out means
            assert mine["default"] == schema["default"], field


def test_the_limits_are_the_ones_the_route_sends(doc):
    tree = ast.parse(inspect.getsource(stream))
    sent = [
        {key.value for key in node.value.keys if isinstance(key, ast.Constant)}
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and [getattr(t, "id", None) for t in node.targets] == ["limits"]
        and isinstance(node.value, ast.Dict)
    ]
    limits = doc["components"]["schemas"]["Limits"]
    assert sent == [set(limits["properties"])] and set(limits["required"]) == sent[0]


def test_the_error_codes_are_the_ones_the_route_uses(doc):
    used = source_strings(r'(?:_Violation|self\._error)\(\s*"(\w+)"', stream)
    documented = doc["components"]["schemas"]["StreamError"]["properties"]["code"]["enum"]
    assert len(used) >= 10 and set(documented) == used


def test_every_close_code_the_route_uses_is_documented(doc):
    used = {
        value
        for name, value in vars(stream).items()
        if name.isupper() and isinstance(value, int) and 1000 <= value < 5000
    }
    documented = [c["code"] for c in doc["channels"]["stream"]["x-close-codes"]]
    assert len(documented) == len(set(documented))
    assert set(documented) == used and {1000, 1001, 4400, 4408, 4413} <= used


def test_the_auth_is_the_header_or_the_subprotocol(doc):
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearerHeader"]["scheme"] == "bearer"
    assert schemes["bearerSubprotocol"]["name"] == "Sec-WebSocket-Protocol"
    assert stream.KEY_PREFIX + "KEY" in schemes["bearerSubprotocol"]["description"]
    assert stream.SUBPROTOCOL in doc["channels"]["stream"]["description"]


# --- served ------------------------------------------------------------------------------------


def test_the_service_serves_it_without_a_key_and_openapi_points_to_it(doc, tmp_path):
    from service.app import create_app
    from service.settings import Settings

    client = TestClient(create_app(Settings(model=tmp_path, api_key="s3cret")))  # no lifespan
    served = client.get("/asyncapi.yaml")
    assert served.status_code == 200
    assert served.headers["content-type"].startswith("application/yaml")
    assert yaml.safe_load(served.content) == doc
    described = client.get("/openapi.json").json()["paths"]["/asyncapi.yaml"]["get"]
    assert "WS /stream" in described["description"]
