"""What the padded-audio cap of a batch costs in memory and buys in throughput, on the CPU.

    python -m bench.batch_memory --bundle models/demo/bundle --bundle models/bench/base_bundle
                                 [--caps-s 64,96,128] [--clips-s 3,10,30] [--repeats 2]
                                 [--out FILE.json]

For each bundle, clip length and cap (`max_batch_audio_s`), the batch the one batching rule
(emodistill.batching.cut_batches, with the default `max_batch_size`) cuts from a queue of equal
clips is run through the engine the service runs (emodistill.runtime.OnnxBackend on the CPU),
in a fresh process per setting, so each peak is that batch's alone. Reported: the process's
resident memory after loading the model and its peak (VmHWM) after the batch, and audio-s/s
(the best of `repeats` runs). A setting whose batch is the same as a smaller cap's (3 s clips:
32 × 3 s fill 96 s) is measured once. The service windows audio longer than max_segment_s
(10 s), so 30 s clips reach the model only where that is raised. Knows nothing of HTTP.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from bench.report import Results
from emodistill.batching import cut_batches
from emodistill.options import InferenceOptions
from emodistill.runtime import OnnxBackend

MIB = 1 << 20


def peak_rss_bytes() -> int:
    """This process's peak resident memory (VmHWM); ru_maxrss (KiB on Linux) elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def batch_size(clip_s: float, cap_s: float, rate_hz: int) -> int:
    """Clips of `clip_s` in the first batch the batching rule cuts under a cap of `cap_s`."""
    options = InferenceOptions(max_batch_audio_s=cap_s)
    queue = [int(clip_s * rate_hz)] * options.max_batch_size
    budget = options.max_batch_samples(rate_hz)
    return len(cut_batches(queue, options.max_batch_size, budget, options.max_batch_padding)[0])


def measure_one(bundle: Path, clip_s: float, clips: int, repeats: int) -> dict[str, Any]:
    """In this process: load, then run `clips` clips of `clip_s` `repeats` times."""
    backend = OnnxBackend(bundle, device="cpu")
    loaded = peak_rss_bytes()
    rate_hz = backend.metadata.sample_rate_hz
    rng = np.random.default_rng(0)
    batch = [0.1 * rng.standard_normal(int(clip_s * rate_hz)).astype(np.float32)] * clips
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        backend.infer(batch)
        seconds.append(time.perf_counter() - start)
    return {
        "loaded_mib": loaded / MIB,
        "peak_mib": peak_rss_bytes() / MIB,
        "batch_s": min(seconds),
        "audio_s_per_s": clip_s * clips / min(seconds),
    }


def measure(bundle: Path, clip_s: float, clips: int, repeats: int) -> dict[str, Any]:
    """`measure_one` in a fresh interpreter, so the peak is this batch's alone."""
    command = [sys.executable, "-m", "bench.batch_memory", "--one", str(bundle)]
    command += [str(clip_s), str(clips), str(repeats)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def run(
    bundles: list[Path], caps_s: list[float], clips_s: list[float], repeats: int
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for bundle in bundles:
        rate_hz = OnnxBackend(bundle, device="cpu").metadata.sample_rate_hz
        for clip_s in clips_s:
            seen: dict[int, dict[str, Any]] = {}
            for cap_s in caps_s:
                clips = batch_size(clip_s, cap_s, rate_hz)
                if clips not in seen:
                    seen[clips] = measure(bundle, clip_s, clips, repeats)
                row = {"bundle": str(bundle), "clip_s": clip_s, "cap_s": cap_s, "clips": clips}
                rows.append({**row, "padded_s": clip_s * clips, **seen[clips]})
                print(format_row(rows[-1]), flush=True)
    return rows


def format_row(row: dict[str, Any]) -> str:
    return (
        f"{Path(row['bundle']).name:12} {row['clip_s']:4g} s clips  cap {row['cap_s']:4g} s: "
        f"{row['clips']:2d} clips ({row['padded_s']:5.1f} s)  loaded {row['loaded_mib']:6.0f} "
        f"MiB  peak {row['peak_mib']:6.0f} MiB  {row['audio_s_per_s']:7.1f} audio-s/s"
    )


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--one":  # the child of `measure`
        bundle, clip_s, clips, repeats = sys.argv[2:]
        print(json.dumps(measure_one(Path(bundle), float(clip_s), int(clips), int(repeats))))
        return
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--bundle", type=Path, action="append", required=True, help="repeatable")
    p.add_argument("--caps-s", type=_floats, default=[64.0, 96.0, 128.0], help="padded-audio caps")
    p.add_argument("--clips-s", type=_floats, default=[3.0, 10.0, 30.0], help="clip lengths")
    p.add_argument("--repeats", type=int, default=2, help="runs per batch; the best is reported")
    p.add_argument("--out", type=Path, default=None, help="write the rows as JSON")
    args = p.parse_args()
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "onnxruntime": ort.__version__,
        "max_batch_size": InferenceOptions().max_batch_size,
        "default_cap_s": InferenceOptions().max_batch_audio_s,
        "repeats": args.repeats,
        "rows": run(args.bundle, args.caps_s, args.clips_s, args.repeats),
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


def report_section(results: Results, model: str) -> list[str]:
    """In section 2 of docs/benchmarks.md: memory and throughput per padded-audio cap."""
    if "batch_memory" not in results:
        return []
    cmd, r = results["batch_memory"]
    lines = [
        "### What a batch's padded audio costs in memory",
        "",
        f"`{cmd}` ({r['machine']}, onnxruntime {r['onnxruntime']}, fp32 on the CPU; a fresh "
        f"process per batch; audio-s/s the best of {r['repeats']}, the machine shared). The "
        "batch is what the batching rule cuts from equal clips under each cap "
        f"(`max_batch_audio_s`; default {r['default_cap_s']:g} s, at most "
        f"{r['max_batch_size']} clips); peak is the process's VmHWM after it."
        + (f" {r['note']}" if r.get("note") else ""),
        "",
        "| bundle | clip s | cap s | clips | padded s | loaded MiB | peak MiB | audio-s/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        lines.append(
            f"| {Path(row['bundle']).parent.name}/{Path(row['bundle']).name} | {row['clip_s']:g} "
            f"| {row['cap_s']:g} | {row['clips']} | {row['padded_s']:g} "
            f"| {row['loaded_mib']:.0f} | {row['peak_mib']:.0f} | {row['audio_s_per_s']:.1f} |"
        )
    return [*lines, ""]


if __name__ == "__main__":
    main()
