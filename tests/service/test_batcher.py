"""The batcher on a fake backend: who gets which row, batch limits, grouping, failures, shutdown.

Timing bounds are generous (the machine is shared): they catch a batcher that ignores a
deadline by seconds, not one that is a few milliseconds late. Ordering is made deterministic by
holding the fake backend on a gate (a threading.Event) rather than by sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np
import pytest

from service.batcher import (
    Batcher,
    BatcherClosedError,
    BatcherConfig,
    QueueFullError,
)

FAIL = -1.0  # a clip tagged with this makes its batch raise
SHORT_OUTPUT = -2.0  # ... or return one row too few


class FakeBackend:
    """For each clip of a batch: [n_samples, first sample (the caller's tag), batch size]."""

    def __init__(self, delay_s: float = 0.0, held: bool = False) -> None:
        self.delay_s = delay_s
        self.batches: list[list[int]] = []  # clip lengths per call
        self.tags: list[list[float]] = []  # clip tags per call
        self.entered = threading.Event()  # set once a call has started
        self.gate = threading.Event()  # calls wait here until it is set
        if not held:
            self.gate.set()

    def infer(self, clips: list[np.ndarray]) -> np.ndarray:
        self.batches.append([len(c) for c in clips])
        self.tags.append([float(c[0]) for c in clips])
        self.entered.set()
        assert self.gate.wait(timeout=10), "test never opened the gate"
        if self.delay_s:
            time.sleep(self.delay_s)
        if any(c[0] == FAIL for c in clips):
            raise RuntimeError("boom")
        rows = np.array([[len(c), c[0], len(clips)] for c in clips], dtype=np.float64)
        return rows[:-1] if any(c[0] == SHORT_OUTPUT for c in clips) else rows


def clip(n_samples: int, tag: float) -> np.ndarray:
    """float32 [n_samples], every sample equal to `tag` (exact for integer tags < 2**24)."""
    return np.full(n_samples, tag, dtype=np.float32)


def run(main: Callable[[], Awaitable[Any]]) -> Any:
    """asyncio.run, failing the test on anything the loop's exception handler sees (e.g. an
    InvalidStateError in a callback, or a task's exception that nobody retrieved)."""
    problems: list[dict[str, Any]] = []

    async def wrapped() -> Any:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: problems.append(ctx))
        return await main()

    result = asyncio.run(wrapped())
    assert not problems, problems
    return result


def config(**overrides: Any) -> BatcherConfig:
    """The tests' batcher settings (the service's defaults live in its Settings)."""
    settings: dict[str, Any] = {
        "max_batch_size": 8,
        "max_batch_samples": 1_000_000,
        "max_padding": math.inf,  # grouping by length alone; the bound has its own tests
        "max_wait_ms": 5.0,
        "max_queue": 1000,
    }
    return BatcherConfig(**{**settings, **overrides})


@contextlib.asynccontextmanager
async def running(backend: FakeBackend, **overrides: Any) -> AsyncIterator[Batcher]:
    batcher = Batcher(backend, config(**overrides))
    await batcher.start()
    try:
        yield batcher
    finally:
        backend.gate.set()
        await batcher.stop()


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.001)


async def hold_backend(
    batcher: Batcher, backend: FakeBackend, n_clips: int = 1
) -> asyncio.Future[list[np.ndarray]]:
    """Put n_clips clips (tag 0) in flight, stuck on the closed gate; returns their answers."""
    blockers = asyncio.gather(*(batcher.submit(clip(10, 0)) for _ in range(n_clips)))
    await until(backend.entered.is_set)
    return blockers


def batches_of_a_held_queue(lengths: list[int], **overrides: Any) -> list[list[int]]:
    """The batches (clip lengths) cut from clips of `lengths`, all queued behind a held
    backend before any is cut, in the order they were sent."""
    backend = FakeBackend(held=True)

    async def main() -> None:
        async with running(backend, **overrides) as b:
            blocker = await hold_backend(b, backend)
            tasks = [asyncio.create_task(b.submit(clip(n, i + 1))) for i, n in enumerate(lengths)]
            await until(lambda: b.queue_depth == len(lengths))
            backend.gate.set()
            await asyncio.gather(blocker, *tasks)

    run(main)
    return backend.batches[1:]  # after the blocker's


