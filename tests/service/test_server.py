"""The HTTP server's bounds across worker processes (service/server.py): one connection
limit for the whole service, whose 503 is the service's JSON error with Retry-After."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from tests.service.test_processes import service, simulated

pytestmark = pytest.mark.slow


def test_the_connection_limit_holds_for_the_whole_service_whichever_worker_accepts(bundle):
    flags = ["--workers", "2", "--max-connections", "20", "--header-timeout-s", "60"]
    flags += ["--shutdown-grace-s", "0"]
    with service(simulated(bundle, 1, *flags), "bench.frontend") as (_, url):
        host, port = url.removeprefix("http://").split(":")
        held = [socket.create_connection((host, int(port))) for _ in range(30)]
        try:
            time.sleep(0.5)  # every worker has accepted its share
            replies = [httpx.get(url + "/v2/health/live", timeout=10) for _ in range(20)]
            assert {r.status_code for r in replies} == {503}, [r.status_code for r in replies]
            for reply in replies:
                assert int(reply.headers["retry-after"]) >= 1
                assert reply.json() == {"error": "too many open connections; retry later"}
        finally:
            for s in held:
                s.close()
        time.sleep(0.5)
        assert httpx.get(url + "/v2/health/live", timeout=10).status_code == 200
