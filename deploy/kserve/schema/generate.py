"""Writes `inferenceservice-v1beta1.json`, the JSON Schema of a serving.kserve.io/v1beta1
InferenceService, from the `kserve` package's OpenAPI models (KServe's own API types, generated
from the same Go types as its CRD). The models' source is parsed, not imported: a wheel from
`pip download --no-deps kserve==VERSION` is enough, so kserve's dependencies are not needed.

    python deploy/kserve/schema/generate.py [kserve-VERSION-py3-none-any.whl | kserve/ folder]

Without an argument it reads the installed kserve. What it writes:
- every KServe object lists its fields (their JSON names) and allows no other
  (`additionalProperties: false`), so a misspelt field is an error;
- a field's type, the values an enum field allows and the fields an object requires, where the
  model states them (its setters' client-side checks);
- Kubernetes' own types (Container, ObjectMeta, ...) as `$ref`s to kubernetes-validate's
  definitions (`https://kubernetes.io/api/_definitions.json`), which a validator resolves
  against the Kubernetes version it checks for;
- no `status`: the controller writes it, a manifest does not.
"""

from __future__ import annotations

import ast
import email
import importlib.metadata
import importlib.util
import json
import re
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCHEMA = HERE / "inferenceservice-v1beta1.json"
K8S_DEFINITIONS = "https://kubernetes.io/api/_definitions.json"
QUANTITY = f"{K8S_DEFINITIONS}#/$defs/io.k8s.apimachinery.pkg.api.resource.Quantity"
ROOT_MODEL = "V1beta1InferenceService"
PRIMITIVES: dict[str, dict[str, Any]] = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
    "datetime": {"type": "string"},
    "date": {"type": "string"},
    "object": {},  # free-form in the OpenAPI spec
    "ResourceQuantity": {"$ref": QUANTITY},
}


@dataclass
class Model:
    types: dict[str, str]  # attribute -> OpenAPI type
    keys: dict[str, str]  # attribute -> JSON key
    required: set[str] = field(default_factory=set)
    enums: dict[str, list[Any]] = field(default_factory=dict)


def _model_sources(source: Path | None) -> tuple[str, Iterator[tuple[str, str]]]:
    """(kserve's version, (file name, source) of every file in kserve/models/)."""
    if source is not None and source.suffix == ".whl":
        wheel = zipfile.ZipFile(source)
        (meta,) = (n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        version = email.message_from_string(wheel.read(meta).decode())["Version"]
        names = sorted(
            n for n in wheel.namelist() if n.startswith("kserve/models/") and n.endswith(".py")
        )
        return version, ((Path(n).name, wheel.read(n).decode()) for n in names)
    if source is None:
        spec = importlib.util.find_spec("kserve")  # finds, does not import
        if spec is None or spec.origin is None:
            raise SystemExit("kserve is not installed: name a wheel or a kserve/ folder")
        source = Path(spec.origin).parent
        version = importlib.metadata.version("kserve")
    else:
        dist_info = sorted(source.parent.glob("kserve-*.dist-info"))
        if not dist_info:
            raise SystemExit(f"no kserve-*.dist-info beside {source}")
        version = email.message_from_string((dist_info[-1] / "METADATA").read_text())["Version"]
    files = sorted((source / "models").glob("*.py"))
    return version, ((p.name, p.read_text()) for p in files)


def _setter_checks(function: ast.FunctionDef) -> tuple[bool, list[Any] | None]:
    """(must not be None, allowed values) from an OpenAPI-generated setter."""
    required, allowed = False, None
    for node in ast.walk(function):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "allowed_values" for t in node.targets
        ):
            allowed = ast.literal_eval(node.value)
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            args = node.exc.args
            message = args[0].value if args and isinstance(args[0], ast.Constant) else None
            if "must not be `None`" in str(message):
                required = True
    return required, allowed


def read_models(source: Path | None = None) -> tuple[str, dict[str, Model]]:
    """kserve's version and its models, by class name."""
    version, sources = _model_sources(source)
    models = {}
    for name, text in sources:
        for cls in ast.parse(text, name).body:
            if not isinstance(cls, ast.ClassDef):
                continue
            literals: dict[str, Any] = {}
            setters: dict[str, ast.FunctionDef] = {}
            for node in cls.body:
                if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                    if node.targets[0].id in ("openapi_types", "attribute_map"):
                        literals[node.targets[0].id] = ast.literal_eval(node.value)
                elif isinstance(node, ast.FunctionDef):
                    for deco in node.decorator_list:
                        if isinstance(deco, ast.Attribute) and deco.attr == "setter":
                            setters[node.name] = node
            if "openapi_types" not in literals:
                continue
            model = Model(literals["openapi_types"], literals["attribute_map"])
            for attr, setter in setters.items():
                required, allowed = _setter_checks(setter)
                if required:
                    model.required.add(attr)
                if allowed is not None:
                    model.enums[attr] = allowed
            models[cls.name] = model
    return version, models


