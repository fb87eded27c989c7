"""The report's figure: the service's throughput and latency against concurrent clients, for
every service run in docs/bench/. Knows nothing of how the runs were measured."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.report import Results

# (benchmark name, its label in the legend), in the legend's order.
SERVICE_RUNS = (("service", "tiny"), ("service_base", "base"), ("service_gpu", "base, GPU"))


def plot_service(results: Results, path: Path) -> Path | None:
    """docs/bench/service.png (two panels: audio-s/s and p50/p99 latency); None without a
    service run."""
    services = {label: results[name][1] for name, label in SERVICE_RUNS if name in results}
    if not services:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for label, service in services.items():
        for mode, entry in service["modes"].items():
            levels = sorted(entry["levels"], key=int)
            xs = [int(c) for c in levels]
            name = f"{label}, {mode}"
            left.plot(xs, [entry["levels"][c]["audio_s_per_s"] for c in levels], "o-", label=name)
            right.plot(
                xs, [entry["levels"][c]["p50_ms"] for c in levels], "o-", label=f"{name} p50"
            )
            right.plot(
                xs, [entry["levels"][c]["p99_ms"] for c in levels], "x--", label=f"{name} p99"
            )
    for ax, title, unit in ((left, "throughput", "audio-seconds / s"), (right, "latency", "ms")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel(unit)
        ax.set_title(f"service {title} (2 s clips)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
