"""Dynamic batching of variable-length audio clips in front of one model backend.

Responsible for: queueing clips submitted by concurrent requests, cutting them into batches
(bounded by clip count, by a padded-sample budget and by how long the oldest clip may wait),
grouping clips of similar length, running each batch in a worker thread so the event loop
never blocks, and answering every caller with its own row of the output. It also bounds the
queue (`QueueFullError`), drops clips whose caller has left, and drains on shutdown.

Deliberately does not know: what the model is, how clips are padded or normalised, the sample
rate (a budget is a count of samples), or how metrics are exported. The backend is anything
with `infer(clips) -> array`; metrics arrive through the `on_batch` callback.

Grouping rule: the OLDEST waiting clip always goes in the next batch (so no clip starves and
none waits much longer than `max_wait_ms` behind a free backend). Its companions, by the
project's one batch-cutting rule (emodistill.batching.grow_batch, within `max_batch_size`,
`max_batch_samples` and `max_padding`), are either the waiting clips nearest to it in length
(`group_by_length=True`: least padding, but they pass older clips of other lengths) or the
next clips in arrival order (False: no clip is passed; the service's choice where a call
costs its padded audio, batch or not: service/model.py's resolve_autos).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from emodistill.batching import grow_batch

log = logging.getLogger(__name__)


class Backend(Protocol):
    def infer(self, clips: list[np.ndarray]) -> np.ndarray:
        """clips: B float32 arrays [T_i] -> an array whose first axis indexes them, e.g. [B, C]."""
        ...


# (size, padded_samples, queue_wait_s per clip, infer_s, ok): called once per batch, ok or not.
OnBatch = Callable[[int, int, list[float], float, bool], None]


@dataclass(frozen=True)
class BatcherConfig:
    """The batch limits, with no defaults: the service's are in its `Settings`, one home."""

    # Most clips in one backend call.
    max_batch_size: int
    # Padded-sample budget per batch: len(longest clip) × clips must not exceed it (as
    # text-embeddings-inference budgets tokens). A single longer clip still runs, alone.
    max_batch_samples: int
    # Padding per batch, as a fraction of its clips' own samples (emodistill.batching).
    max_padding: float
    # How long the oldest waiting clip may wait for company before its batch is sent anyway.
    max_wait_ms: float
    # Clips waiting (not yet sent to the backend); beyond it, `submit` raises QueueFullError.
    max_queue: int
    # True: fill the oldest clip's batch with the clips nearest in length (see module doc).
    # False: with the next clips in arrival order, while they fit.
    group_by_length: bool = True
    # Batches in the backend at once, each in its own thread (the backend must then be
    # thread-safe). 1: the next batch is cut only when the last has answered.
    in_flight: int = 1

    def __post_init__(self) -> None:
        if min(self.max_batch_size, self.max_batch_samples, self.max_queue, self.in_flight) < 1:
            raise ValueError(f"batch size, batch samples, queue and in_flight must be >= 1: {self}")
        if self.max_padding < 0:
            raise ValueError(f"max_padding must be >= 0, got {self.max_padding}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")