def test_each_caller_gets_its_own_row_under_concurrency() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 4000, size=300)
    delays_s = rng.uniform(0, 0.02, size=300)
    backend = FakeBackend()

    async def caller(b: Batcher, i: int) -> np.ndarray:
        await asyncio.sleep(delays_s[i])  # staggered arrivals
        return await b.submit(clip(int(lengths[i]), i + 1))

    async def main() -> list[np.ndarray]:
        async with running(backend, max_batch_size=16, max_wait_ms=2) as b:
            return await asyncio.gather(*(caller(b, i) for i in range(300)))

    rows = run(main)
    for i, row in enumerate(rows):
        assert row[0] == lengths[i] and row[1] == i + 1
        assert 1 <= row[2] <= 16
    assert all(len(batch) <= 16 for batch in backend.batches)
    sent = sorted(t for tags in backend.tags for t in tags)
    assert sent == list(range(1, 301))  # each clip sent exactly once
    assert len(backend.batches) < 300  # and some were batched


def test_padded_budget_holds_and_an_overlong_clip_runs_alone() -> None:
    rng = np.random.default_rng(1)
    lengths = [*rng.integers(50, 300, size=20).tolist(), 5000]
    backend = FakeBackend()

    async def main() -> list[np.ndarray]:
        async with running(backend, max_batch_size=8, max_batch_samples=1000) as b:
            return await asyncio.gather(*(b.submit(clip(n, i + 1)) for i, n in enumerate(lengths)))

    rows = run(main)
    assert [int(r[0]) for r in rows] == lengths
    for batch in backend.batches:
        assert len(batch) == 1 or max(batch) * len(batch) <= 1000, batch
    assert [5000] in backend.batches


def test_a_lone_clip_waits_at_most_max_wait() -> None:
    backend = FakeBackend()

    async def main() -> float:
        async with running(backend, max_wait_ms=50) as b:
            started_s = time.perf_counter()
            await b.submit(clip(100, 1))
            return time.perf_counter() - started_s

    assert run(main) < 0.05 + 1.0  # generous slack for a shared machine
    assert backend.batches == [[100]]


def test_clips_arriving_together_share_a_batch_without_waiting() -> None:
    backend = FakeBackend()

    async def main() -> float:
        # max_wait is 10 s: a full batch must go at once, not at the deadline.
        async with running(backend, max_batch_size=8, max_wait_ms=10_000) as b:
            started_s = time.perf_counter()
            rows = await asyncio.gather(*(b.submit(clip(100, i + 1)) for i in range(8)))
            assert all(r[2] == 8 for r in rows)
            return time.perf_counter() - started_s

    assert run(main) < 5.0
    assert backend.batches == [[100] * 8]


@pytest.mark.parametrize("group_by_length", [True, False])
def test_similar_lengths_are_grouped(group_by_length: bool) -> None:
    lengths = [100, 10_000] * 8  # short and long interleaved in arrival order
    batches = batches_of_a_held_queue(lengths, group_by_length=group_by_length, max_wait_ms=1)
    if group_by_length:
        assert sorted(batches) == [[100] * 8, [10_000] * 8]
    else:
        assert batches == [lengths[:8], lengths[8:]]  # arrival order mixes them


def test_a_full_queue_refuses_with_retry_after_and_keeps_the_queued() -> None:
    backend = FakeBackend(held=True)

    async def main() -> None:
        async with running(backend, max_queue=4, max_wait_ms=1) as b:
            blocker = await hold_backend(b, backend)  # in flight: not counted as waiting
            tasks = [asyncio.create_task(b.submit(clip(10, i + 1))) for i in range(4)]
            await until(lambda: b.queue_depth == 4)
            with pytest.raises(QueueFullError) as refused:
                await b.submit(clip(10, 99))
            assert isinstance(refused.value.retry_after_s, int)
            assert refused.value.retry_after_s >= 1
            backend.gate.set()
            rows = await asyncio.gather(*tasks)
            assert [r[1] for r in rows] == [1, 2, 3, 4]
            assert (await blocker)[0][1] == 0

    run(main)


