"""Several model calls at once on the CPU, each on one core, with a lone call on all of them.

One call on every core (onnxruntime's default) answers a lone request soonest. Under load it
can waste the cores: an operator shared out over them ends at a barrier where every core
waits for the slowest, and in a service the slowest is the one the event loop has just taken
(parsing, decoding and answering the next requests). A small model's operators are short,
so it meets a barrier every few microseconds. Behind the service on the 2-core bench machine,
the tiny demo student answered 1.55–1.66× more requests per second as two single-threaded
calls at once, in batches of at most 24 s of audio, than as one call on both cores in
batches of up to 96 s, with a lower p99 (docs/service-profile.md).

A large model's operators are long, and share out well: HuBERT-base answered 1.20× more as
one call on both cores (6 rounds in alternation, 3.66 against 3.06 requests/s, 507 against
606 ms of CPU per request). So the service times its warm-up call, and serves streams only
where a call of 24 s takes less than STREAM_MAX_CALL_S on every core (service/model.py's
lay_out): 0.05–0.1 s for the demo student, 2.7 s for HuBERT-base, on that machine.

`Streams` keeps both: a call that starts while no other runs takes every core; a call that
starts beside another runs on one thread. The price is a second session, so the weights are
held twice (HuBERT-base fp32: about 0.4 GB more). The answers do not depend on the threads:
the same batch gives the same numbers, bit for bit.

Torch-free; knows nothing of HTTP or of the batcher, which calls `infer` from one thread per
batch in flight.
"""

from __future__ import annotations

import threading

import numpy as np

from emodistill.gpu import CPU_PROVIDER
from emodistill.runtime import OnnxBackend

# Padded audio per call for streams: in the service, two calls of 24 s beat two of 6 s by
# 10–30 % in requests/s (each call has its own costs: padding, the thread hand-off, the
# answers), and one call of 96 s by more (a large batch's activations leave the cache).
STREAM_BATCH_AUDIO_S = 24.0
# From this long a call of STREAM_BATCH_AUDIO_S on every core, one call at a time serves: the
# two models measured lie 5× below and 5× above it (see above).
STREAM_MAX_CALL_S = 0.5


def holds_the_cores(provider: str, call_s: float | None) -> bool:
    """Whether a model whose call of STREAM_BATCH_AUDIO_S took `call_s` on every core (None:
    not timed) holds the CPU's cores: its operators are long, so a call costs its padded audio
    whether clips share it or not (docs/benchmarks.md, "The CPU's limit": HuBERT-base's
    audio-s/s at batch 4 is no better than at batch 1), and padding is work for nothing."""
    return provider == CPU_PROVIDER and call_s is not None and call_s >= STREAM_MAX_CALL_S


class Streams:
    """`alone` (every core) for a call that starts while none runs, `beside` (one thread)
    for a call that starts while another runs; thread-safe. clips (float32 [samples]) ->
    the backends' output, [B, C] or [B, C + D]."""

    def __init__(self, alone: OnnxBackend, beside: OnnxBackend) -> None:
        self.alone, self.beside = alone, beside
        self.metadata, self.provider, self.model_file = (
            alone.metadata,
            alone.provider,
            alone.model_file,
        )
        self._lock = threading.Lock()
        self._running = 0

    def infer(self, clips: list[np.ndarray]) -> np.ndarray:
        with self._lock:
            self._running += 1
            session = self.alone if self._running == 1 else self.beside
        try:
            return session.infer(clips)
        finally:
            with self._lock:
                self._running -= 1

    def warm_up(self, batch_size: int, seconds: float) -> float:
        """Both sessions, so that neither's first call pays for its allocations."""
        return self.alone.warm_up(batch_size, seconds) + self.beside.warm_up(batch_size, seconds)
