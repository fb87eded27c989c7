"""`python -m service --model BUNDLE [flags]`: serve a bundle (flags or EMODISTILL_ variables)."""

from __future__ import annotations

import signal
import sys
from types import FrameType

# Stop signals that come while the service's modules import (onnxruntime alone takes about a
# second) are noted, not lost: serve() then stops before loading the model.
EARLY_SIGNALS: list[int] = []


def _note(sig: int, frame: FrameType | None) -> None:
    EARLY_SIGNALS.append(sig)


def main() -> None:
    import logging

    from pydantic import ValidationError

    from emodistill.runtime import OnnxBackend

    from .processes import serve
    from .server import StopRequests
    from .settings import settings_from_cli

    try:
        settings = settings_from_cli(sys.argv[1:])
    except ValidationError as err:
        sys.exit(f"error: invalid settings: {err}")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sys.exit(serve(settings, OnnxBackend, StopRequests(EARLY_SIGNALS)))


if __name__ == "__main__":  # spawned processes import this module as __mp_main__
    for stop_signal in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(stop_signal, _note)
    main()
