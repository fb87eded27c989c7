"""A tiny real bundle for the service tests (exported once per session)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator

import numpy as np
import pytest
import soundfile as sf


def wav_bytes(seconds: float, rate_hz: int = 16_000, freq_hz: float = 220.0, **kw) -> bytes:
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    x = 0.3 * np.sin(2 * np.pi * freq_hz * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    buffer = io.BytesIO()
    sf.write(buffer, x.astype(np.float32), rate_hz, format="WAV", **kw)
    return buffer.getvalue()


@contextlib.contextmanager
def posted_then_hung_up(url: str, body: bytes) -> Iterator[None]:
    """POST /predict `body` as raw HTTP on a socket of its own, which is closed (the client
    hangs up) when the block ends."""
    import socket

    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as client:
        head = (
            f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: audio/wav\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        client.sendall(head.encode() + body)
        yield


@contextlib.contextmanager
def serving(app) -> Iterator[str]:
    """`app` under uvicorn on a free loopback port, in a thread, until the block ends: its URL.
    The server is configured as `python -m service` configures it (service/server.py)."""
    import socket
    import threading
    import time

    import uvicorn

    from service.server import server_config

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = app.state.settings.model_copy(update={"host": "127.0.0.1", "port": port})
    config = server_config(app, settings)
    config.log_level = "warning"
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the service did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="session")
def live_server(bundle):
    """The service on a free loopback port, in a thread, started and ready: its base URL."""
    from service.app import create_app
    from service.settings import Settings

    with serving(create_app(Settings(model=bundle, max_wait_ms=5))) as url:
        yield url
