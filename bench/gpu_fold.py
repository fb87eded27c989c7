"""What the GPU host's calls brought back, folded into docs/bench/gpu.json and the report.

`python -m bench.gpu_plan fold DIR` reads DIR/stage1.json, DIR/stage2.json and DIR/part-*.json
(bench/gpu_stage.py, bench/gpu_wheels.py wrote them there) and writes docs/bench/gpu.json: the
device as torch and nvidia-smi named it, every section with its command or why it did not run,
and the figures. A stage whose run saw no CUDA device contributes no figure: nothing is
reported as measured without a GPU behind it. The sections the report already draws
(engine_gpu, base_bundle_gpu, service_gpu, train_gpu, train_large_gpu) are also written as
docs/bench/<name>.json, and `python -m bench --report-only` redraws docs/benchmarks.md, whose
GPU checklist part `checklist_lines` writes from gpu.json. Stdlib only (the report imports it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

DOCS = Path("docs")
# The report's own GPU sections: its name <- the first of these sections that ran.
REPORT_SECTIONS = {
    # The ONNX run first: the report's goal "ONNX fp16 ≥ 2× PyTorch fp32" takes both from it.
    "engine_gpu": ("engine_onnx_gpu", "engine_compile_gpu", "engine_gpu"),
    "base_bundle_gpu": ("base_bundle_gpu",),
    "service_gpu": ("service_gpu",),
    "train_gpu": ("train_gpu",),
    "train_large_gpu": ("train_large_gpu",),
}
NO_GPU = "no CUDA device in this run (torch saw none): no figure of it is folded"


def on_gpu(device: dict[str, Any]) -> bool:
    return bool(device.get("cuda_available") and device.get("torch_device"))


def gpu_record(folder: Path) -> dict[str, Any]:
    """gpu.json's content from the calls' files in `folder`."""
    record: dict[str, Any] = {"device": None, "stages": {}, "parts": {}, "results": {}}
    for path in sorted(folder.glob("part-*.json")):
        record["parts"][path.stem] = json.loads(path.read_text())
    for stage in (1, 2):
        path = folder / f"stage{stage}.json"
        if not path.is_file():
            record["stages"][str(stage)] = {"why": f"{path.name} did not come back"}
            continue
        run = json.loads(path.read_text())
        sections = {
            name: {k: v for k, v in entry.items() if k != "result"}
            for name, entry in run["sections"].items()
        }
        summary = {k: run.get(k) for k in ("install", "install_s", "seconds", "budget_s")}
        record["stages"][str(stage)] = {**summary, "device": run["device"], "sections": sections}
        if not on_gpu(run["device"]):
            record["stages"][str(stage)]["not_measured"] = NO_GPU
            continue
        record["device"] = record["device"] or run["device"]
        for name, entry in run["sections"].items():
            if entry["ran"]:
                record["results"][name] = {"command": entry["command"], **entry["result"]}
    return record


def fold(folder: Path, docs: Path = DOCS, report: bool = True) -> str:
    """Write docs/bench/gpu.json (and the report's GPU sections); a summary in words."""
    record = gpu_record(folder)
    bench = docs / "bench"
    bench.mkdir(parents=True, exist_ok=True)
    for name, sources in REPORT_SECTIONS.items():
        source = next((s for s in sources if s in record["results"]), None)
        if source is not None:
            data = dict(record["results"][source])
            data["command_shown"] = data.pop("command")
            (bench / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    (bench / "gpu.json").write_text(json.dumps(record, indent=2) + "\n")
    if report:
        subprocess.run([sys.executable, "-m", "bench", "--report-only"], check=True)
    device = record["device"]
    where = device["torch_device"] if device else "no GPU"
    return f"{len(record['results'])} sections measured on {where}: {bench / 'gpu.json'}"


def _figure(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def checklist_lines(path: Path) -> list[str]:
    """The report's account of the last GPU checklist run (docs/gpu-check.md)."""
    if not path.is_file():
        return ["**Pending**: no GPU checklist run yet (docs/gpu-check.md).", ""]
    record = json.loads(path.read_text())
    device = record.get("device")
    lines = [
        "Device: "
        + (
            f"{device['torch_device']} (nvidia-smi: {device.get('nvidia_smi')}; torch "
            f"{device['torch']}, CUDA {device['cuda']})"
            if device
            else "none: nothing below was measured on a GPU"
        )
        + ". Every section of `python -m bench.gpu_plan`'s calls (docs/gpu-check.md):",
        "",
        "| stage | section | ran | seconds | why not |",
        "|---|---|---|---|---|",
    ]
    for stage, run in record["stages"].items():
        for name, entry in run.get("sections", {}).items():
            why = entry.get("why", "").splitlines()[0] if not entry["ran"] else ""
            seconds = f"{entry['seconds']:.0f}" if "seconds" in entry else ""
            ran = "yes" if entry["ran"] else "no"
            lines.append(f"| {stage} | {name} | {ran} | {seconds} | {why} |")
        if "not_measured" in run or "why" in run:
            lines.append(f"| {stage} | – | no | | {run.get('not_measured') or run['why']} |")
    results = record.get("results", {})
    for name in ("torch_checks", "transformers5", "train_run_gpu"):
        if name in results:
            figures = {k: v for k, v in results[name].items() if not isinstance(v, dict | list)}
            lines += [
                "",
                f"`{name}`: " + ", ".join(f"{k} {_figure(v)}" for k, v in figures.items()),
            ]
    in_report = next((n for n in REPORT_SECTIONS["engine_gpu"] if n in results), None)
    for name in [n for n in results if n.startswith("engine") and n != in_report]:
        if name in results:
            lines += ["", f"`{results[name]['command']}`:", "",
                      "| engine | clip s | batch | ms per batch | audio-s/s | of ceiling |",
                      "|---|---|---|---|---|---|"]  # fmt: skip
            for r in results[name]["rows"]:
                share = r.get("fraction_of_ceiling")
                lines.append(
                    f"| {r['engine']} | {r['clip_s']:g} | {r['batch']} | {r['ms_per_batch']:.1f} "
                    f"| {r['audio_s_per_s']:.1f} | "
                    + (f"{100 * share:.1f} % |" if share is not None else "|")
                )
    return [*lines, ""]