def _kubernetes_definition(name: str, definitions: set[str]) -> str | None:
    """The Kubernetes definition a kubernetes-client model name stands for, if one does."""
    m = re.fullmatch(r"K8sIoApi([A-Z][a-z]+)(V\d+(?:(?:alpha|beta)\d+)?)(\w+)", name)
    if m:
        key = f"io.k8s.api.{m[1].lower()}.{m[2].lower()}.{m[3]}"
        return key if key in definitions else None
    m = re.fullmatch(r"(V\d+(?:(?:alpha|beta)\d+)?)([A-Z]\w+)", name)
    if not m:
        return None
    suffix = f".{m[1].lower()}.{m[2]}"
    found = sorted(d for d in definitions if d.endswith(suffix))
    for preferred in ("io.k8s.api.core.", "io.k8s.apimachinery.pkg.apis.meta."):
        if preferred + suffix[1:] in found:
            return preferred + suffix[1:]
    return found[0] if len(found) == 1 else None


def build(models: dict[str, Model], version: str, definitions: set[str]) -> dict[str, Any]:
    """The JSON Schema of an InferenceService manifest, from kserve's models."""
    defs: dict[str, Any] = {}
    unchecked: set[str] = set()

    def schema_of(openapi_type: str) -> dict[str, Any]:
        if openapi_type.startswith("list[") and openapi_type.endswith("]"):
            return {"type": "array", "items": schema_of(openapi_type[5:-1])}
        m = re.fullmatch(r"dict\(str, (.+)\)", openapi_type)
        if m:
            return {"type": "object", "additionalProperties": schema_of(m[1])}
        if openapi_type in PRIMITIVES:
            return PRIMITIVES[openapi_type]
        if openapi_type in models:
            if openapi_type not in defs:
                defs[openapi_type] = {}  # placeholder: the types are recursive
                defs[openapi_type] = object_schema(models[openapi_type])
            return {"$ref": f"#/$defs/{openapi_type}"}
        definition = _kubernetes_definition(openapi_type, definitions)
        if definition is not None:
            return {"$ref": f"{K8S_DEFINITIONS}#/$defs/{definition}"}
        # A type the package names but does not define (e.g. MetricQuantity): left unchecked.
        unchecked.add(openapi_type)
        return {}

    def object_schema(model: Model) -> dict[str, Any]:
        properties = {}
        for attr, openapi_type in sorted(model.types.items()):
            schema = dict(schema_of(openapi_type))
            if attr in model.enums and schema.get("type") == "array":
                schema["items"] = {**schema["items"], "enum": model.enums[attr]}
            elif attr in model.enums:
                schema["enum"] = model.enums[attr]
            properties[model.keys[attr]] = schema
        out: dict[str, Any] = {
            "type": "object",
            "properties": properties,
            "additionalProperties": False,
        }
        if model.required:
            out["required"] = sorted(model.keys[a] for a in model.required)
        return out

    resource = models[ROOT_MODEL]
    root = object_schema(
        Model(
            {a: t for a, t in resource.types.items() if a != "status"},
            resource.keys,
            resource.required - {"status"},
            resource.enums,
        )
    )
    root["properties"]["apiVersion"] = {"const": "serving.kserve.io/v1beta1"}
    root["properties"]["kind"] = {"const": "InferenceService"}
    root["required"] = ["apiVersion", "kind", "metadata", "spec"]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://emodistill.local/deploy/kserve/inferenceservice-v1beta1.json",
        "$comment": f"Generated by generate.py from the kserve {version} package's models.",
        "x-source": {"package": "kserve", "version": version},
        "x-unchecked-types": sorted(unchecked),
        **root,
        "$defs": dict(sorted(defs.items())),
    }


def kubernetes_definitions() -> set[str]:
    """The names of Kubernetes' definitions in the newest version kubernetes-validate knows."""
    import importlib.resources

    import kubernetes_validate

    latest = kubernetes_validate.latest_version()
    path = (
        importlib.resources.files("kubernetes_validate")
        / "kubernetes-json-schema"
        / f"v{latest}-local-strict"
        / "_definitions.json"
    )
    return set(json.loads(path.read_text())["$defs"])


def generate(source: Path | None = None) -> dict[str, Any]:
    version, models = read_models(source)
    return build(models, version, kubernetes_definitions())


def dump(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=1, sort_keys=False) + "\n"


def main(argv: list[str]) -> None:
    schema = generate(Path(argv[0]) if argv else None)
    SCHEMA.write_text(dump(schema))
    print(f"wrote {SCHEMA} from kserve {schema['x-source']['version']}")


if __name__ == "__main__":
    main(sys.argv[1:])
