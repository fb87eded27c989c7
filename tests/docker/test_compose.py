"""docker-compose.yml and the Dockerfiles, checked without a Docker engine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_file_follows_the_compose_specification():
    schema = json.loads((ROOT / "tests" / "fixtures" / "compose_spec.json").read_text())
    errors = [
        f"{list(e.path)}: {e.message}"
        for e in jsonschema.Draft7Validator(schema).iter_errors(COMPOSE)
    ]
    assert errors == []


def test_api_waits_for_the_demo_model_and_reserves_a_gpu():
    api = COMPOSE["services"]["api"]
    assert api["depends_on"]["demo-model"]["condition"] == "service_completed_successfully"
    devices = api["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert "/v2/health/ready" in " ".join(api["healthcheck"]["test"])
    assert "models:/models:ro" in api["volumes"] and api["read_only"] is True
    assert "/models/bundle" in COMPOSE["services"]["demo-model"]["command"][0]
    train = COMPOSE["services"]["train"]
    assert train["profiles"] == ["train"]
    assert train["deploy"]["resources"]["reservations"]["devices"][0]["count"] == "all"


def test_images_install_through_make_with_the_readme_pins():
    service = (ROOT / "docker" / "Dockerfile.service").read_text()
    train = (ROOT / "docker" / "Dockerfile.train").read_text()
    assert "make install" in service and "EXTRAS=serve" in service and "TORCH_SPEC= " in service
    assert "FROM nvidia/cuda:" in service and "USER emodistill" in service
    assert "HEALTHCHECK" in service and "/v2/health/ready" in service
    assert "make install" in train and "EXTRAS=train,export" in train


def test_service_imports_no_torch():
    code = (
        "import sys, service.app, service.routes, service.__init__; print('torch' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.strip() == "False"
