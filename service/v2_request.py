"""A KServe v2 (Open Inference Protocol) infer request -> float32 clips, or V2RequestError.

Two encodings of the one input tensor (FP32, shape [samples] or [clips, samples]):
- JSON, its samples in `data` (nested or flat, numbers only);
- the binary tensor extension as Triton's clients send it: the header
  `Inference-Header-Content-Length: N` says the first N bytes are the JSON request, whose
  input carries `"parameters": {"binary_data_size": K}` and no `data`; the K bytes after the
  JSON are the samples as little-endian float32. No number is parsed: the bytes are the array.

Every limit is checked on the declared shape before any sample is read, with Python integers
(a shape of 2^53 × 2048 cannot wrap around). Error messages name the field and the rule,
never the input. Knows nothing of HTTP frameworks, batching or models.
"""

from __future__ import annotations

import importlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from emodistill.decoder import MAX_ABS_AMPLITUDE

from . import v2_json

BINARY_HEADER = "inference-header-content-length"
BINARY_DATA_SIZE = "binary_data_size"
FLOAT32_BYTES = 4
OUTPUT = "probabilities"  # the first output tensor: [clips, labels] FP32
# The second, for a bundle with dimensions: [clips, 3] FP32 (emodistill.bundle.DIMENSIONS).
DIMENSIONS_OUTPUT = "dimensions"
OUTPUTS = (OUTPUT, DIMENSIONS_OUTPUT)
# The request's object, its input list, a tensor, and `data` as [clips][samples]: 5 levels.
MAX_JSON_DEPTH = 16
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _orjson_loads() -> Callable[[bytes], Any] | None:
    """orjson's parser (the `serve` extra; json alone where an older install lacks it): a 3 s
    clip as JSON is 48,000 numbers, and json.loads was 70 % of this module's CPU for it
    (cProfile). parse_infer of that request: 13.8 ms of CPU with json, 4.8 ms with orjson
    (median of 15 rounds in alternation, shared 2-core machine; issue 26)."""
    try:
        return cast(Callable[[bytes], Any], importlib.import_module("orjson").loads)
    except ImportError:
        return None


_FAST_LOADS = _orjson_loads()


