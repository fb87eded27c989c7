"""The v2 request parser: its fast readers (simdjson for the common request, orjson for the
rest, where installed) give exactly json's answers and refusals.

Each case is parsed twice, through the installed fast readers and with both switched off (json
alone), and the two outcomes (clips, or the status and detail of the refusal) must be equal.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service import v2_json, v2_request
from service.v2_request import ParsedInfer, V2Limits, V2RequestError, parse_infer

# No shortest clip: the cases are a few samples long, and must reach the samples' checks.
LIMITS = V2Limits(rate_hz=16_000, max_audio_s=600.0, max_json_bytes=16 << 20, min_audio_s=0.0)
orjson = pytest.importorskip("orjson", reason="orjson is the fast path under test")
simdjson = pytest.importorskip("simdjson", reason="simdjson is the fast path under test")


def _outcome(body: bytes, monkeypatch: pytest.MonkeyPatch, fast: bool) -> object:
    """The clips as float32 bytes (and the id), or (status, detail) of the refusal."""
    with monkeypatch.context() as m:
        m.setattr(v2_request, "_FAST_LOADS", orjson.loads if fast else None)
        m.setattr(v2_json, "_SIMDJSON", simdjson if fast else None)
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


def test_the_fast_parsers_are_the_ones_used_when_installed() -> None:
    assert v2_request._FAST_LOADS is orjson.loads
    assert v2_json._SIMDJSON is simdjson


@pytest.mark.parametrize(
    "request_json",
    [
        {"inputs": [{"name": "audio", "shape": [3], "datatype": "FP32", "data": [0.1, -1, 0]}]},
        {  # two clips as nested lists, an id, outputs and parameters, as tritonclient sends
            "id": "r1",
            "parameters": {"tags": ["a", "b"], "n": 2},
            "inputs": [
                {
                    "name": "audio",
                    "shape": [2, 2],
                    "datatype": "FP32",
                    "parameters": {},
                    "data": [[0.5, 0.25], [-0.5, 1e-3]],
                }
            ],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": False}}],
        },
    ],
)
def test_the_common_request_is_read_by_simdjson(request_json: dict) -> None:
    # Else the fast path could fall through to the general one for every request, unseen.
    body = json.dumps(request_json).encode()
    common = v2_json.read(body)
    assert common is not None
    data = np.asarray(request_json["inputs"][0]["data"], np.float64).reshape(-1)
    np.testing.assert_array_equal(common["inputs"][0]["data"], data)
    assert {k: v for k, v in common.items() if k != "inputs"} == {
        k: v for k, v in request_json.items() if k != "inputs"
    }


def test_a_thread_reads_on_while_its_last_document_is_held() -> None:
    body = _body([0.5, 0.25], [2])
    held = v2_json._parse(body)  # as a traceback would hold it
    common = v2_json.read(body)
    assert common is not None and held is not None
    np.testing.assert_array_equal(common["inputs"][0]["data"], [0.5, 0.25])


def test_threads_read_at_once_each_its_own_request() -> None:
    bodies = [_body([k / 100] * k, [k]) for k in range(1, 65)]
    with ThreadPoolExecutor(8) as pool:
        read = list(pool.map(v2_json.read, bodies * 4))
    for k, common in enumerate(read, start=1):
        assert common is not None
        size = (k - 1) % 64 + 1
        np.testing.assert_array_equal(common["inputs"][0]["data"], [size / 100] * size)


@pytest.mark.parametrize(
    "data",
    [
        "[[0.1], 0.2]",  # as_buffer flattens nesting: the '[' count must catch each of these
        "[0.1, [0.2]]",
        "[[0.1, 0.2], [[0.3], 0.4]]",
        "[[[0.1, 0.2]], [[0.3, 0.4]]]",  # regular, but three levels: numpy reads it, 4 values
        "[[0.1, 0.2], [0.3, 0.4]]",
        "[[], []]",
        "[]",
        "[-0, 0.5]",  # the integer -0 is 0, not -0.0
        "[-0.0, 0.5]",
        "[9223372036854775807, 0.5]",
        "[18446744073709551615, 0.5]",
        "[-9223372036854775809, 0.5]",
        "[1000.00001, 0.5]",  # beyond the limit as float64, at it as float32
        "[1e-400, 0.5]",
        "[null, 0.5]",
        "[{}, 0.5]",
    ],
)
@pytest.mark.parametrize("shape", ["[2]", "[2, 2]", "[4]", "[1, 4]"])
def test_nesting_and_numbers_get_json_verdict(
    monkeypatch: pytest.MonkeyPatch, data: str, shape: str
) -> None:
    tensor = '{"name": "audio", "shape": ' + shape + ', "datatype": "FP32", "data": ' + data
    body = ('{"id": "r", "inputs": [' + tensor + "}]}").encode()
    assert _outcome(body, monkeypatch, True) == _outcome(body, monkeypatch, False)


@pytest.mark.parametrize(
    "body",
    [
        # A '[' in a string (raw or escaped) would upset the count: such requests go to json.
        b'{"id": "[", "inputs": [{"name": "a", "shape": [2], "datatype": "FP32", '
        b'"data": [[0.1], 0.2]}]}',
        b'{"id": "\\\\u005b", "inputs": [{"name": "a", "shape": [2], "datatype": "FP32", '
        b'"data": [[0.1], 0.2]}]}',
        b'{"id": "\\u005b", "inputs": [{"name": "a", "shape": [2], "datatype": "FP32", '
        b'"data": [[0.1], 0.2]}]}',
        b'{"[": 1, "inputs": [{"name": "a", "shape": [2], "datatype": "FP32", '
        b'"data": [0.1, 0.2]}]}',
        # Repeated keys, at each level: json keeps the last.
        b'{"id": "a", "id": "b", "inputs": [{"name": "a", "shape": [1], "datatype": "FP32", '
        b'"data": [0.1]}]}',
        b'{"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [0.1]}], '
        b'"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [0.2]}]}',
        b'{"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [0.1], '
        b'"data": [0.2]}]}',
        b'{"inputs": [{"name": "a", "shape": [2], "shape": [1], "datatype": "FP32", '
        b'"data": [0.1]}]}',
        b'{"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [0.1], '
        b'"parameters": {"x": 1, "x": [2]}}]}',
        # No data, two inputs, an input that is not an object, data that is not a list.
        b'{"inputs": [{"name": "a", "shape": [1], "datatype": "FP32"}]}',
        b'{"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [0.1]}, '
        b'{"name": "b", "shape": [1], "datatype": "FP32", "data": [0.1]}]}',
        b'{"inputs": [[0.1]]}',
        b'{"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": 0.1}]}',
        b'[{"inputs": []}]',
    ],
)
def test_structure_edges_get_json_verdict(monkeypatch: pytest.MonkeyPatch, body: bytes) -> None:
    assert _outcome(body, monkeypatch, True) == _outcome(body, monkeypatch, False)


_NUMBERS = st.sampled_from(["0.5", "-0", "1e3", "-1000", "1000.00001", "2", "1e-40", "0.1"])
_ATOMS = st.one_of(_NUMBERS, st.sampled_from(['"["', '"x"', "true", "null", "{}", '"\\u005b"']))


@st.composite
def _data(draw: st.DrawFn, depth: int = 0) -> str:
    items = draw(
        st.lists(
            _data(depth + 1)
            if depth < 2 and draw(st.booleans())
            else _ATOMS
            if draw(st.integers(0, 9)) == 0
            else _NUMBERS,
            max_size=4,
        )
    )
    return "[" + ", ".join(items) + "]"


@st.composite
def _documents(draw: st.DrawFn) -> bytes:
    """Requests near the common one: nested, ragged, repeated keys, '[' in strings."""
    shape = draw(st.sampled_from(["[2]", "[4]", "[2, 2]", "[1, 3]", "[3]"]))
    fields = [f'"name": "{draw(st.sampled_from(["a", "[", "b"]))}"', f'"shape": {shape}']
    fields += ['"datatype": "FP32"', f'"data": {draw(_data())}']
    fields += draw(st.lists(st.sampled_from(['"data": [0.5]', '"parameters": {"k": ["["]}']),
                            max_size=1))  # fmt: skip
    tensor = "{" + ", ".join(draw(st.permutations(fields))) + "}"
    root = [f'"inputs": [{tensor}]']
    root += draw(st.lists(st.sampled_from(['"id": "r"', '"id": "["', '"outputs": []']), max_size=2))
    return ("{" + ", ".join(draw(st.permutations(root))) + "}").encode()


@settings(max_examples=300, deadline=None)
@given(body=_documents())
def test_requests_near_the_common_one_get_json_verdict(body: bytes) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert _outcome(body, monkeypatch, True) == _outcome(body, monkeypatch, False)
