"""One stage of the GPU checklist on the borrowed GPU host: install what travelled, run, report.

    python -m bench.gpu_stage {1,2} --out DIR [--device cuda|cpu] [--preset tiny] [--quick]
                                   [--budget-s 280] [--only NAMES]

Stage 1 is PyTorch alone (the student's checks, engines eager and compiled, training); stage 2
puts onnxruntime-gpu back together from its parts and runs the bundle's fp16 graph and the
service on CUDA. Each section is one of the bench scripts in its own process (a crash or an
out-of-memory ends that section alone), started only while the stage's time budget leaves it
room, and stopped at the budget, so the command ends inside its limit. Everything comes back
as two files, DIR/stage<N>.json (rewritten after every section: a command killed midway still
returns what it finished) and DIR/stage<N>.log; a section that did not run says why.
`--device cpu --preset tiny --quick` runs the same sections on a CPU in seconds (the tests).

Stdlib only at the top (the host runs it before anything is installed). Knows the sections and
the folder layout of .gpu-plan/; bench/gpu_plan.py knows the calls that bring that folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import gpu_wheels

PLAN_DIR = Path(".gpu-plan")
WHEELS_1, WHEELS_2, PARTS = "wheels-1", "wheels-2", "ort"
BUNDLE = "bundle"
# Which installed folder each wheel goes to: our transformers pin apart, so that one section
# can leave it out and run on the host's own transformers 5.x.
TRANSFORMERS_PIN = ("transformers", "tokenizers", "huggingface_hub")
SITES = {"serve": "site-serve", "common": "site-common", "tf4": "site-tf4"}


@dataclass(frozen=True)
class Section:
    name: str
    module: str
    args: str  # formatted with SIZES
    expected_s: int  # on an H100, start of the process included: the plan's figure
    sites: tuple[str, ...] = ("common", "tf4")


# The figures each stage measures; `{x}` are SIZES' entries. Order is priority: what the
# budget leaves out is at the end.
PAPER_STEP = "--bf16 --batch {probe_batch} --crop-s {crop} --device {device}"
ENGINE = "--devices {device} --batch-sizes {batches} --lengths-s {lengths} --repeats {repeats}"
STAGE_1 = (
    Section("torch_checks", "bench.gpu_torch_checks", "--preset {base} --device {device} "
            "--clips {clips}", 25),
    Section("engine_gpu", "bench.engine", ENGINE + " --preset {base}", 40),
    Section("train_gpu", "bench.train_probe", PAPER_STEP + " --preset {base} --steps "
            "{probe_steps}", 25),
    Section("train_run_gpu", "bench.gpu_train_run", "--preset {base} --device {device} "
            "--steps {run_steps} --per-device-batch {micro} --global-batch {global_batch} "
            "--crop-s {crop} --workers {workers}", 40),
    Section("train_large_gpu", "bench.train_probe", PAPER_STEP + " --preset {large} --steps "
            "{large_steps}", 25),
    Section("transformers5", "bench.gpu_torch_checks", "--preset {base} --device {device} "
            "--clips {clips}", 25, sites=("common",)),
    Section("engine_large_gpu", "bench.engine", ENGINE + " --preset {large}", 45),
    Section("engine_compile_gpu", "bench.engine", ENGINE + " --preset {base} --compile "
            "--compile-dtypes bf16", 90),
    Section("engine_large_compile_gpu", "bench.engine", ENGINE + " --preset {large} --compile "
            "--compile-dtypes bf16", 130),
)  # fmt: skip
SERVE = ("serve", "common", "tf4")
STAGE_2 = (
    Section("base_bundle_gpu", "bench.base_bundle", "--bundle {bundle} --clips {bundle_clips}",
            90, sites=SERVE),
    Section("engine_onnx_gpu", "bench.engine", ENGINE + " --preset {base}", 60, sites=SERVE),
    Section("service_gpu", "bench.service_load", "--model {bundle} --requests {requests} "
            "--repeats {service_repeats} --service-args '--device {device}' "
            "--concurrency 1,4,16,64 --clip-s 2", 90, sites=SERVE),
)  # fmt: skip
STAGES = {1: STAGE_1, 2: STAGE_2}
# Wall-clock budget of each stage's sections (the installs come first, outside it).
BUDGET_S = {1: 250, 2: 240}
SIZES = {
    "device": "cuda", "base": "base", "large": "large", "batches": "1,8,32,64",
    "lengths": "2,8", "repeats": "10", "clips": "12", "probe_batch": "32", "crop": "8",
    "probe_steps": "20", "large_steps": "3", "run_steps": "8", "micro": "8",
    "global_batch": "32", "workers": "4", "bundle_clips": "200", "requests": "300",
    "service_repeats": "2",
}  # fmt: skip
QUICK = {
    "batches": "1,2", "lengths": "0.5", "repeats": "1", "clips": "3", "probe_batch": "2",
    "crop": "1", "probe_steps": "1", "large_steps": "1", "run_steps": "1", "micro": "2",
    "global_batch": "2", "workers": "0", "bundle_clips": "8", "requests": "16",
    "service_repeats": "1",
}  # fmt: skip


def section_command(section: Section, sizes: dict[str, str], out: Path) -> list[str]:
    args = shlex.split(section.args.format(**sizes))
    return [sys.executable, "-m", section.module, *args, "--out", str(out)]


def install_stage_1(plan: Path) -> str:
    """Stage 1's wheels into site-common and site-tf4; what was done, in words."""
    wheels = sorted((plan / WHEELS_1).glob("*.whl"))
    if not wheels:
        return f"no wheels in {plan / WHEELS_1}: the environment's own packages"
    pinned = [w for w in wheels if w.name.lower().startswith(TRANSFORMERS_PIN)]
    gpu_wheels.install(pinned, plan / SITES["tf4"])
    gpu_wheels.install([w for w in wheels if w not in pinned], plan / SITES["common"])
    return f"installed {len(wheels)} wheels: " + ", ".join(w.name for w in wheels)