def test_a_backend_error_fails_only_its_batch() -> None:
    backend = FakeBackend()

    async def main() -> None:
        async with running(backend, max_batch_size=4, max_wait_ms=5000) as b:
            tags = [1, FAIL, 2, 3]
            failed = await asyncio.gather(
                *(b.submit(clip(10, t)) for t in tags), return_exceptions=True
            )
            assert all(isinstance(r, RuntimeError) and str(r) == "boom" for r in failed)
            short = await asyncio.gather(
                *(b.submit(clip(10, t)) for t in [4, SHORT_OUTPUT, 5, 6]), return_exceptions=True
            )
            assert all(isinstance(r, ValueError) for r in short)  # 3 rows for 4 clips
            rows = await asyncio.gather(*(b.submit(clip(10, t)) for t in [7, 8, 9, 10]))
            assert [r[1] for r in rows] == [7, 8, 9, 10]

    run(main)


def test_a_cancelled_request_is_not_sent_and_breaks_nothing() -> None:
    backend = FakeBackend(held=True)

    async def main() -> None:
        async with running(backend, max_wait_ms=1) as b:
            blocker = await hold_backend(b, backend)
            a, gone, c = (asyncio.create_task(b.submit(clip(10, t))) for t in (1, 2, 3))
            await until(lambda: b.queue_depth == 3)
            gone.cancel()
            with pytest.raises(asyncio.CancelledError):
                await gone
            assert b.queue_depth == 2  # forgotten at once
            blocker.cancel()  # its clip is in flight: the answer must be dropped quietly
            with pytest.raises(asyncio.CancelledError):
                await blocker
            backend.gate.set()
            assert [(await a)[1], (await c)[1]] == [1, 3]
            assert (await b.submit(clip(10, 4)))[1] == 4  # still serving

    run(main)
    sent = [t for tags in backend.tags for t in tags]
    assert 2 not in sent and sorted(sent) == [0, 1, 3, 4]


def test_stop_with_drain_answers_everything_queued() -> None:
    backend = FakeBackend(held=True)

    async def main() -> None:
        # max_wait is 10 s: draining must not wait for the deadline (the last batch is not
        # full), and the blocking batch is full so that it goes at once.
        b = Batcher(backend, config(max_batch_size=2, max_wait_ms=10_000, max_queue=100))
        await b.start()
        blocker = await hold_backend(b, backend, n_clips=2)
        tasks = [asyncio.create_task(b.submit(clip(10, i + 1))) for i in range(5)]
        await until(lambda: b.queue_depth == 5)
        started_s = time.perf_counter()
        stopping = asyncio.create_task(b.stop(drain=True))
        await asyncio.sleep(0)  # let stop() begin: from now on, new clips are refused
        with pytest.raises(BatcherClosedError):
            await b.submit(clip(10, 99))
        assert not stopping.done()  # the blocked batch is still in flight
        backend.gate.set()
        await stopping
        assert time.perf_counter() - started_s < 5.0
        assert blocker.done() and all(t.done() for t in tasks)
        assert [t.result()[1] for t in tasks] == [1, 2, 3, 4, 5]
        with pytest.raises(BatcherClosedError):
            await b.submit(clip(10, 100))

    run(main)
    assert all(len(batch) <= 2 for batch in backend.batches)


def test_stop_without_drain_fails_the_queued_and_finishes_the_in_flight() -> None:
    backend = FakeBackend(held=True)

    async def main() -> None:
        b = Batcher(backend, config(max_wait_ms=1, max_queue=100))
        await b.start()
        blocker = await hold_backend(b, backend)
        tasks = [asyncio.create_task(b.submit(clip(10, i + 1))) for i in range(3)]
        await until(lambda: b.queue_depth == 3)
        stopping = asyncio.create_task(b.stop(drain=False))
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, BatcherClosedError) for r in results)
        backend.gate.set()
        await stopping
        assert (await blocker)[0][1] == 0

    run(main)
    assert backend.tags == [[0]]


