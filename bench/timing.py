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
