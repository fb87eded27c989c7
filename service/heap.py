"""The process's start-up objects, kept out of the garbage collector's way while it serves.

Python's cyclic collector scans its oldest generation now and then, and everything start-up
made (modules, FastAPI's routes, pydantic's models, onnxruntime's session objects) lives
there: each full collection walked all of it, on the event loop, while requests waited.
Freezing moves what is alive once the service is ready into a permanent generation the
collector never scans; what requests allocate is collected as before. On the 2-core bench
machine (the tiny demo, 16 clients, multipart, 4 rounds of 512 in alternation, the others
paused): p99 254 -> 178 ms and 154 -> 169 requests/s (issue 26, its fifth round).
"""

from __future__ import annotations

import gc


def freeze_start_up() -> None:
    """Collect what start-up left as garbage, then freeze what is alive."""
    gc.collect()
    gc.freeze()


def thaw() -> None:
    """On shutdown: the frozen objects go back to the collector, so that a process which
    goes on (tests, an embedding application) can collect them once they are garbage."""
    gc.unfreeze()
