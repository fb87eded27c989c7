"""The deployment as a user runs it: the images built, `docker compose up`, a real request.

`make compose-test` runs this module (after docker/engine.sh and docker/base-image.sh); it
needs a Docker engine and is skipped without EMODISTILL_COMPOSE_TEST=1. In order:
1. the CPU variant (docker-compose.yml + docker-compose.cpu.yml) is built and brought up from
   an empty models volume, so the demo-model container really trains and exports the bundle;
2. the api container answers /predict as `python -m service` does on the same bundle and clip;
3. it runs as non-root, with a read-only root filesystem and a read-only model mount;
4. the GPU service image (no GPU here): every library onnxruntime's CUDA provider links
   resolves but the driver's own libcuda.so.1 (which the NVIDIA Container Toolkit mounts from
   the host), a CUDA session fails for that reason alone, `EMODISTILL_DEVICE=cuda` stops with
   the cause and exit status 1, and `auto` serves model.onnx on the CPU with a warning.
Then `docker compose down -v`. What only a GPU host shows is in docs/service.md (Docker).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_tone
from tests.docker.test_compose import VERSIONS

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "emodistill-compose-test"
CPU_FILES = ("-f", "docker-compose.yml", "-f", "docker-compose.cpu.yml")
GPU_FILES = ("-f", "docker-compose.yml")
GPU_IMAGE = "emodistill/service:gpu"
ANSWER_TOLERANCE = 1e-5  # the same ONNX file on the same CPU provider, image vs venv

pytestmark = [
    pytest.mark.compose,
    pytest.mark.skipif(
        not os.environ.get("EMODISTILL_COMPOSE_TEST"),
        reason="needs a Docker engine: make compose-test runs it",
    ),
]


@dataclass
class Stack:
    url: str
    env: dict[str, str]
    bundle: Path  # a copy of the bundle the demo-model container wrote


def _run(cmd: list[str], env: dict[str, str], timeout_s: float, check: bool = True):
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)
    if check and done.returncode != 0:
        output = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        raise AssertionError(f"{' '.join(cmd)} exited {done.returncode}:\n{output}")
    return done


def _compose(env, *args: str, files=CPU_FILES, timeout_s: float = 600, check: bool = True):
    return _run(["docker", "compose", "-p", PROJECT, *files, *args], env, timeout_s, check)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _offer_cpu_torch(env: dict[str, str]) -> None:
    """A CPU torch wheel that pip already has locally goes to docker/wheels/, and the training
    image takes it instead of reaching PyTorch's CPU index (which this machine cannot)."""
    version = VERSIONS["TORCH_VERSION"]
    configured = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True
    ).stdout  # e.g. global.find-links='/opt/wheels'
    folders = os.environ.get("PIP_FIND_LINKS", "").split()
    folders += re.findall(r"find-links='([^']+)'", configured)
    for folder in folders:
        for wheel in Path(folder).glob(f"torch-{version}+cpu-*.whl"):
            target = ROOT / "docker" / "wheels" / wheel.name
            if not target.exists():
                shutil.copy(wheel, target)
            env["TORCH_INDEX_URL"] = ""


