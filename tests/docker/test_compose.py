"""What the images are built from agrees with itself, without a Docker engine: the GPU stack's
versions (versions.env) with the locks, NVIDIA's driver table and docs/install.md; every lock with
pyproject.toml's extras; the compose files as Compose itself merges them, where it is installed.
The images and the stack themselves: test_deployment.py (make compose-test)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from emodistill.gpu import MIN_DRIVER_BY_CUDA_MAJOR

ROOT = Path(__file__).resolve().parents[2]
VERSIONS = dict(
    line.split("=", 1)
    for line in (ROOT / "versions.env").read_text().splitlines()
    if "=" in line and not line.startswith("#")
)
# Each lock and the pyproject extras it is compiled from (requirements/lock.sh).
LOCK_EXTRAS = {
    "dev": ["train", "export", "serve", "cpu", "dev", "bench"],
    "dev-gpu": ["train", "export", "serve", "gpu", "dev", "bench"],
    "train": ["train", "export", "cpu"],
    "serve-cpu": ["serve", "cpu"],
    "serve-gpu": ["serve", "gpu"],
}
TORCH_FREE_OF_LOCK = {"dev", "train", "serve-cpu", "serve-gpu"}  # torch comes from TORCH_SPEC


def pins(lock: str) -> dict[str, str]:
    text = (ROOT / "requirements" / f"{lock}.txt").read_text()
    return dict(re.findall(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)", text, flags=re.M))


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_lock_pins_every_requirement_of_its_extras():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    for lock, names in LOCK_EXTRAS.items():
        locked = {normalise(n) for n in pins(lock)}
        wanted = {
            normalise(re.split(r"[\[<>=~!; ]", req, maxsplit=1)[0])
            for extra in names
            for req in [*project["dependencies"], *extras[extra]]
        } - {"torch", "emodistill"}
        assert wanted - locked == set(), f"requirements/{lock}.txt lacks them: run make lock"


def test_the_locks_hold_the_versions_of_versions_env():
    cuda = VERSIONS["CUDA_VERSION"]
    for lock in LOCK_EXTRAS:
        locked = pins(lock)
        runtime = "onnxruntime-gpu" if "gpu" in lock else "onnxruntime"
        assert locked[runtime] == VERSIONS["ONNXRUNTIME_VERSION"], lock
        assert ("onnxruntime-gpu" in locked) != ("onnxruntime" in locked), lock
        if "gpu" in lock:  # CUDA as wheels, of versions.env's release
            assert locked["nvidia-cuda-runtime"].startswith(f"{cuda}."), lock
        else:
            assert "nvidia-cuda-runtime" not in locked, lock
        if lock in TORCH_FREE_OF_LOCK:
            assert "torch" not in locked, lock
        else:
            assert locked["torch"] == VERSIONS["TORCH_VERSION"]


def test_the_minimum_driver_is_nvidias_for_that_cuda():
    major = int(VERSIONS["CUDA_VERSION"].split(".")[0])
    assert VERSIONS["MIN_NVIDIA_DRIVER"] == MIN_DRIVER_BY_CUDA_MAJOR[major]


def test_the_install_guide_states_the_gpu_stack():
    guide = (ROOT / "docs" / "install.md").read_text()
    for key in ("CUDA_VERSION", "MIN_NVIDIA_DRIVER", "TORCH_VERSION", "ONNXRUNTIME_VERSION"):
        assert VERSIONS[key] in guide, f"docs/install.md does not give {key}={VERSIONS[key]}"


def test_the_base_compose_file_follows_the_compose_specification():
    import jsonschema

    schema = json.loads((ROOT / "tests" / "fixtures" / "compose_spec.json").read_text())
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    errors = [
        f"{list(e.path)}: {e.message}"
        for e in jsonschema.Draft7Validator(schema).iter_errors(compose)
    ]
    assert errors == []


def _compose_config(*files: str) -> dict:
    files_args = [a for f in files for a in ("-f", f)]
    cmd = ["docker", "compose", *files_args, "--profile", "train", "config", "--format", "json"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0,
    reason="needs Docker Compose v2 (docker/engine.sh installs it)",
)
def test_compose_merges_a_gpu_stack_and_a_cpu_stack():
    gpu = _compose_config("docker-compose.yml")["services"]
    cpu = _compose_config("docker-compose.yml", "docker-compose.cpu.yml")["services"]
    reservation = gpu["api"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert reservation["driver"] == "nvidia" and reservation["capabilities"] == ["gpu"]
    assert gpu["api"]["environment"]["EMODISTILL_DEVICE"] == "cuda"
    assert gpu["api"]["build"]["args"]["LOCK"] == "serve-gpu"
    assert "deploy" not in cpu["api"] and "deploy" not in cpu["train"]
    assert cpu["api"]["environment"]["EMODISTILL_DEVICE"] == "cpu"
    assert cpu["api"]["build"]["args"]["LOCK"] == "serve-cpu"
    for services in (gpu, cpu):
        api = services["api"]
        assert api["read_only"] is True
        assert api["depends_on"]["demo-model"]["condition"] == "service_completed_successfully"
        assert "/v2/health/ready" in " ".join(api["healthcheck"]["test"])
        assert [v["read_only"] for v in api["volumes"] if v["target"] == "/models"] == [True]


def test_service_imports_no_torch():
    code = (
        "import sys, service.app, service.routes, service.__init__; print('torch' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.strip() == "False"