class V2RequestError(Exception):
    """The request cannot be scored; `status_code` is the HTTP status, `detail` the reason."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(f"{status_code}: {detail}")
        self.status_code, self.detail = status_code, detail


class TensorRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    shape: list[StrictInt]
    datatype: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    data: Any = None  # checked by numpy below, never walked by pydantic


class InferRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    inputs: list[TensorRequest] = Field(min_length=1)
    outputs: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class V2Limits:
    rate_hz: int
    max_audio_s: float
    max_json_bytes: int
    min_audio_s: float = 0.1


@dataclass(frozen=True)
class ParsedInfer:
    id: str | None
    clips: list[np.ndarray]  # each float32 [samples]
    binary_output: bool  # the client asked for the output as binary data (Triton's default)


def _split(body: bytes, header_length: str | None, limits: V2Limits) -> tuple[bytes, memoryview]:
    if header_length is None:
        if len(body) > limits.max_json_bytes:
            raise V2RequestError(413, _json_too_large(limits))
        return body, memoryview(b"")
    header_length = header_length.strip()
    if not (header_length.isascii() and header_length.isdigit()):  # '²'.isdigit() is True
        raise V2RequestError(400, f"{BINARY_HEADER} must be a byte count")
    n = int(header_length)
    if not 0 < n <= len(body):
        raise V2RequestError(400, f"{BINARY_HEADER} is {n}, the body has {len(body)} bytes")
    if n > limits.max_json_bytes:
        raise V2RequestError(413, _json_too_large(limits))
    return body[:n], memoryview(body)[n:]


def _json_too_large(limits: V2Limits) -> str:
    return (
        f"JSON request larger than {limits.max_json_bytes} bytes (max_json_mb); send the "
        "samples as binary data (Inference-Header-Content-Length)"
    )


def _check_depth(raw: bytes) -> None:
    # No level can be deeper than the count of opening brackets: most requests have a
    # handful, and skip the full count (0.8 ms on a 3 s clip's 1 MB).
    opening = v2_json.count(raw, b"[") + v2_json.count(raw, b"{")
    if opening > MAX_JSON_DEPTH and _nesting_depth(raw) > MAX_JSON_DEPTH:
        raise V2RequestError(400, f"JSON nested deeper than {MAX_JSON_DEPTH} levels")


def _read(raw: bytes, fast: bool) -> tuple[Any, bool]:
    """(json.loads's result for `raw`, whether a fast reader gave it), or 400.

    With `fast`, simdjson reads the common request (service/v2_json.py), then orjson what
    simdjson leaves; what both refuse goes to json, whose verdict stands. orjson is stricter
    (NaN and Infinity literals, lone surrogates, a byte-order mark), and json's answers for
    those (such as 422 for a NaN sample) are the route's contract. Neither fast reader accepts
    anything json refuses, and they read the same values but one kind: orjson reads integers
    beyond 64 bits as floats, where json keeps them ints. Whatever it changes is refused
    (numpy refuses such ints as objects; as floats they exceed the amplitude limit), though
    maybe in other words: parse_infer asks json alone for its verdict on any request refused
    after a fast read (tests/service/test_v2_request.py)."""
    if fast:
        common = v2_json.read(raw)
        if common is not None:
            return common, True
        if _FAST_LOADS is not None:
            try:
                return _FAST_LOADS(raw), True
            except ValueError:  # orjson.JSONDecodeError is a ValueError
                pass
    try:
        return json.loads(raw), False
    except (UnicodeDecodeError, ValueError) as err:
        raise V2RequestError(400, "the request is not valid JSON") from err


def _validated(obj: Any) -> InferRequest:
    try:
        return InferRequest.model_validate(obj)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'request'}: {e['msg']}"
            for e in err.errors(include_input=False, include_url=False)[:5]
        )
        raise V2RequestError(422, f"invalid inference request: {problems}") from err


def _nesting_depth(raw: bytes) -> int:
    """The deepest nesting of [ and { in `raw`, strings skipped (json.loads and numpy recurse
    once per level: 1,000 levels in 2 KB raise RecursionError). Counted in numpy, the
    strings (which may hold brackets) removed first."""
    brackets = np.frombuffer(_STRINGS.sub(b'""', raw).translate(None, _NOT_BRACKETS), np.uint8)
    if not brackets.size:
        return 0
    opening = (brackets == ord("[")) | (brackets == ord("{"))
    return int(np.cumsum(np.where(opening, 1, -1)).max())


def _checked_shape(tensor: TensorRequest, limits: V2Limits) -> tuple[int, int]:
    """(clips, samples per clip) of the declared shape, every limit checked."""
    if tensor.datatype != "FP32":
        raise V2RequestError(422, f"datatype {tensor.datatype!r}: send FP32 samples")
    shape = tensor.shape
    if len(shape) not in (1, 2) or any(d < 1 for d in shape):
        raise V2RequestError(422, f"shape {shape}: send [samples] or [clips, samples]")
    samples = shape[-1]
    seconds = samples / limits.rate_hz
    if seconds > limits.max_audio_s:
        raise V2RequestError(
            413, f"clips of {seconds:.1f} s exceed the {limits.max_audio_s:g} s limit"
        )
    if seconds < limits.min_audio_s:
        raise V2RequestError(422, f"clips of {seconds:.3f} s are shorter than 0.1 s")
    return math.prod(shape[:-1]), samples


def _samples(tensor: TensorRequest, binary: memoryview, count: int) -> np.ndarray:
    size = tensor.parameters.get(BINARY_DATA_SIZE)
    if size is not None:
        if tensor.data is not None:
            raise V2RequestError(422, f"input has both data and {BINARY_DATA_SIZE}")
        if not isinstance(size, int) or size != count * FLOAT32_BYTES:
            raise V2RequestError(422, f"{BINARY_DATA_SIZE} must be {count * FLOAT32_BYTES}")
        if len(binary) != size:
            raise V2RequestError(400, f"binary data is {len(binary)} bytes, not {size}")
        return np.frombuffer(binary, dtype="<f4").astype(np.float32)  # aligned, native copy
    if len(binary):
        raise V2RequestError(400, f"binary data follows, but the input has no {BINARY_DATA_SIZE}")
    if isinstance(tensor.data, np.ndarray):  # read by service/v2_json.py: numbers, regular
        values = tensor.data
    elif not isinstance(tensor.data, list):
        raise V2RequestError(422, "data must be a list of numbers")
    else:
        try:
            values = np.asarray(tensor.data)
        except ValueError as err:  # ragged nesting
            message = "data must be a flat or evenly nested list of numbers"
            raise V2RequestError(422, message) from err
        if values.dtype.kind not in "fiu":
            raise V2RequestError(422, "data must hold numbers only (not strings or booleans)")
    if values.size != count:
        raise V2RequestError(422, f"{values.size} values do not fill shape {tensor.shape}")
    with np.errstate(over="ignore"):  # beyond float32's range becomes inf, refused below
        return values.astype(np.float32).reshape(-1)


class _RefusedAfterFastRead(Exception):
    pass


def parse_infer(body: bytes, header_length: str | None, limits: V2Limits) -> ParsedInfer:
    """The request's clips (float32 [samples] each), or V2RequestError: 400 malformed, 413
    too large, 422 against the protocol or the model's input."""
    raw, binary = _split(body, header_length, limits)
    _check_depth(raw)
    try:
        return _parse(raw, binary, limits, fast=True)
    except _RefusedAfterFastRead:  # json's verdict is the contract (see _read); rare
        return _parse(raw, binary, limits, fast=False)


def _parse(raw: bytes, binary: memoryview, limits: V2Limits, fast: bool) -> ParsedInfer:
    obj, fast_read = _read(raw, fast)
    try:
        request = _validated(obj)
        if len(request.inputs) != 1:
            message = f"{len(request.inputs)} inputs; the model takes one (audio)"
            raise V2RequestError(422, message)
        tensor = request.inputs[0]
        clips, samples = _checked_shape(tensor, limits)
        flat = _samples(tensor, binary, clips * samples)
        if not np.isfinite(flat).all():
            raise V2RequestError(422, "samples must be finite (no NaN or Inf)")
        if flat.size and float(np.abs(flat).max()) > MAX_ABS_AMPLITUDE:
            raise V2RequestError(422, _amplitude_message())
        return ParsedInfer(request.id, list(flat.reshape(clips, samples)), _binary_output(request))
    except V2RequestError as err:
        if fast_read:
            raise _RefusedAfterFastRead from err
        raise


def _binary_output(request: InferRequest) -> bool:
    """Whether the output goes back as binary data: asked per output (`binary_data`) or for
    all (`binary_data_output`), as the binary tensor extension defines."""
    wanted = request.parameters.get("binary_data_output") is True
    for output in request.outputs or []:
        if output.get("name") not in OUTPUTS:
            raise V2RequestError(400, f"unknown output {str(output.get('name'))[:64]!r}; "
                                      f"the model's outputs are {OUTPUTS}")  # fmt: skip
        parameters = output.get("parameters") or {}
        if isinstance(parameters, dict) and "binary_data" in parameters:
            wanted = parameters["binary_data"] is True
    return wanted


def _amplitude_message() -> str:
    return f"sample values beyond ±{MAX_ABS_AMPLITUDE:g}: audio is expected in [-1, 1] (full scale)"
