"""schemathesis drives every route of the OpenAPI schema against a live service: no 5xx."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings


@pytest.fixture(scope="module")
def api_schema(live_server):
    return schemathesis.openapi.from_url(live_server + "/openapi.json")


def test_no_route_answers_5xx(api_schema):
    failures: list[str] = []
    calls: dict[str, int] = {}
    for operation in api_schema.get_all_operations():
        op = operation.ok()

        @settings(
            max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(case=op.as_strategy())
        def probe(case):
            response = case.call(timeout=30)
            calls[case.path] = calls.get(case.path, 0) + 1
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.path}: {response.status_code} {response.text[:200]}"
                )

        probe()
    assert failures == []
    with_input = ("/predict", "/v2/models/{name}/infer", "/v2/models/{name}")
    # Routes with inputs really were driven (the health routes have one possible request).
    assert all(calls.get(path, 0) >= 5 for path in with_input), calls