def test_on_batch_reports_consistent_numbers() -> None:
    backend = FakeBackend()
    calls: list[tuple[int, int, list[float], float, bool]] = []

    async def main() -> None:
        b = Batcher(
            backend,
            config(max_batch_size=4, max_wait_ms=20, max_queue=100),
            on_batch=lambda *args: calls.append(args),
        )
        await b.start()
        await asyncio.gather(*(b.submit(clip(10 * (i + 1), i + 1)) for i in range(10)))
        with pytest.raises(RuntimeError):
            await b.submit(clip(10, FAIL))
        await b.stop()

    run(main)
    assert len(calls) == len(backend.batches)
    for (size, padded, waits_s, infer_s, ok), lengths, tags in zip(
        calls, backend.batches, backend.tags, strict=True
    ):
        assert size == len(lengths) == len(waits_s)
        assert padded == max(lengths) * size
        assert all(0 <= w < 5.0 for w in waits_s) and 0 <= infer_s < 5.0
        assert ok == (FAIL not in tags)
    assert sum(c[0] for c in calls) == 11 and [c[4] for c in calls].count(False) == 1


def test_a_failing_on_batch_does_not_stop_serving() -> None:
    def broken(*_: Any) -> None:
        raise RuntimeError("metrics down")

    async def main() -> None:
        b = Batcher(FakeBackend(), config(max_wait_ms=1), on_batch=broken)
        await b.start()
        assert (await b.submit(clip(10, 1)))[1] == 1
        assert (await b.submit(clip(10, 2)))[1] == 2
        await b.stop()

    run(main)


def test_the_event_loop_stays_responsive_while_the_backend_works() -> None:
    backend = FakeBackend(delay_s=0.2)

    async def main() -> int:
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                await asyncio.sleep(0.01)
                ticks += 1

        async with running(backend, max_wait_ms=1) as b:
            ticking = asyncio.create_task(ticker())
            await b.submit(clip(10, 1))
            stop.set()
            await ticking
        return ticks

    assert run(main) >= 5  # ~20 expected in 0.2 s; a blocked loop would manage 0 or 1


def test_submit_before_start_and_bad_settings_are_refused() -> None:
    async def main() -> None:
        b = Batcher(FakeBackend(), config())
        with pytest.raises(BatcherClosedError):
            await b.submit(clip(10, 1))
        await b.start()
        with pytest.raises(ValueError):
            await b.submit(np.zeros((2, 10), dtype=np.float32))
        await b.stop()

    run(main)
    with pytest.raises(ValueError):
        config(max_batch_size=0)
    with pytest.raises(ValueError):
        config(max_wait_ms=-1)


def test_no_wait_sends_a_lone_clip_at_once_and_batches_what_arrives_meanwhile() -> None:
    """max_wait_ms=0 (the service default): an idle backend gets a lone clip immediately;
    clips arriving while a batch runs leave together as the next batch."""
    backend = FakeBackend(held=True)

    async def main() -> tuple[float, list[np.ndarray]]:
        async with running(backend, max_batch_size=8, max_wait_ms=0) as b:
            started_s = time.perf_counter()
            first = asyncio.ensure_future(b.submit(clip(10, 1)))
            await until(backend.entered.is_set)  # sent with no company and no wait
            sent_after_s = time.perf_counter() - started_s
            later = [asyncio.ensure_future(b.submit(clip(10, i))) for i in range(2, 8)]
            await until(lambda: b.queue_depth == 6)
            backend.gate.set()
            return sent_after_s, await asyncio.gather(first, *later)

    sent_after_s, rows = run(main)
    assert sent_after_s < 1.0  # no deadline to wait for; generous for a shared machine
    assert [len(batch) for batch in backend.batches] == [1, 6]
    assert [row[1] for row in rows] == list(range(1, 8))


class OverlapBackend(FakeBackend):
    """FakeBackend that counts the calls running at once (several batches in flight)."""

    def __init__(self, delay_s: float = 0.0, held: bool = False) -> None:
        super().__init__(delay_s, held)
        self.lock = threading.Lock()
        self.running = 0
        self.most_at_once = 0

    def infer(self, clips: list[np.ndarray]) -> np.ndarray:
        with self.lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            return super().infer(clips)
        finally:
            with self.lock:
                self.running -= 1


