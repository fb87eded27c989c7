"""`python -m bench.gpu_plan` (make gpu-plan): the GPU checklist as the borrowed GPU host runs it.

    python -m bench.gpu_plan            prepare .gpu-plan/ here and print the calls
    python -m bench.gpu_plan print      print the calls for what .gpu-plan/ already holds
    python -m bench.gpu_plan fold DIR   fold the JSON the calls brought back into docs/

Prepares here what the host lacks (bench/gpu_wheels.py: the small wheels, onnxruntime-gpu in
parts of at most 60 MiB with a sha256 manifest) in the ignored folder .gpu-plan/, then prints
the device tool's `run` calls in order: each command (at most 2,000 characters), what it
carries, the bytes that travel (the working tree as git sends it, shared/ and the carried
paths, measured), its timeout and its expected time, and the total against the session's 15
minutes of device time, the machine's start and the pauses between calls included. The checks
(`check_plan`) are the host's documented limits. The stages themselves: bench/gpu_stage.py;
folding their JSON into docs/bench/gpu.json and docs/benchmarks.md: bench/gpu_fold.py.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import Marker

from bench import gpu_stage, gpu_wheels

MIB = 2**20
TRAVEL_MAX_BYTES = 64 * MIB
COMMAND_MAX_CHARS = 2000
CARRY_MAX_PATHS = 8
DEVICE_BUDGET_S = 15 * 60
# Not ours to control, so planned for: a machine's start ("a minute or more") and the pause
# between one call's answer and the next call (the caller reads, then calls).
START_S = 90
GAP_S = 15
MARGIN_S = 60  # what the plan must leave unspent of the 15 minutes
PART_CALL_S = 20  # a 60 MiB transfer and a sha256
INSTALL_S = {1: 25, 2: 30}  # pip unpacking the wheels, the device probe
# The markers of the lock's lines, evaluated for the host's Python.
HOST = {"python_version": "3.12", "python_full_version": "3.12.3", "implementation_name":
        "cpython", "platform_python_implementation": "CPython", "sys_platform": "linux",
        "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix"}  # fmt: skip


@dataclass(frozen=True)
class Call:
    name: str
    command: str
    carry: tuple[str, ...]
    travel_bytes: int
    timeout_s: int
    expected_s: int


def locked_versions(lock: Path) -> dict[str, str]:
    """{normalized name: version} of a uv lock's pins that apply to the host's Python."""
    out = {}
    for line in lock.read_text().splitlines():
        if "==" not in line or line.startswith((" ", "#")):
            continue
        pin, _, marker = line.rstrip(" \\").partition(";")
        name, _, version = pin.strip().partition("==")
        if not marker.strip() or Marker(marker.strip()).evaluate(HOST):
            out[name.lower().replace("_", "-")] = version.strip()
    return out


def onnxruntime_version(repo: Path) -> str:
    for line in (repo / "versions.env").read_text().splitlines():
        if line.startswith("ONNXRUNTIME_VERSION="):
            return line.split("=", 1)[1].strip()
    raise ValueError("versions.env has no ONNXRUNTIME_VERSION")


def prepare(repo: Path, downloader: gpu_wheels.Downloader = gpu_wheels.pip_download) -> dict:
    """Fill repo/.gpu-plan: wheels-1, wheels-2, ort/ (parts + manifest); the manifest."""
    plan = repo / gpu_stage.PLAN_DIR
    versions = locked_versions(repo / "requirements" / "dev.txt")
    for folder, names in (
        (gpu_stage.WHEELS_1, gpu_wheels.STAGE1_PACKAGES),
        (gpu_stage.WHEELS_2, gpu_wheels.STAGE2_PACKAGES),
    ):
        (plan / folder).mkdir(parents=True, exist_ok=True)
        downloader([f"{n}=={versions[n]}" for n in names], plan / folder)
    downloads = plan / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    downloader([f"{gpu_wheels.ONNXRUNTIME_GPU}=={onnxruntime_version(repo)}"], downloads)
    wheel = next(downloads.glob("onnxruntime_gpu-*.whl"))
    # A part travels with the tree and the manifest: a larger tree makes the parts smaller.
    part_bytes = min(gpu_wheels.PART_MAX_BYTES, TRAVEL_MAX_BYTES - tree_bytes(repo) - MIB)
    manifest_file = plan / gpu_stage.PARTS / gpu_wheels.MANIFEST
    if manifest_file.is_file():
        manifest = json.loads(manifest_file.read_text())
        same = manifest["wheel"] == wheel.name and manifest["sha256"] == gpu_wheels.sha256(wheel)
        if same and max(p["bytes"] for p in manifest["parts"]) <= part_bytes:
            return manifest
    shutil.rmtree(plan / gpu_stage.PARTS, ignore_errors=True)
    return gpu_wheels.split(wheel, plan / gpu_stage.PARTS, part_bytes)


def tree_bytes(repo: Path) -> int:
    """What every call sends: tracked and untracked-not-ignored files, and shared/."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    files = {repo / name for name in listed if name}
    shared = repo / "shared"
    if shared.is_dir():
        files |= {p for p in shared.rglob("*") if p.is_file() or p.is_symlink()}
    return sum(p.lstat().st_size for p in files if p.is_symlink() or p.is_file())