def _post_wav(url: str, wav: bytes) -> dict:
    request = urllib.request.Request(
        f"{url}/predict", data=wav, headers={"Content-Type": "audio/wav"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _wait_ready(url: str, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the server exited {proc.returncode} before it was ready")
        try:
            urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} not ready after {timeout_s} s")


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    env = dict(os.environ)
    env.setdefault("BASE_IMAGE", "emodistill/bookworm-slim:local")
    port = _free_port()
    env["EMODISTILL_PUBLISH"] = f"127.0.0.1:{port}"
    _offer_cpu_torch(env)
    _compose(env, "down", "-v", "--remove-orphans")  # an empty models volume
    start = time.monotonic()
    _compose(env, "build", timeout_s=1800)
    _compose(env, "build", "api", files=GPU_FILES, timeout_s=1800)
    print(f"\nimages built in {time.monotonic() - start:.0f} s")
    start = time.monotonic()
    try:
        _compose(env, "up", "-d", "--wait", "--wait-timeout", "1500", timeout_s=1600)
        print(f"compose up, demo model built and api healthy in {time.monotonic() - start:.0f} s")
        bundle = tmp_path_factory.mktemp("from_volume") / "bundle"
        _compose(env, "cp", "api:/models/bundle", str(bundle))
        yield Stack(f"http://127.0.0.1:{port}", env, bundle)
    except Exception:
        print(_compose(env, "logs", "--no-color", "--tail", "80", check=False).stdout)
        raise
    finally:
        _compose(env, "down", "-v", "--remove-orphans", check=False)


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory) -> bytes:
    folder = tmp_path_factory.mktemp("clip")
    if shutil.which("espeak-ng"):
        path = folder / "speech.wav"
        text = "I told you twice already and you still did not listen to me"
        subprocess.run(["espeak-ng", "-w", str(path), text], check=True)
    else:
        path = write_tone(folder / "tone.wav", seconds=2.0)
    return path.read_bytes()


def test_api_answers_as_the_venv_service_does(stack: Stack, speech_wav: bytes, tmp_path):
    in_image = _post_wav(stack.url, speech_wav)
    port = _free_port()
    local = subprocess.Popen(
        [sys.executable, "-m", "service", "--model", str(stack.bundle), "--port", str(port),
         "--device", "cpu"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_ready(f"http://127.0.0.1:{port}", 120, local)
        in_venv = _post_wav(f"http://127.0.0.1:{port}", speech_wav)
    finally:
        local.terminate()
        local.wait(30)
    labels = list(in_venv["probabilities"])
    assert list(in_image["probabilities"]) == labels
    a = np.array([in_image["probabilities"][k] for k in labels])
    b = np.array([in_venv["probabilities"][k] for k in labels])
    assert np.max(np.abs(a - b)) <= ANSWER_TOLERANCE
    assert in_image["label"] == in_venv["label"]
    meta = _get_json(f"{stack.url}/v2/models/{in_image['model']['name']}")
    assert meta["parameters"]["provider"] == "CPUExecutionProvider"
    assert meta["parameters"]["model_file"] == "model.onnx"


def test_api_runs_unprivileged_on_a_read_only_filesystem(stack: Stack):
    container = _compose(stack.env, "ps", "-q", "api").stdout.strip()
    inspect = json.loads(_run(["docker", "inspect", container], stack.env, 30).stdout)[0]
    assert inspect["Config"]["User"] not in ("", "0", "root")
    assert inspect["HostConfig"]["ReadonlyRootfs"] is True
    models = [m for m in inspect["Mounts"] if m["Destination"] == "/models"]
    assert models and models[0]["RW"] is False
    uid = _compose(stack.env, "exec", "-T", "api", "id", "-u").stdout.strip()
    assert uid != "0"
    for path in ("/app/written", "/models/bundle/written"):
        done = _compose(stack.env, "exec", "-T", "api", "touch", path, check=False)
        assert done.returncode != 0 and "Read-only file system" in done.stderr


LINKED_LIBRARIES = """
import os, subprocess, onnxruntime as ort
ort.preload_dlls()
loaded = {os.path.dirname(line.split()[-1]) for line in open("/proc/self/maps")
          if "/nvidia/" in line and ".so" in line}
lib = os.path.join(os.path.dirname(ort.__file__), "capi", "libonnxruntime_providers_cuda.so")
env = dict(os.environ, LD_LIBRARY_PATH=":".join(sorted(loaded)))
print(subprocess.run(["ldd", lib], env=env, capture_output=True, text=True, check=True).stdout)
"""

CUDA_SESSION = """
import sys, onnxruntime as ort
ort.preload_dlls()
session = ort.InferenceSession(sys.argv[1], providers=["CUDAExecutionProvider"])
print("PROVIDERS", session.get_providers())
"""


def _in_gpu_image(env, *args: str, script: str | None = None, mounts=()) -> str:
    cmd = ["docker", "run", "--rm", "--entrypoint", "python"]
    for host, inside in mounts:
        cmd += ["-v", f"{host}:{inside}:ro"]
    cmd += [GPU_IMAGE, *(["-c", script] if script else []), *args]
    done = _run(cmd, env, 120, check=False)
    return done.stdout + done.stderr


def test_gpu_image_resolves_every_cuda_library_but_the_driver(stack: Stack):
    ldd = _in_gpu_image(stack.env, script=LINKED_LIBRARIES)
    print(ldd)
    assert "libcublasLt.so" in ldd and "libcudart.so" in ldd
    missing = re.findall(r"(\S+) => not found", ldd)
    assert missing == ["libcuda.so.1"]


def test_gpu_image_cuda_session_lacks_only_the_device(stack: Stack):
    model = stack.bundle / "model.fp16.onnx"
    out = _in_gpu_image(stack.env, "/m.onnx", script=CUDA_SESSION, mounts=[(model, "/m.onnx")])
    print(out)
    cannot_open = set(re.findall(r"(lib[\w.+-]+\.so[\d.]*): cannot open shared object", out))
    assert cannot_open == {"libcuda.so.1"}
    assert "PROVIDERS ['CPUExecutionProvider']" in out  # onnxruntime's own silent fallback


def _serve_gpu_image(env, bundle: Path, device: str, port: int | None = None):
    cmd = ["docker", "run", "--rm", "--read-only", "--tmpfs", "/tmp"]
    cmd += ["-v", f"{bundle}:/models/bundle:ro", "-e", f"EMODISTILL_DEVICE={device}"]
    if port is not None:
        cmd += ["-p", f"127.0.0.1:{port}:8000"]
    return [*cmd, GPU_IMAGE]


def test_gpu_image_asked_for_cuda_stops_with_the_cause(stack: Stack):
    done = _run(_serve_gpu_image(stack.env, stack.bundle, "cuda"), stack.env, 120, check=False)
    print(done.stderr[-2000:])
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: device=cuda, but CUDA is unavailable: no NVIDIA driver")
    assert "Traceback" not in done.stderr


def test_gpu_image_on_auto_serves_fp32_on_the_cpu_and_warns(stack: Stack, speech_wav: bytes):
    port = _free_port()
    cmd = _serve_gpu_image(stack.env, stack.bundle, "auto", port)
    name = f"{PROJECT}-auto"
    cmd[2:2] = ["-d", "--name", name]
    _run(cmd, stack.env, 60)
    try:
        _wait_ready(f"http://127.0.0.1:{port}", 120)
        name_in_bundle = json.loads((stack.bundle / "bundle.json").read_text())["name"]
        meta = _get_json(f"http://127.0.0.1:{port}/v2/models/{name_in_bundle}")
        assert meta["parameters"]["provider"] == "CPUExecutionProvider"
        assert meta["parameters"]["model_file"] == "model.onnx"
        assert _post_wav(f"http://127.0.0.1:{port}", speech_wav)["label"]
        logs = _run(["docker", "logs", name], stack.env, 30).stderr
        assert re.search(
            r"WARNING .*device=auto: no GPU, serving on the CPU: no NVIDIA driver", logs
        )
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        assert 'provider="CPUExecutionProvider"' in metrics
    finally:
        _run(["docker", "rm", "-f", name], stack.env, 60, check=False)


def test_cpu_image_with_two_workers_answers_as_one_and_stops_cleanly(stack: Stack, speech_wav):
    """The multi-process layout where users run it: read-only root, no capabilities, its run
    directory (metrics, the model's socket) on the /tmp tmpfs; SIGTERM (docker stop) ends it
    with 0 after the grace period."""
    port, name = _free_port(), f"{PROJECT}-workers"
    cmd = ["docker", "run", "-d", "--name", name, "--read-only", "--tmpfs", "/tmp"]
    cmd += ["--cap-drop", "ALL", "-v", f"{stack.bundle}:/models/bundle:ro"]
    cmd += ["-e", "EMODISTILL_DEVICE=cpu", "-e", "EMODISTILL_WORKERS=2"]
    cmd += ["-e", "EMODISTILL_SHUTDOWN_GRACE_S=1", "-p", f"127.0.0.1:{port}:8000"]
    _run([*cmd, "emodistill/service:cpu"], stack.env, 60)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, 120)
        answers = [_post_wav(url, speech_wav) for _ in range(4)]
        one = _post_wav(stack.url, speech_wav)  # the compose stack: one process
        for answer in answers:
            for k, p in one["probabilities"].items():
                assert abs(answer["probabilities"][k] - p) <= ANSWER_TOLERANCE
        metrics = urllib.request.urlopen(f"{url}/metrics").read().decode()
        assert 'emodistill_requests_total{route="/predict",status="200"} 4.0' in metrics
        _run(["docker", "stop", "-t", "30", name], stack.env, 60)
        state = _run(["docker", "inspect", "-f", "{{.State.ExitCode}}", name], stack.env, 30)
        assert state.stdout.strip() == "0"
        logs = _run(["docker", "logs", name], stack.env, 30)
        assert "2 HTTP workers" in logs.stderr and "Traceback" not in logs.stderr
    finally:
        _run(["docker", "rm", "-f", name], stack.env, 60, check=False)


# Budgets that catch a layer gone wrong (a second CUDA, torch in the service, a cache left in).
# Measured with FFmpeg (PyAV) and Silero VAD in: service:cpu 0.56, train:cpu 2.50, GPU 3.16 GB.
IMAGE_BUDGET_GB = {GPU_IMAGE: 3.5, "emodistill/service:cpu": 0.65, "emodistill/train:cpu": 2.8}


def test_images_stay_within_their_size_and_hold_no_torch_in_the_service(stack: Stack):
    for image, budget_gb in IMAGE_BUDGET_GB.items():
        size_gb = int(_run(["docker", "image", "inspect", "-f", "{{.Size}}", image], stack.env, 30)
                      .stdout) / 1e9  # fmt: skip
        print(f"{image}: {size_gb:.2f} GB")
        assert size_gb <= budget_gb
    for image in (GPU_IMAGE, "emodistill/service:cpu"):
        probe = "import importlib.util as u; print(u.find_spec('torch') is None)"
        cmd = ["docker", "run", "--rm", "--entrypoint", "python", image, "-c", probe]
        assert _run(cmd, stack.env, 60).stdout.strip() == "True"