@pytest.mark.parametrize("in_flight", [1, 2])
def test_a_batch_starts_while_another_is_held_only_with_a_free_slot(in_flight: int) -> None:
    backend = OverlapBackend(held=True)

    async def main() -> list[np.ndarray]:
        async with running(backend, max_batch_size=1, max_wait_ms=0, in_flight=in_flight) as b:
            first = await hold_backend(b, backend)
            second = asyncio.ensure_future(b.submit(clip(10, 2)))
            if in_flight == 2:
                await until(lambda: backend.running == 2)  # both held in the backend at once
            else:
                await until(lambda: b.queue_depth == 1)
                await asyncio.sleep(0.05)
                assert backend.running == 1 and b.queue_depth == 1  # waits for the one slot
            backend.gate.set()
            return [*(await first), await second]

    rows = run(main)
    assert [row[1] for row in rows] == [0, 2]
    assert backend.most_at_once == in_flight


def test_each_caller_gets_its_own_row_with_batches_in_flight_at_once() -> None:
    rng = np.random.default_rng(1)
    lengths = rng.integers(1, 4000, size=200)
    backend = OverlapBackend(delay_s=0.005)

    async def caller(b: Batcher, i: int) -> np.ndarray:
        await asyncio.sleep(float(rng.uniform(0, 0.02)))
        return await b.submit(clip(int(lengths[i]), i + 1))

    async def main() -> list[np.ndarray]:
        async with running(backend, max_batch_size=8, max_wait_ms=1, in_flight=3) as b:
            return await asyncio.gather(*(caller(b, i) for i in range(200)))

    rows = run(main)
    assert [(row[0], row[1]) for row in rows] == [(lengths[i], i + 1) for i in range(200)]
    assert sorted(t for tags in backend.tags for t in tags) == list(range(1, 201))  # once each
    assert 2 <= backend.most_at_once <= 3


def test_stop_with_drain_waits_for_every_batch_in_flight() -> None:
    backend = OverlapBackend(held=True)

    async def main() -> None:
        b = Batcher(backend, config(max_batch_size=1, max_wait_ms=0, in_flight=2))
        await b.start()
        held = [asyncio.ensure_future(b.submit(clip(10, i))) for i in (1, 2)]
        queued = asyncio.ensure_future(b.submit(clip(10, 3)))
        await until(lambda: backend.running == 2 and b.queue_depth == 1)
        stopping = asyncio.create_task(b.stop(drain=True))
        await asyncio.sleep(0.05)
        assert not stopping.done()  # two batches are still in the backend
        backend.gate.set()
        await stopping
        assert [(await t)[1] for t in (*held, queued)] == [1, 2, 3]

    run(main)


def test_in_flight_must_be_at_least_one() -> None:
    with pytest.raises(ValueError):
        config(in_flight=0)


def test_the_padding_bound_cuts_mixed_lengths_into_separate_calls() -> None:
    lengths = [1000, 1040, 3000, 3100] * 2
    batches = batches_of_a_held_queue(lengths, max_padding=0.1, max_wait_ms=1)
    # Room for all 8 in one call (8 clips, 1e6 samples), but not within 10 % of padding.
    assert sorted(batches) == [[1000, 1000, 1040, 1040], [3000, 3000, 3100, 3100]]


@pytest.mark.parametrize("group_by_length", [True, False])
def test_in_arrival_order_no_clip_is_passed_by_a_newer_one(group_by_length: bool) -> None:
    """By length, the oldest clip's batch takes the nearest lengths from anywhere in the
    queue, passing older clips of other lengths; in arrival order (the service's order on
    the CPU for a large model), each batch is the next clips that fit, so batches leave in
    arrival order."""
    lengths = [1000, 3000, 1000, 3000, 3050, 1000]
    overrides = {"group_by_length": group_by_length, "max_padding": 0.1, "max_wait_ms": 1}
    batches = batches_of_a_held_queue(lengths, **overrides)
    if group_by_length:
        assert batches == [[1000, 1000, 1000], [3000, 3000, 3050]]
    else:
        assert batches == [[1000], [3000], [1000], [3000, 3050], [1000]]
