"""The v2 request parser: orjson (where installed) gives exactly json's answers and refusals.

Each case is parsed twice, through the installed fast parser and with it switched off (json
alone), and the two outcomes (clips, or the status and detail of the refusal) must be equal.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from service import v2_request
from service.v2_request import ParsedInfer, V2Limits, V2RequestError, parse_infer

LIMITS = V2Limits(rate_hz=16_000, max_audio_s=600.0, max_json_bytes=16 << 20)
orjson = pytest.importorskip("orjson", reason="orjson is the fast path under test")


def _outcome(body: bytes, monkeypatch: pytest.MonkeyPatch, fast: bool) -> object:
    """The clips as float32 bytes (and the id), or (status, detail) of the refusal."""
    with monkeypatch.context() as m:
        m.setattr(v2_request, "_FAST_LOADS", orjson.loads if fast else None)
        try:
            parsed: ParsedInfer = parse_infer(body, None, LIMITS)
        except V2RequestError as err:
            return err.status_code, err.detail
    return parsed.id, [c.tobytes() for c in parsed.clips], parsed.binary_output


def _body(data: object, shape: list[int], extra: str = "") -> bytes:
    tensor = {"name": "audio", "shape": shape, "datatype": "FP32", "data": data}
    return json.dumps({"id": "r", "inputs": [tensor]}).encode()[:-1] + extra.encode() + b"}"


def test_random_samples_parse_to_the_same_float32_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    # json.dumps writes float32 samples as their float64 repr (17 digits), as tritonclient does;
    # shortest reprs, integers, subnormals and the full-scale limit are added.
    rng = np.random.default_rng(0)
    samples = (0.3 * rng.standard_normal(4_000)).astype(np.float32).tolist()
    samples += [0.1, -0.0, 1e-45, 5e-324, 1, 0, -1, 2.5e-8, 999.99993896484375, -1000]
    samples += [float(x) for x in rng.uniform(-1, 1, 500)]
    body = _body(samples, [1, len(samples)])
    fast, slow = _outcome(body, monkeypatch, True), _outcome(body, monkeypatch, False)
    assert fast == slow
    assert isinstance(fast, tuple) and len(fast[1]) == 1  # parsed, not refused


@pytest.mark.parametrize(
    "data",
    [
        "[NaN, 0.1]",  # json reads NaN (422: not finite); orjson refuses the literal
        "[Infinity, 0.1]",
        "[1e400, 0.1]",  # beyond float64
        "[100000000000000000000000000000, 0.1]",  # an integer beyond 64 bits
        '["0.1", 0.2]',  # numbers as strings
        "[true, false]",
        "[[0.1, 0.2], [0.3]]",  # ragged
        "[0.1, 0.2, 0.3]",  # does not fill the shape
        "[01, 0.2]",  # not JSON
        "[0.1, 0.2,]",
        "[1000.5, 0.5]",  # beyond the amplitude limit
    ],
)
def test_refusals_are_the_same(monkeypatch: pytest.MonkeyPatch, data: str) -> None:
    tensor = '{"name": "audio", "shape": [2], "datatype": "FP32", "data": ' + data + "}"
    body = ('{"id": "r", "inputs": [' + tensor + "]}").encode()
    fast, slow = _outcome(body, monkeypatch, True), _outcome(body, monkeypatch, False)
    assert fast == slow
    assert isinstance(fast, tuple) and isinstance(fast[0], int)  # refused: (status, detail)


@pytest.mark.parametrize(
    "body",
    [
        b'\xef\xbb\xbf{"inputs": []}',  # a byte-order mark: json accepts it, orjson does not
        b'{"id": "\\ud800", "inputs": []}',  # a lone surrogate
        b'{"id": "a\x01b", "inputs": []}',  # a raw control character in a string
        b'{"id": "a", "id": "b", "inputs": []}',  # a duplicate key: the last wins in both
        b'{"id": "\xff", "inputs": []}',  # not UTF-8
        b"",
        b"[" * 17 + b"]" * 17,  # deeper than MAX_JSON_DEPTH
    ],
)
def test_edge_documents_get_json_verdict(monkeypatch: pytest.MonkeyPatch, body: bytes) -> None:
    assert _outcome(body, monkeypatch, True) == _outcome(body, monkeypatch, False)


def test_the_fast_parser_is_the_one_used_when_installed() -> None:
    assert v2_request._FAST_LOADS is orjson.loads
