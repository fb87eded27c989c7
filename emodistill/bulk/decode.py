"""Files -> decoded clips, in worker processes, in order, a chunk at a time, ahead of the model.

`decoded_chunks` yields lists of Decoded in the files' order. Behind it, a thread keeps
`2 × workers` files in the worker processes and assembles the next chunk while the caller
runs the model on this one (onnxruntime releases the GIL), so decoding overlaps inference.
`in_process=True` decodes in threads of this process instead, as the service does: no start-up
cost (spawning two workers took 0.4 s on 2 cores, where 24 WAV files decode in 30 ms), but a
decoder that crashes takes the run with it (emodistill/bulk/score.py picks it for short runs).
Memory stays bounded whatever the number of files: the caller's chunk, one chunk waiting,
one being assembled, and the files in flight.

A file that cannot be decoded (corrupt, not audio, too long, unreadable) comes back with its
error: it never stops the run. A worker that dies (a decoder crash, the OOM killer) takes
its in-flight files with it; those are decoded again one at a time in a fresh pool, so the
file that kills a worker is named and the others are not blamed.

Workers import this module alone (no onnxruntime, no model). Knows nothing of models or
output formats.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import cast

import numpy as np

from emodistill.audio_input import AudioLimits, decode_upload
from emodistill.bulk.inputs import InputError, read_input
from emodistill.errors import AudioError

# Files in the workers at once, per worker: enough that none waits for the next file.
FILES_IN_FLIGHT_PER_WORKER = 2
# The first chunks are 1/8, 1/4 and 1/2 of a full one: the model starts as soon as a little
# is decoded, rather than wait for a whole chunk (the tiny demo model on 2 cores: a run of
# 60 files of 2-8 s, one chunk in all, decoded everything before the model began).
RAMP_CHUNKS = 3
# How often a worker checks that its parent still runs.
PARENT_CHECK_S = 0.5
_END = object()  # the feeding thread's last item


@dataclass(frozen=True)
class Decoded:
    """One file: its float32 mono `samples` [samples] at the model's rate, or why not."""

    path: str
    samples: np.ndarray | None  # None when `error` says why
    duration_s: float  # the file's own length, before resampling; 0 when it failed
    error: str | None = None


def decode_path(path: str, limits: AudioLimits) -> Decoded:
    """Decode one file (a path or URI) as the service decodes an upload (in a worker process,
    or a Ray task: emodistill/bulk/ray.py)."""
    try:
        out = decode_upload(read_input(path), limits)
    except (AudioError, InputError) as err:  # InputError: a URI of no known filesystem
        return Decoded(path, None, 0.0, str(err))
    except FileNotFoundError:
        return Decoded(path, None, 0.0, "no such file")
    except OSError as err:
        return Decoded(path, None, 0.0, f"cannot read the file: {err.strerror or err}")
    except Exception as err:  # a decoder's own failure on odd bytes is this file's problem
        return Decoded(path, None, 0.0, f"decoder failed: {type(err).__name__}: {err}")
    return Decoded(path, out.samples, out.duration_s)


def _exit_with(parent_pid: int) -> None:
    """Leave when the parent is gone. A worker holds both ends of its task pipe, so a parent
    killed with SIGKILL would leave it waiting for tasks for ever (seen: orphans piling up
    after each killed run)."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_CHECK_S)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _pool(workers: int, in_process: bool = False) -> Executor:
    if in_process:
        return ThreadPoolExecutor(workers, thread_name_prefix="bulk-decoder")
    # spawn, not fork: the parent holds onnxruntime's threads, which a fork would copy mid-run.
    return ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_exit_with,
        initargs=(os.getpid(),),
    )


def _alone(path: str, limits: AudioLimits) -> Decoded:
    """Decode one file in a pool of its own: a worker's death is then this file's doing."""
    with _pool(1) as pool:
        try:
            return pool.submit(decode_path, path, limits).result()
        except BrokenProcessPool:
            return Decoded(path, None, 0.0, "the decoder process died on this file")


def _decode_in_order(
    paths: Iterable[str],
    limits: AudioLimits,
    workers: int,
    stop: threading.Event,
    in_process: bool,
) -> Iterator[Decoded]:
    files = iter(paths)
    in_flight: deque[tuple[str, Future[Decoded]]] = deque()
    pool = _pool(workers, in_process)
    try:
        while not stop.is_set():
            while len(in_flight) < FILES_IN_FLIGHT_PER_WORKER * workers:
                if (path := next(files, None)) is None:
                    break
                in_flight.append((path, pool.submit(decode_path, path, limits)))
            if not in_flight:
                return
            path, future = in_flight.popleft()
            try:
                yield future.result()
            except BrokenProcessPool:
                pool.shutdown(wait=False, cancel_futures=True)
                for p, f in [(path, future), *in_flight]:
                    ok = f.done() and not f.cancelled() and f.exception() is None
                    yield f.result() if ok else _alone(p, limits)
                in_flight.clear()
                pool = _pool(workers, in_process)
    finally:
        pool.shutdown(wait=not stop.is_set(), cancel_futures=True)


def decoded_chunks(
    paths: Iterable[str],
    limits: AudioLimits,
    workers: int,
    chunk_audio_s: float,
    chunk_files: int,
    in_process: bool = False,
) -> Generator[list[Decoded], None, None]:
    """The files decoded, in order, in chunks that close at `chunk_audio_s` seconds of audio
    or `chunk_files` files (the first RAMP_CHUNKS at less), by `workers` processes or, with
    `in_process`, threads; see the module doc."""
    ready: queue.Queue[object] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def put(item: object) -> None:
        while not stop.is_set():
            try:
                return ready.put(item, timeout=0.1)
            except queue.Full:
                continue

    def feed() -> None:
        try:
            chunk: list[Decoded] = []
            audio_s, share = 0.0, 1 / 2**RAMP_CHUNKS
            for decoded in _decode_in_order(paths, limits, workers, stop, in_process):
                chunk.append(decoded)
                audio_s += decoded.duration_s
                if audio_s >= share * chunk_audio_s or len(chunk) >= share * chunk_files:
                    put(chunk)
                    chunk, audio_s, share = [], 0.0, min(1.0, 2 * share)
            if chunk:
                put(chunk)
            put(_END)
        except BaseException as err:  # handed to the caller, who raises it
            put(err)

    feeder = threading.Thread(target=feed, name="bulk-decode", daemon=True)
    feeder.start()
    try:
        while (item := ready.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield cast(list[Decoded], item)  # the feeder puts chunks, errors and _END only
    finally:
        stop.set()
        feeder.join()
