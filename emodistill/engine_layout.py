"""How the model runs on this host's CPU: how many model calls run at once (streams), on how
many threads each, and how much padded audio one call takes. Decided at warm-up, from how
long the model takes for one clip on one thread.

One call on every core (onnxruntime's default) gives a lone request its answer soonest. But
an operator shared out over the cores ends at a barrier: every core waits for the slowest,
and in a service the slowest is the one the event loop has just taken (parsing, decoding and
answering the next requests). A small model's operators are short, so it meets a barrier
every few microseconds. On the 2-core bench machine the tiny demo student behind the service
answered 1.5–1.7× more requests per second as two single-threaded calls at once, in batches
of at most 24 s of audio, than as one call on both cores in batches of up to 96 s
(docs/benchmarks.md, section 9). In the engine alone, with nothing else on the cores, the
gain was 1.0–1.5× and varied from run to run, too little and too noisy to decide by.

A long call (HuBERT-base: about 1.5 s per 3 s clip on one core) keeps the default: its
threads mostly have the cores to themselves, and one core per call would double a lone
request's wait.

Torch-free; knows nothing of HTTP or of the batcher, which is given the result as numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# A typical utterance: the benchmarks' clip, and about IEMOCAP's median.
PROBE_CLIP_S = 3.0
# A model whose call on one such clip takes at most this on one thread runs as streams.
SHORT_CALL_S = 0.1
# Streams take batches of at most this many probe clips' audio (24 s): in the service, two
# calls of 24 s beat two of 6 s by 10–30 % in requests/s (each call has its own costs:
# padding, the thread hand-off, the answers), and two of 96 s by more (a large batch's
# activations leave the cache).
STREAM_BATCH_CLIPS = 8
# Calls timed at most; the fastest counts (the first pays for its allocations, and other
# work only ever adds time).
PROBE_CALLS = 3

Infer = Callable[[list[np.ndarray]], object]


@dataclass(frozen=True)
class EngineLayout:
    """streams: model calls at once; threads: onnxruntime threads per call (0: its default,
    a thread per core); batch_audio_s: padded audio per call; why: what decided it."""

    streams: int
    threads: int
    batch_audio_s: float
    why: str


def choose_layout(
    single: Infer, cores: int, max_batch_audio_s: float, rate_hz: int
) -> EngineLayout:
    """The layout for this host: `single` runs a batch of clips (float32 [samples] each) on
    one thread."""
    if cores < 2:
        return EngineLayout(1, 0, max_batch_audio_s, "one core: nothing to share out")
    samples = int(PROBE_CLIP_S * rate_hz)
    clip = (0.01 * np.random.default_rng(0).standard_normal(samples)).astype(np.float32)
    call_s = float("inf")
    for _ in range(PROBE_CALLS):
        start = time.perf_counter()
        single([clip])
        call_s = min(call_s, time.perf_counter() - start)
        if call_s <= SHORT_CALL_S or call_s > 5 * SHORT_CALL_S:
            break  # decided: a slower call cannot change the minimum's side
    took = f"a {PROBE_CLIP_S:.0f} s clip takes {1000 * call_s:.0f} ms on one thread"
    if call_s > SHORT_CALL_S:
        return EngineLayout(1, 0, max_batch_audio_s, f"{took}: one call on every core")
    batch_audio_s = min(max_batch_audio_s, STREAM_BATCH_CLIPS * PROBE_CLIP_S)
    return EngineLayout(cores, 1, batch_audio_s, f"{took}: {cores} single-threaded calls")
