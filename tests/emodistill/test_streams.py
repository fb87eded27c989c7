"""Streams: a lone call on every core, a call beside another on one thread, answers unchanged."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from emodistill.runtime import OnnxBackend
from emodistill.streams import Streams
from export.parity import probe_clips


class GatedSession:
    """Answers [[its tag]] per clip; the first call waits on `gate` until the test opens it."""

    def __init__(self, tag: float, inner: OnnxBackend) -> None:
        self.tag, self.calls = tag, 0
        self.metadata, self.provider, self.model_file = (
            inner.metadata,
            inner.provider,
            inner.model_file,
        )
        self.entered, self.gate = threading.Event(), threading.Event()
        self.warmed: list[tuple[int, float]] = []

    def infer(self, clips: list[np.ndarray]) -> np.ndarray:
        self.calls += 1
        self.entered.set()
        assert self.gate.wait(10), "test never opened the gate"
        return np.full((len(clips), 1), self.tag, dtype=np.float32)

    def warm_up(self, batch_size: int, seconds: float) -> float:
        self.warmed.append((batch_size, seconds))
        return 0.5


def test_a_lone_call_takes_every_core_and_a_call_beside_it_one_thread(bundle: Path) -> None:
    inner = OnnxBackend(bundle, "cpu")
    alone, beside = GatedSession(1.0, inner), GatedSession(2.0, inner)
    beside.gate.set()
    streams = Streams(alone, beside)
    clip = np.zeros(1600, dtype=np.float32)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(streams.infer, [clip])
        assert alone.entered.wait(10)  # held: running
        second = streams.infer([clip, clip])  # starts beside it
        alone.gate.set()
        assert first.result()[0, 0] == 1.0 and second[:, 0].tolist() == [2.0, 2.0]
    assert streams.infer([clip])[0, 0] == 1.0  # none running again: alone
    assert (alone.calls, beside.calls) == (2, 1)
    assert streams.warm_up(4, 0.5) == 1.0 and alone.warmed == beside.warmed == [(4, 0.5)]
    assert streams.metadata is inner.metadata and streams.provider == inner.provider


def test_streams_answer_bit_for_bit_as_one_call_on_every_core(bundle: Path) -> None:
    backend = OnnxBackend(bundle, "cpu")
    clips = probe_clips(6, 0.5, 3.0, 16_000)
    expected = backend.infer(clips)
    streams = Streams(backend, backend.with_threads(1))
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: streams.infer(clips), range(8)))
    assert all(np.array_equal(a, expected) for a in answers)
    assert np.array_equal(streams.beside.infer(clips), expected)  # one thread alone, too
