"""`python -m service --model BUNDLE [flags]`: serve a bundle (the `emodistill serve` job)."""

from __future__ import annotations

import signal
from types import FrameType

# Stop signals that come while the service's modules import (onnxruntime alone takes about a
# second) are noted, not lost: serve() then stops before loading the model.
EARLY_SIGNALS: list[int] = []


def _note(sig: int, frame: FrameType | None) -> None:
    EARLY_SIGNALS.append(sig)


if __name__ == "__main__":  # spawned processes import this module as __mp_main__
    for stop_signal in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(stop_signal, _note)
    from .cli import main

    main(prog="python -m service", early_signals=EARLY_SIGNALS)
