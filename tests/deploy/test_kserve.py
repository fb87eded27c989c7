"""deploy/kserve/: the InferenceService manifests validate against KServe's API schema (vendored
from the kserve package, deploy/kserve/schema/) with Kubernetes' own types inside it, strictly
(no unknown field), and the custom predictor agrees with the service it runs."""

from __future__ import annotations

import copy
import importlib.resources
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import referencing
import yaml

from service.cli import settings_from_cli
from service.routes import router

ROOT = Path(__file__).resolve().parents[2]
KSERVE = ROOT / "deploy" / "kserve"
SCHEMA_DIR = KSERVE / "schema"
SCHEMA = json.loads((SCHEMA_DIR / "inferenceservice-v1beta1.json").read_text())
# As in test_k8s.py: the oldest Kubernetes still supported upstream, and the newest known.
VERSIONS = ["1.31", kubernetes_validate.latest_version()]


def manifests() -> dict[str, dict[str, Any]]:
    return {path.name: yaml.safe_load(path.read_text()) for path in sorted(KSERVE.glob("*.yaml"))}


def validator(version: str) -> jsonschema.Draft202012Validator:
    """The vendored schema, its Kubernetes types resolved in kubernetes-validate's strict
    definitions for `version`."""
    full = next(
        v for v in kubernetes_validate.utils.all_versions() if f"{v}.".startswith(f"{version}.")
    )
    definitions = json.loads(
        (
            importlib.resources.files("kubernetes_validate")
            / "kubernetes-json-schema"
            / f"v{full}-local-strict"
            / "_definitions.json"
        ).read_text()
    )
    registry: referencing.Registry = referencing.Registry().with_resources(
        (doc["$id"], referencing.Resource.from_contents(doc)) for doc in (SCHEMA, definitions)
    )
    return jsonschema.Draft202012Validator(SCHEMA, registry=registry)


def errors(doc: dict[str, Any], version: str) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator(version).iter_errors(doc)
    ]


def test_the_schema_is_sound_and_names_its_source():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    source = SCHEMA["x-source"]
    assert source["package"] == "kserve"
    assert f"**kserve {source['version']}**" in (SCHEMA_DIR / "README.md").read_text()


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_is_a_valid_inferenceservice(version: str):
    docs = manifests()
    assert set(docs) == {"inferenceservice.yaml", "triton.yaml"}
    for name, doc in docs.items():
        assert errors(doc, version) == [], name


def _misspell(doc: dict[str, Any], path: str, wrong: str) -> dict[str, Any]:
    """A copy of `doc` with the field at `path` (a/b/0/c) renamed to `wrong`."""
    doc = copy.deepcopy(doc)
    *parents, last = path.split("/")
    node: Any = doc
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[wrong] = node.pop(last)
    return doc


@pytest.mark.parametrize(
    ("manifest", "path", "wrong"),
    [
        # KServe's own fields...
        ("inferenceservice.yaml", "spec/predictor/minReplicas", "minReplica"),
        ("triton.yaml", "spec/predictor/model/storageUri", "storageURI"),
        # ...and Kubernetes' inside them.
        ("inferenceservice.yaml", "spec/predictor/containers/0/readinessProbe", "readinesProbe"),
        ("triton.yaml", "spec/predictor/model/resources/limits", "limit"),
        ("inferenceservice.yaml", "metadata/name", "nane"),
    ],
)
def test_the_validator_rejects_a_misspelt_field(manifest: str, path: str, wrong: str):
    """The check can fail: an unknown field is an error, at every depth."""
    doc = _misspell(manifests()[manifest], path, wrong)
    found = errors(doc, VERSIONS[0])
    assert found, f"{path} -> {wrong} was accepted"
    assert any(wrong in message for message in found), found


def test_the_validator_rejects_a_missing_required_field():
    doc = copy.deepcopy(manifests()["triton.yaml"])
    del doc["spec"]["predictor"]["model"]["modelFormat"]
    assert any("'modelFormat' is a required property" in e for e in errors(doc, VERSIONS[0]))


def test_the_vendored_schema_is_what_the_package_generates(monkeypatch: pytest.MonkeyPatch):
    """Where kserve is installed (it is not a dependency: see the schema's README), the vendored
    copy must be what generate.py makes of it."""
    if importlib.util.find_spec("kserve") is None:
        pytest.skip("kserve is not installed: the vendored schema is used as it is")
    spec = importlib.util.spec_from_file_location("kserve_schema", SCHEMA_DIR / "generate.py")
    assert spec is not None and spec.loader is not None
    generate = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, generate)  # its dataclass looks itself up
    spec.loader.exec_module(generate)
    assert generate.dump(generate.generate()) == (SCHEMA_DIR / generate.SCHEMA.name).read_text()


def test_the_custom_predictor_agrees_with_the_service(monkeypatch: pytest.MonkeyPatch):
    (container,) = manifests()["inferenceservice.yaml"]["spec"]["predictor"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    for name, value in env.items():
        if name.startswith("EMODISTILL_"):
            monkeypatch.setenv(name, value)
    settings = settings_from_cli(container["args"])  # every flag and variable is a setting
    # KServe sends traffic to the first port and its storage initializer fills /mnt/models.
    assert settings.port == container["ports"][0]["containerPort"] == 8080
    assert str(settings.model) == "/mnt/models"
    probe = container["readinessProbe"]["httpGet"]
    assert probe["port"] == settings.port
    assert probe["path"] in {getattr(route, "path", None) for route in router.routes}
