"""A tiny real bundle for the service tests (exported once per session)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from export.bundle_writer import ExportOptions, export_bundle
from tests.export.test_bundle import write_checkpoint


@pytest.fixture(scope="session")
def bundle(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("service_bundle")
    checkpoint = write_checkpoint(root / "checkpoint", "group")
    quick = ExportOptions(
        reference_clips=4, invariance_clips=4, agreement_clips=16, naive_contrast=False
    )
    export_bundle(checkpoint, root / "bundle", quick)
    return root / "bundle"


def wav_bytes(seconds: float, rate_hz: int = 16_000, freq_hz: float = 220.0, **kw) -> bytes:
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    x = 0.3 * np.sin(2 * np.pi * freq_hz * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    buffer = io.BytesIO()
    sf.write(buffer, x.astype(np.float32), rate_hz, format="WAV", **kw)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def live_server(bundle):
    """The service on a free loopback port, in a thread, started and ready: its base URL."""
    import socket
    import threading
    import time

    import uvicorn

    from service.app import create_app
    from service.settings import Settings

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(Settings(model=bundle, port=port, max_wait_ms=5))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the service did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)
