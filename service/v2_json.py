"""The common v2 JSON infer request read without a Python object per sample (simdjson).

A 3 s clip as JSON is 48,000 numbers. orjson makes a Python float of each, and numpy then
reads them back: 2.9 of the parse's 4.5 ms, all of it holding the GIL that the event loop
needs. simdjson (the `serve` extra) parses the document in C++ and copies the samples
straight into a float64 buffer, in 1.5 ms (docs/service-profile.md).

`read` takes only a request that json and numpy would read to the same values (it returns
None for anything else, and service/v2_request.py's general path reads it):
- simdjson parses it: strict JSON in UTF-8, which json reads alike (no NaN, no lone
  surrogate, no byte-order mark), and integers within 64 bits;
- no key repeats in the request or its input (simdjson's lookup finds the first, json keeps
  the last);
- its one input's `data` holds numbers only (as_buffer refuses any other type), flat or as
  [clips][samples] lists of equal length.
A number json reads differently (an integer beyond 2^53) is far beyond the amplitude limit,
and service/v2_request.py asks json for the verdict on whatever it refuses after a fast read.

as_buffer flattens nested lists whatever their shape, so the nesting is proven by counting.
Every list of the document has its own '[', and strings may hold more: the document's '['
count is at least the lists that `read` saw, those outside `data` (counted on the converted
request) plus those of `data` (1 when flat; 1 + clips when every clip is a list). Equal
counts leave no room for another list inside `data`.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

import numpy as np

INPUTS, DATA = "inputs", "data"


def _simdjson() -> Any:
    """The simdjson module, or None."""
    try:
        return importlib.import_module("simdjson")
    except ImportError:  # an install without the `serve` extra: the general path reads all
        return None


_SIMDJSON = _simdjson()
_THREADS = threading.local()  # a parser per thread: simdjson's are not thread-safe


def read(raw: bytes) -> dict[str, Any] | None:
    """The request, its one input's `data` read as float64 [values] in row-major order; or
    None: the general path reads `raw`."""
    if _SIMDJSON is None:
        return None
    try:
        return _read(_parse(raw), raw)
    except (ValueError, TypeError, RuntimeError, KeyError, IndexError):
        return None  # simdjson's errors (NUMBER_ERROR, BIGINT_ERROR, INCORRECT_TYPE, ...)


def _parse(raw: bytes) -> Any:
    """simdjson's document for `raw`, from this thread's parser. A parser keeps its buffers
    (17.7 MB after a request of the 8 MB max_json_mb), and a new one per request cost 3.6
    against 2.1 ms per parse_infer of a 3 s clip: the buffers' pages are fresh each time."""
    parser = getattr(_THREADS, "parser", None)
    if parser is not None:
        try:
            return parser.parse(raw)
        except RuntimeError as err:  # BIGINT_ERROR is one too
            if "re-use" not in str(err):
                raise
            # A proxy of its last document still lives (an exception's traceback can hold
            # one): this thread starts afresh.
    _THREADS.parser = _SIMDJSON.Parser()
    return _THREADS.parser.parse(raw)


def _read(document: Any, raw: bytes) -> dict[str, Any] | None:
    objects, arrays = _SIMDJSON.Object, _SIMDJSON.Array
    request = _fields(document, INPUTS, objects, arrays) if isinstance(document, objects) else None
    inputs = request.pop(INPUTS, None) if request is not None else None
    if not isinstance(inputs, arrays) or len(inputs) != 1 or not isinstance(inputs[0], objects):
        return None
    tensor = _fields(inputs[0], DATA, objects, arrays)
    data = tensor.pop(DATA, None) if tensor is not None else None
    if request is None or tensor is None or not isinstance(data, arrays):
        return None
    samples = np.frombuffer(data.as_buffer(of_type="d"), np.float64)
    data_lists = _data_lists(data, arrays)
    header_lists = 1 + _lists(request) + _lists(tensor)  # 1: `inputs` itself
    if data_lists is None or count(raw, b"[") != header_lists + data_lists:
        return None
    return {**request, INPUTS: [{**tensor, DATA: samples}]}


def count(raw: bytes, char: bytes) -> int:
    """How many times the byte `char` occurs in `raw`: numpy's count is 2.6 times
    bytes.count's on a 1 MB request (0.11 against 0.29 ms)."""
    return int(np.count_nonzero(np.frombuffer(raw, np.uint8) == ord(char)))


def _fields(obj: Any, lazy: str, objects: Any, arrays: Any) -> dict[str, Any] | None:
    """`obj` as a dict, every value made Python but `lazy`'s (left a simdjson proxy); None if
    a key repeats (simdjson's lookup finds the first, json keeps the last)."""
    keys = list(obj)  # every field's key, in order, repeats included
    if len(set(keys)) != len(keys):
        return None
    fields = {}
    for key in keys:
        value = obj[key]
        if key != lazy and isinstance(value, objects):
            value = value.as_dict()  # deeper repeats: the last value wins, as in json
        elif key != lazy and isinstance(value, arrays):
            value = value.as_list()
        fields[key] = value
    return fields


def _data_lists(data: Any, arrays: Any) -> int | None:
    """How many lists `data` is, if flat (1) or [clips][samples] of equal lengths (1 + clips);
    None for another shape. Deeper lists are caught by the '[' count."""
    if not len(data) or not isinstance(data[0], arrays):
        return 1
    length = len(data[0])
    for clip in data:
        if not isinstance(clip, arrays) or len(clip) != length:
            return None
    return 1 + len(data)


def _lists(value: Any) -> int:
    if isinstance(value, dict):
        return sum(_lists(v) for v in value.values())
    if isinstance(value, list):
        return 1 + sum(_lists(v) for v in value)
    return 0