def path_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def build_plan(repo: Path) -> list[Call]:
    """The calls, in order, for what repo/.gpu-plan holds."""
    plan = gpu_stage.PLAN_DIR
    tree = tree_bytes(repo)
    manifest = json.loads((repo / plan / gpu_stage.PARTS / gpu_wheels.MANIFEST).read_text())
    manifest_path = str(plan / gpu_stage.PARTS / gpu_wheels.MANIFEST)
    parts = [str(plan / gpu_stage.PARTS / p["name"]) for p in manifest["parts"]]

    def travel(carry: list[str]) -> int:
        return tree + sum(path_bytes(repo / c) for c in carry)

    stage_2_carry = [manifest_path, str(plan / gpu_stage.WHEELS_2)]
    with_stage_2: list[str] = []  # the last parts, while they fit beside stage 2's wheels
    while parts and travel([*stage_2_carry, *with_stage_2, parts[-1]]) <= TRAVEL_MAX_BYTES:
        with_stage_2.insert(0, parts.pop())
    out = '--out "$OUT"'
    calls = [
        Call(
            "stage 1: PyTorch on the GPU (the student, engines, training)",
            f"export PYTHONUNBUFFERED=1; python3 -m bench.gpu_stage 1 {out}",
            (str(plan / gpu_stage.WHEELS_1),),
            travel([str(plan / gpu_stage.WHEELS_1)]),
            gpu_stage.BUDGET_S[1] + INSTALL_S[1] + 40,
            gpu_stage.BUDGET_S[1] + INSTALL_S[1],
        )
    ]
    for part in parts:
        name = Path(part).name
        calls.append(
            Call(
                f"onnxruntime-gpu {name}",
                f"python3 -m bench.gpu_wheels receive {plan / gpu_stage.PARTS} {name} {out}",
                (manifest_path, part),
                travel([manifest_path, part]),
                60,
                PART_CALL_S,
            )
        )
    carry = [manifest_path, *with_stage_2, str(plan / gpu_stage.WHEELS_2)]
    calls.append(
        Call(
            "stage 2: onnxruntime-gpu reassembled; the bundle's fp16 graph and the service on CUDA",
            f"export PYTHONUNBUFFERED=1; python3 -m bench.gpu_stage 2 {out}",
            tuple(carry),
            travel(carry),
            gpu_stage.BUDGET_S[2] + INSTALL_S[2] + 40,
            gpu_stage.BUDGET_S[2] + INSTALL_S[2],
        )
    )
    return calls


def expected_total_s(calls: list[Call]) -> int:
    """The machine's start, every call, and a pause after each (the last: until give_back)."""
    return START_S + sum(c.expected_s + GAP_S for c in calls)


def check_plan(calls: list[Call]) -> list[str]:
    """Each way the plan breaks the host's limits, in words (none: it fits)."""
    problems = []
    for c in calls:
        if c.travel_bytes >= TRAVEL_MAX_BYTES:
            problems.append(f"{c.name}: {c.travel_bytes / MIB:.1f} MiB travel, limit 64 MiB")
        if len(c.command) > COMMAND_MAX_CHARS:
            problems.append(f"{c.name}: command of {len(c.command)} characters")
        if len(c.carry) > CARRY_MAX_PATHS:
            problems.append(f"{c.name}: {len(c.carry)} carry paths, limit {CARRY_MAX_PATHS}")
        if c.timeout_s > 600:
            problems.append(f"{c.name}: timeout {c.timeout_s} s, limit 600 s")
    if (total := expected_total_s(calls)) > DEVICE_BUDGET_S - MARGIN_S:
        problems.append(f"expected {total} s, over {DEVICE_BUDGET_S} s less a {MARGIN_S} s margin")
    return problems


def render(calls: list[Call], tree: int) -> str:
    lines = [
        "The GPU checklist: these `run` calls, in order, back to back (the host stays up "
        "about 30 s after a call; a fresh host has lost the earlier calls' files: start again).",
        f"Every call also sends the working tree: {tree / MIB:.2f} MiB.",
        "",
    ]
    for i, c in enumerate(calls, 1):
        lines += [
            f"{i}. {c.name}",
            f"   command:   {c.command}",
            f"   carry:     {json.dumps(list(c.carry))}",
            f"   travels:   {c.travel_bytes / MIB:.1f} MiB (limit 64)",
            f"   timeout_s: {c.timeout_s}   expected: {c.expected_s} s",
            "",
        ]
    total = expected_total_s(calls)
    lines += [
        f"Expected device time: {START_S} s start + {sum(c.expected_s for c in calls)} s of "
        f"calls + {GAP_S} s after each of {len(calls)} calls = {total} s of "
        f"{DEVICE_BUDGET_S} s ({DEVICE_BUDGET_S - total} s margin). Then give_back.",
        "Save each call's files (stage1.json, part-NN.json, stage2.json, the logs) into one "
        "folder, then here: python -m bench.gpu_plan fold FOLDER",
    ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("action", nargs="?", default="prepare", choices=["prepare", "print", "fold"])
    p.add_argument("folder", nargs="?", type=Path, help="fold: the calls' files")
    args = p.parse_args()
    repo = Path.cwd()
    if args.action == "fold":
        from bench.gpu_fold import fold

        if args.folder is None:
            p.error("fold needs the folder of the calls' files")
        print(fold(args.folder))
        return
    if args.action == "prepare":
        prepare(repo)
    try:
        calls = build_plan(repo)
    except FileNotFoundError as err:
        sys.exit(f"error: nothing prepared ({err.filename}): run `python -m bench.gpu_plan` first")
    print(render(calls, tree_bytes(repo)))
    if problems := check_plan(calls):
        sys.exit("the plan does not fit:\n  " + "\n  ".join(problems))


if __name__ == "__main__":
    main()