def install_stage_2(plan: Path) -> str:
    """onnxruntime-gpu from its parts (each and the whole checked) and stage 2's wheels into
    site-serve; raises PartError when a part is missing or wrong."""
    if not (plan / SITES["common"]).is_dir():
        raise gpu_wheels.PartError(
            f"{plan / SITES['common']} is missing: stage 1 did not run on this host (a fresh "
            "host: run the plan again from its first call)"
        )
    wheel = gpu_wheels.reassemble(plan / PARTS, plan / "ort-wheel")
    wheels = [wheel, *sorted((plan / WHEELS_2).glob("*.whl"))]
    gpu_wheels.install(wheels, plan / SITES["serve"])
    return f"{wheel.name} reassembled (sha256 checked); installed " + ", ".join(
        w.name for w in wheels
    )


def environment(repo: Path, plan: Path, sites: tuple[str, ...]) -> dict[str, str]:
    paths = [str(repo), *(str((plan / SITES[s]).resolve()) for s in sites)]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "PYTHONUNBUFFERED": "1"}


DEVICE_PROBE = (
    "import json, torch; c = torch.cuda.is_available(); print(json.dumps({'torch': "
    "torch.__version__, 'cuda': torch.version.cuda, 'cuda_available': c, 'torch_device': "
    "torch.cuda.get_device_name() if c else None, 'gpu_memory_mib': "
    "torch.cuda.get_device_properties(0).total_memory // 2**20 if c else None}))"
)


def device_info(env: dict[str, str]) -> dict[str, Any]:
    """What torch and nvidia-smi say of the device: the fold refuses figures without it."""
    info: dict[str, Any] = {"python": sys.version.split()[0]}
    try:
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        info["nvidia_smi"] = smi.stdout.strip()
    except (OSError, subprocess.SubprocessError) as err:
        info["nvidia_smi"] = None
        info["nvidia_smi_why"] = str(err)
    probe = subprocess.run(
        [sys.executable, "-c", DEVICE_PROBE], capture_output=True, text=True, env=env, timeout=120
    )
    if probe.returncode == 0:
        info.update(json.loads(probe.stdout.strip().splitlines()[-1]))
    else:
        info["torch_why"] = probe.stderr.strip()[-500:]
    return info


def tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def run_stage(
    stage: int,
    out: Path,
    sizes: dict[str, str],
    budget_s: float,
    plan: Path = PLAN_DIR,
    only: set[str] | None = None,
) -> dict[str, Any]:
    repo = Path.cwd()
    out.mkdir(parents=True, exist_ok=True)
    log, report = out / f"stage{stage}.log", out / f"stage{stage}.json"
    record: dict[str, Any] = {"stage": stage, "sizes": sizes, "budget_s": budget_s}
    start = time.perf_counter()
    try:
        record["install"] = (install_stage_1 if stage == 1 else install_stage_2)(plan)
        install_ok = True
    except (gpu_wheels.PartError, subprocess.CalledProcessError, OSError) as err:
        record["install"], install_ok = f"failed: {err}", False
    record["install_s"] = time.perf_counter() - start
    record["device"] = device_info(environment(repo, plan, ("common", "tf4")))
    record["sections"] = {}
    deadline = time.perf_counter() + budget_s
    for section in STAGES[stage]:
        left = deadline - time.perf_counter()
        entry: dict[str, Any] = {"ran": False, "expected_s": section.expected_s}
        if only is not None and section.name not in only:
            entry["why"] = "not selected (--only)"
        elif not install_ok:
            entry["why"] = f"not started: the install failed ({record['install']})"
        elif left < section.expected_s / 2:
            entry["why"] = (
                f"not started: {left:.0f} s of the stage's {budget_s:.0f} s budget left, "
                f"it needs about {section.expected_s} s (run it on its own: --only)"
            )
        else:
            result_file = out / f".{section.name}.json"
            command = section_command(section, sizes, result_file)
            entry["command"] = " ".join(["python", *map(shlex.quote, command[1:-2])])
            began = time.perf_counter()
            with log.open("a") as f:
                f.write(f"\n$ {entry['command']}\n")
                f.flush()
                try:
                    code: int | str = subprocess.run(
                        command,
                        stdout=f,
                        stderr=subprocess.STDOUT,
                        env=environment(repo, plan, section.sites),
                        timeout=left,
                    ).returncode
                except subprocess.TimeoutExpired:
                    code = "stopped at the stage's budget"
            entry["seconds"] = time.perf_counter() - began
            if code == 0 and result_file.is_file():
                entry["ran"], entry["result"] = True, json.loads(result_file.read_text())
                result_file.unlink()
            else:
                entry["why"] = f"exit {code}; the log's last lines:\n{tail(log)}"
        record["sections"][section.name] = entry
        record["seconds"] = time.perf_counter() - start
        report.write_text(json.dumps(record, indent=2) + "\n")
        print(f"{section.name}: " + ("ran" if entry["ran"] else entry["why"].splitlines()[0]))
    return record


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("stage", type=int, choices=sorted(STAGES))
    p.add_argument("--out", type=Path, required=True, help="where the JSON and the log go")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--preset", default=None, help="one preset for every section (tiny: tests)")
    p.add_argument("--quick", action="store_true", help="a few steps and sizes (tests)")
    p.add_argument("--budget-s", type=float, default=None, help="the sections' wall budget")
    p.add_argument("--plan-dir", type=Path, default=PLAN_DIR)
    p.add_argument("--only", default=None, help="comma-separated sections to run")
    args = p.parse_args()
    sizes = {**SIZES, **(QUICK if args.quick else {}), "device": args.device}
    sizes["bundle"] = str(args.plan_dir / BUNDLE)
    if args.preset:
        sizes["base"] = sizes["large"] = args.preset
    budget = args.budget_s if args.budget_s is not None else BUDGET_S[args.stage]
    only = set(args.only.split(",")) if args.only else None
    record = run_stage(args.stage, args.out, sizes, budget, args.plan_dir, only)
    ran = sum(s["ran"] for s in record["sections"].values())
    print(f"stage {args.stage}: {ran} of {len(record['sections'])} sections ran")


if __name__ == "__main__":
    main()
