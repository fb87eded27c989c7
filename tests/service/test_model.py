"""How the service lays the model out on the cores (service/model.py's lay_out), on the tiny
real bundle: on the CPU with two cores, two calls at once by default, one at a time for a
model whose calls are long."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import service.model
from emodistill.runtime import OnnxBackend
from emodistill.streams import STREAM_MAX_CALL_S, Streams
from service.cli import settings_from_cli
from service.model import DECODE_WORKERS, batcher_config, decode_workers, lay_out, warm_up
from service.settings import Settings


@pytest.fixture
def two_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service.model, "available_cores", lambda: 2)


@pytest.mark.usefixtures("two_cores")
def test_by_default_two_cores_serve_two_calls_at_once_of_at_most_24_s(bundle: Path) -> None:
    backend = OnnxBackend(bundle, "cpu")
    served, settings = warm_up(backend, Settings(model=bundle, device="cpu"))
    assert isinstance(served, Streams) and served.alone is backend
    assert isinstance(served.beside, OnnxBackend) and served.beside.threads == 1
    assert settings.engine_streams == 2 and settings.max_batch_audio_s == 24.0
    config = batcher_config(settings, 16_000)
    assert config.in_flight == 2 and config.max_batch_samples == 24 * 16_000
    assert settings.batch_order == "length" and config.group_by_length
    assert settings.decode_workers == decode_workers(settings) == DECODE_WORKERS
    assert lay_out(served, settings) == (served, settings)  # laid out once, whoever asks again


@pytest.mark.usefixtures("two_cores")
def test_a_model_whose_calls_are_long_serves_one_call_at_a_time(
    bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = OnnxBackend(bundle, "cpu")
    # The warm-up's 32 × 3 s took 4 s: a call of 24 s would take 1 s, beyond STREAM_MAX_CALL_S.
    monkeypatch.setattr(backend, "warm_up", lambda batch_size, seconds: 4.0)
    served, settings = warm_up(backend, Settings(model=bundle, device="cpu"))
    assert served is backend and backend.threads == 0
    assert settings.engine_streams == 1 and settings.max_batch_audio_s == 96.0
    config = batcher_config(settings, 16_000)
    # A call costs its padded audio: no clip passes older ones to join a batch, none is padded;
    # the model's threads hold both cores, so one thread decodes.
    assert settings.batch_order == "arrival" and not config.group_by_length
    assert settings.decode_workers == decode_workers(settings) == 1
    assert config.in_flight == 1 and config.max_padding == settings.max_batch_padding == 0.0
    assert lay_out(served, settings)[1] == settings  # the single process asks again


@pytest.mark.usefixtures("two_cores")
@pytest.mark.parametrize("given", ["flag", "environment"])
def test_a_given_padding_bound_holds_in_arrival_order(
    bundle: Path, given: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if given == "flag":
        settings = settings_from_cli(["--model", str(bundle), "--max-batch-padding", "0.1"])
    else:
        monkeypatch.setenv("EMODISTILL_MAX_BATCH_PADDING", "0.1")
        settings = settings_from_cli(["--model", str(bundle)])
    _, settings = lay_out(OnnxBackend(bundle, "cpu"), settings, STREAM_MAX_CALL_S * 10)
    assert settings.batch_order == "arrival" and settings.max_batch_padding == 0.1


@pytest.mark.usefixtures("two_cores")
def test_a_configured_batch_order_holds_whatever_the_calls_take(bundle: Path) -> None:
    settings = Settings(model=bundle, batch_order="length")
    _, settings = lay_out(OnnxBackend(bundle, "cpu"), settings, STREAM_MAX_CALL_S * 10)
    assert settings.engine_streams == 1 and settings.batch_order == "length"
    settings = Settings(model=bundle, batch_order="arrival")
    _, settings = lay_out(OnnxBackend(bundle, "cpu"), settings, 0.0)
    assert settings.engine_streams == 2 and settings.batch_order == "arrival"
    assert settings.max_batch_padding == 0.1  # auto alone changes the padding


@pytest.mark.usefixtures("two_cores")
@pytest.mark.parametrize("call_s", [None, 0.0, STREAM_MAX_CALL_S * 0.99])
def test_short_or_untimed_calls_serve_streams(bundle: Path, call_s: float | None) -> None:
    served, settings = lay_out(OnnxBackend(bundle, "cpu"), Settings(model=bundle), call_s)
    assert isinstance(served, Streams) and settings.engine_streams == 2


@pytest.mark.usefixtures("two_cores")
def test_a_fixed_count_holds_whatever_the_calls_take(bundle: Path) -> None:
    settings = Settings(model=bundle, engine_streams=2)
    served, settings = lay_out(OnnxBackend(bundle, "cpu"), settings, STREAM_MAX_CALL_S * 10)
    assert isinstance(served, Streams) and settings.engine_streams == 2


@pytest.mark.usefixtures("two_cores")
def test_a_smaller_configured_budget_is_kept(bundle: Path) -> None:
    _, settings = lay_out(OnnxBackend(bundle, "cpu"), Settings(model=bundle, max_batch_audio_s=10))
    assert settings.max_batch_audio_s == 10.0


@pytest.mark.usefixtures("two_cores")
def test_fixed_streams_share_the_cores_and_keep_the_configured_budget(bundle: Path) -> None:
    served, settings = lay_out(
        OnnxBackend(bundle, "cpu"), Settings(model=bundle, device="cpu", engine_streams=2)
    )
    assert isinstance(served, Streams) and isinstance(served.beside, OnnxBackend)
    assert served.beside.threads == 1
    assert settings.engine_streams == 2 and settings.max_batch_audio_s == 96.0


@pytest.mark.usefixtures("two_cores")
def test_one_stream_serves_as_configured(bundle: Path) -> None:
    backend = OnnxBackend(bundle, "cpu")
    served, settings = lay_out(backend, Settings(model=bundle, engine_streams=1))
    assert served is backend and backend.threads == 0
    assert settings.engine_streams == 1 and settings.max_batch_audio_s == 96.0


def test_one_core_serves_one_call_at_a_time(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service.model, "available_cores", lambda: 1)
    backend = OnnxBackend(bundle, "cpu")
    assert lay_out(backend, Settings(model=bundle))[0] is backend


class NotRethreadable:
    """A backend that cannot change its threads (as the benchmarks' simulated engine)."""

    provider = "CPUExecutionProvider"

    def __init__(self, bundle: Path) -> None:
        self.inner = OnnxBackend(bundle, "cpu")
        self.metadata, self.model_file = self.inner.metadata, self.inner.model_file

    def infer(self, clips: list[np.ndarray]) -> np.ndarray:
        return self.inner.infer(clips)

    def warm_up(self, batch_size: int, seconds: float) -> float:
        return self.inner.warm_up(batch_size, seconds)


class OnTheGpu(NotRethreadable):
    provider = "CUDAExecutionProvider"

    def with_threads(self, threads: int) -> OnTheGpu:
        raise AssertionError("a GPU backend is never re-threaded")


@pytest.mark.usefixtures("two_cores")
@pytest.mark.parametrize("kind", [NotRethreadable, OnTheGpu])
def test_a_gpu_or_fixed_backend_runs_one_call_at_a_time(bundle: Path, kind: type) -> None:
    backend = kind(bundle)
    served, settings = warm_up(backend, Settings(model=bundle, engine_streams=2))
    assert served is backend and settings.engine_streams == 1
    assert settings.max_batch_audio_s == 96.0


@pytest.mark.usefixtures("two_cores")
def test_a_gpu_groups_by_length_however_long_its_calls(
    bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a GPU a companion costs little, so the batch takes the nearest lengths."""
    backend = OnTheGpu(bundle)
    monkeypatch.setattr(backend, "warm_up", lambda batch_size, seconds: 4.0)
    _, settings = warm_up(backend, Settings(model=bundle))
    assert settings.batch_order == "length" and batcher_config(settings, 16_000).group_by_length
    assert settings.max_batch_padding == 0.1


def test_the_watchdog_sees_the_oldest_of_several_calls_in_flight(bundle: Path) -> None:
    """The model process's TimedModel: with two calls at once, `busy_s` is the older's age,
    and 0 once both are done (the workers' watchdog stops a model stuck in either)."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from service.model_process import TimedModel

    gates = [threading.Event(), threading.Event()]
    entered = [threading.Event(), threading.Event()]

    class TwoGates(NotRethreadable):
        def infer(self, clips: list[np.ndarray]) -> np.ndarray:
            which = int(clips[0][0])
            entered[which].set()
            assert gates[which].wait(10)
            return np.zeros((len(clips), 4), dtype=np.float32)

    timed = TimedModel(TwoGates(bundle))
    assert timed.busy_s == 0.0
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(timed.infer, [np.zeros(160, dtype=np.float32)])
        assert entered[0].wait(10)
        time.sleep(0.3)
        second = pool.submit(timed.infer, [np.ones(160, dtype=np.float32)])
        assert entered[1].wait(10)
        assert timed.busy_s >= 0.3  # the older call's age, not the newer's
        gates[0].set()
        first.result(10)
        assert timed.busy_s < 0.3  # now only the newer runs
        gates[1].set()
        second.result(10)
    assert timed.busy_s == 0.0


@pytest.mark.usefixtures("two_cores")
def test_given_decoding_threads_hold_whatever_the_calls_take(bundle: Path) -> None:
    settings = Settings(model=bundle, decode_workers=3)
    _, settings = lay_out(OnnxBackend(bundle, "cpu"), settings, STREAM_MAX_CALL_S * 10)
    assert settings.batch_order == "arrival" and decode_workers(settings) == 3
    assert decode_workers(Settings(model=bundle)) == DECODE_WORKERS  # not laid out: the default