class QueueFullError(Exception):
    """The queue holds `max_queue` clips; try again in about `retry_after_s` seconds."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"batcher queue is full; retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


class RequestTooLargeError(Exception):
    """One request holds more clips than the whole queue: it could never be admitted."""

    def __init__(self, clips: int, max_queue: int) -> None:
        super().__init__(f"{clips} clips in one request; the queue holds at most {max_queue}")
        self.clips, self.max_queue = clips, max_queue


class BatcherClosedError(Exception):
    """The batcher is not running (not started, stopping or stopped)."""


@dataclass(eq=False)  # identity equality: entries are removed from lists by identity
class _Entry:
    clip: np.ndarray  # float32 [T]
    future: asyncio.Future[np.ndarray]  # the reply channel
    enqueued_s: float  # loop.time() at submit


class Batcher:
    """Serves `submit(clip)` calls by batching them into `backend.infer` calls.

    At most `config.in_flight` batches are in the backend at a time (one by default: the
    backend is the bottleneck, and clips arriving meanwhile form the next, fuller batch). A
    batch is cut only when a slot is free, from what is waiting then.
    """

    def __init__(
        self,
        backend: Backend,
        config: BatcherConfig,
        executor: Executor | None = None,
        on_batch: OnBatch | None = None,
    ) -> None:
        self._backend = backend
        self._config = config
        self._executor = executor
        self._owns_executor = executor is None
        self._on_batch = on_batch
        self._waiting: list[_Entry] = []  # arrival order: the oldest first
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._s_per_clip: float | None = None  # moving average, for retry_after_s
        self._in_flight: set[asyncio.Task[None]] = set()

    @property
    def queue_depth(self) -> int:
        """Clips waiting for a batch (those in flight are not counted)."""
        return len(self._waiting)

    async def start(self) -> None:
        if self._task is not None or self._closing:
            raise RuntimeError("a Batcher starts once")
        if self._executor is None:
            # A thread per batch in flight: with one, the backend need not be thread-safe.
            self._executor = ThreadPoolExecutor(
                max_workers=self._config.in_flight, thread_name_prefix="batcher"
            )
        self._task = asyncio.get_running_loop().create_task(self._run(), name="batcher")

    async def submit(self, clip: np.ndarray) -> np.ndarray:
        """clip: float32 [T] -> this clip's row of the backend output (e.g. logits [C]).

        Raises QueueFullError, BatcherClosedError, or the backend's exception for its batch.
        """
        return (await self.submit_many([clip]))[0]

    async def submit_many(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        """Several clips of one request, admitted together or not at all: each clip's row.

        Raises RequestTooLargeError when they could never fit the queue, QueueFullError when
        they do not fit it now (no clip of them is queued either way), BatcherClosedError, or
        the backend's exception for a batch of theirs.
        """
        futures = self.enqueue(clips)
        try:
            return list(await asyncio.gather(*futures))
        except BaseException:
            # The client left, or one clip's batch failed: forget the rest of its clips now
            # so they are never sent and not counted.
            self.forget(futures)
            raise

    def enqueue(self, clips: list[np.ndarray]) -> list[asyncio.Future[np.ndarray]]:
        """`submit_many`'s admission alone, for callers that answer from callbacks (the model
        process): each clip's future. Raises as `submit_many` does before queueing; a clip
        whose future is cancelled never runs (`forget` also takes it off the queue now)."""
        if self._task is None or self._closing:
            raise BatcherClosedError("batcher is not running")
        arrays = [np.asarray(c, dtype=np.float32) for c in clips]
        if any(a.ndim != 1 for a in arrays):
            raise ValueError(f"a clip is 1-D [T], got shapes {[a.shape for a in arrays]}")
        if len(arrays) > self._config.max_queue:
            raise RequestTooLargeError(len(arrays), self._config.max_queue)
        if len(self._waiting) + len(arrays) > self._config.max_queue:
            raise QueueFullError(self._retry_after_s())
        loop = asyncio.get_running_loop()
        entries = [_Entry(a, loop.create_future(), loop.time()) for a in arrays]
        self._waiting.extend(entries)
        self._wakeup.set()
        return [e.future for e in entries]

    def forget(self, futures: list[asyncio.Future[np.ndarray]]) -> None:
        """Cancel these clips: those still waiting leave the queue and never run."""
        for future in futures:
            if not future.cancel() and not future.cancelled():
                future.exception()  # answered just as its caller left: mark it read
        gone = set(map(id, futures))
        self._waiting = [e for e in self._waiting if id(e.future) not in gone]

    async def stop(self, drain: bool = True) -> None:
        """Refuse new clips; then answer every queued and in-flight clip before returning.

        drain=False fails the queued clips with BatcherClosedError instead of running them
        (the batch in flight still finishes: a thread cannot be interrupted).
        """
        self._closing = True
        if not drain:
            self._fail_waiting(BatcherClosedError("batcher stopped before this clip ran"))
        self._wakeup.set()
        if self._task is not None:
            await self._task
        if self._owns_executor and self._executor is not None:
            self._executor.shutdown(wait=False)  # its one thread is idle by now

    # --- the loop -------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        max_wait_s = self._config.max_wait_ms / 1000
        try:
            while True:
                if len(self._in_flight) >= self._config.in_flight:
                    # Every slot is busy: cut the next batch when one frees, from what waits then.
                    await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
                    continue
                # Clips whose caller left are dropped here, before any batch is cut.
                self._waiting = [e for e in self._waiting if not e.future.done()]
                if not self._waiting:
                    if self._closing:
                        if self._in_flight:  # drained only when every batch has answered
                            await asyncio.wait(self._in_flight)
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                batch, full = self._cut()
                wait_s = self._waiting[0].enqueued_s + max_wait_s - loop.time()
                if not full and not self._closing and wait_s > 0:
                    # Room left: wait for company, stop(), or the oldest clip's deadline;
                    # then cut again from what is waiting then.
                    self._wakeup.clear()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._wakeup.wait(), wait_s)
                    continue
                chosen = set(batch)
                self._waiting = [e for e in self._waiting if e not in chosen]
                task = loop.create_task(self._run_batch(batch), name="batch")
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)
        finally:
            # Reached only on stop or on an unexpected error: no caller may wait forever.
            self._closing = True
            self._fail_waiting(BatcherClosedError("batcher stopped before this clip ran"))

    def _cut(self) -> tuple[list[_Entry], bool]:
        """The next batch from the waiting clips, and whether it is full (it holds
        `max_batch_size` clips, or a waiting clip was left out for lack of budget or for its
        length)."""
        cfg = self._config
        anchor = self._waiting[0]
        if cfg.group_by_length:
            order = sorted(self._waiting, key=lambda e: len(e.clip))
            start = next(i for i, e in enumerate(order) if e is anchor)
        else:
            order, start = self._waiting, 0
        lengths = [len(e.clip) for e in order]
        lo, hi = grow_batch(
            lengths, start, cfg.max_batch_size, cfg.max_batch_samples, cfg.max_padding
        )
        batch = order[lo : hi + 1]
        return batch, len(batch) == cfg.max_batch_size or len(batch) < len(order)

    async def _run_batch(self, batch: list[_Entry]) -> None:
        loop = asyncio.get_running_loop()
        queue_wait_s = [loop.time() - e.enqueued_s for e in batch]
        padded_samples = max(len(e.clip) for e in batch) * len(batch)
        clips = [e.clip for e in batch]
        started_s = time.perf_counter()
        ok = False
        try:
            out = np.asarray(await loop.run_in_executor(self._executor, self._backend.infer, clips))
            if out.ndim == 0 or out.shape[0] != len(batch):
                raise ValueError(f"backend returned shape {out.shape} for {len(batch)} clips")
        except asyncio.CancelledError:
            # The loop itself is being cancelled (e.g. the event loop is closing).
            self._fail(batch, BatcherClosedError("batcher cancelled while this clip ran"))
            raise
        except Exception as exc:
            # This batch's callers get the error; the loop goes on with the next batch.
            self._fail(batch, exc)
        else:
            ok = True
            for i, entry in enumerate(batch):
                if not entry.future.done():  # cancelled by a caller who left meanwhile
                    entry.future.set_result(out[i])
        infer_s = time.perf_counter() - started_s
        per_clip_s = infer_s / len(batch)
        self._s_per_clip = (
            per_clip_s if self._s_per_clip is None else 0.8 * self._s_per_clip + 0.2 * per_clip_s
        )
        if self._on_batch is not None:
            try:
                self._on_batch(len(batch), padded_samples, queue_wait_s, infer_s, ok)
            except Exception:
                log.exception("on_batch callback failed")  # metrics must not stop serving

    # --- helpers --------------------------------------------------------------------------

    def _retry_after_s(self) -> int:
        """Seconds until the queue has likely drained: depth × recent seconds per clip."""
        if self._s_per_clip is None:
            return 1
        clips_ahead = len(self._waiting) + 1
        return max(1, math.ceil(clips_ahead * self._s_per_clip / self._config.in_flight))

    def _fail_waiting(self, exc: BaseException) -> None:
        waiting, self._waiting = self._waiting, []
        self._fail(waiting, exc)

    @staticmethod
    def _fail(entries: list[_Entry], exc: BaseException) -> None:
        for entry in entries:
            if not entry.future.done():
                entry.future.set_exception(exc)
