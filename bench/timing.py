"""The one timing rule every benchmark here uses."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def timed(run: Callable[..., object], repeats: int, *args: object) -> float:
    """Median wall seconds of `run(*args)` over `repeats` runs, after one warm-up run."""
    run(*args)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timed_together(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall seconds of each run, timed in alternation: one warm-up each, then `repeats`
    rounds that time every run once (the order rotating each round). A slow spell of a shared
    machine then lands on all of them alike, so their ratios stay honest."""
    names = list(runs)
    for name in names:
        runs[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}
