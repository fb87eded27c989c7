"""The engine's layout on the CPU: streams for a short call, the default for a long one.

The model is a fake whose call takes a scripted time (a sleep), so the decision does not
depend on how busy the test machine is.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest

from emodistill.engine_layout import (
    PROBE_CALLS,
    PROBE_CLIP_S,
    SHORT_CALL_S,
    STREAM_BATCH_CLIPS,
    choose_layout,
)

RATE_HZ = 16_000


class ScriptedModel:
    """Sleeps the next scripted duration per call (the last one repeats); notes each batch."""

    def __init__(self, *durations_s: float) -> None:
        self.durations: Iterator[float] = iter(durations_s)
        self.last_s = durations_s[-1]
        self.batches: list[list[int]] = []

    def __call__(self, clips: list[np.ndarray]) -> object:
        self.batches.append([len(c) for c in clips])
        time.sleep(next(self.durations, self.last_s))
        return None


def test_a_short_call_runs_as_single_threaded_streams_in_24_s_batches() -> None:
    model = ScriptedModel(0.005)
    layout = choose_layout(model, cores=4, max_batch_audio_s=96.0, rate_hz=RATE_HZ)
    assert (layout.streams, layout.threads) == (4, 1)
    assert layout.batch_audio_s == STREAM_BATCH_CLIPS * PROBE_CLIP_S == 24.0
    assert "4 single-threaded calls" in layout.why
    assert model.batches == [[int(PROBE_CLIP_S * RATE_HZ)]]  # one 3 s clip, decided at once


def test_a_long_call_keeps_one_call_on_every_core_and_the_configured_budget() -> None:
    model = ScriptedModel(6 * SHORT_CALL_S)
    layout = choose_layout(model, cores=2, max_batch_audio_s=96.0, rate_hz=RATE_HZ)
    assert (layout.streams, layout.threads, layout.batch_audio_s) == (1, 0, 96.0)
    assert "one call on every core" in layout.why
    assert len(model.batches) == 1  # far past the line: no second call spent on it


def test_a_slow_first_call_is_timed_again_before_it_decides() -> None:
    # The first call pays for its allocations; the second shows the model's real time.
    model = ScriptedModel(2 * SHORT_CALL_S, 0.005)
    layout = choose_layout(model, cores=2, max_batch_audio_s=96.0, rate_hz=RATE_HZ)
    assert layout.streams == 2 and len(model.batches) == 2


def test_a_call_just_over_the_line_is_timed_at_most_probe_calls_times() -> None:
    model = ScriptedModel(1.5 * SHORT_CALL_S)
    layout = choose_layout(model, cores=2, max_batch_audio_s=96.0, rate_hz=RATE_HZ)
    assert layout.streams == 1 and len(model.batches) == PROBE_CALLS


@pytest.mark.parametrize("cap_s", [6.0, 24.0])
def test_the_streams_budget_never_exceeds_the_configured_one(cap_s: float) -> None:
    layout = choose_layout(ScriptedModel(0.001), cores=2, max_batch_audio_s=cap_s, rate_hz=RATE_HZ)
    assert layout.batch_audio_s == min(cap_s, 24.0)


def test_one_core_has_nothing_to_share_out_and_calls_nothing() -> None:
    model = ScriptedModel(0.001)
    layout = choose_layout(model, cores=1, max_batch_audio_s=96.0, rate_hz=RATE_HZ)
    assert (layout.streams, layout.threads, layout.batch_audio_s) == (1, 0, 96.0)
    assert model.batches == []
