"""How the service lays the model out on the cores at warm-up (service/model.py's lay_out),
on the tiny real bundle: its calls are short, so on the CPU it runs as streams."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import service.model
from emodistill.runtime import OnnxBackend
from export.parity import probe_clips
from service.model import batcher_config, lay_out, warm_up
from service.settings import Settings


@pytest.fixture
def two_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service.model, "available_cores", lambda: 2)


@pytest.mark.usefixtures("two_cores")
def test_a_short_model_is_laid_out_as_single_threaded_streams(bundle: Path) -> None:
    backend = OnnxBackend(bundle, "cpu")
    served, settings = warm_up(backend, Settings(model=bundle, device="cpu"))
    assert settings.engine_streams == 2 and settings.max_batch_audio_s == 24.0
    assert isinstance(served, OnnxBackend) and served.threads == 1 and served is not backend
    config = batcher_config(settings, 16_000)
    assert config.in_flight == 2 and config.max_batch_samples == 24 * 16_000


@pytest.mark.usefixtures("two_cores")
def test_the_layout_does_not_change_an_answer(bundle: Path) -> None:
    """The same audio, the same answer, bit for bit, on one thread or on every core."""
    backend = OnnxBackend(bundle, "cpu")
    clips = probe_clips(6, 0.5, 3.0, 16_000)
    expected = backend.infer(clips)
    served, _ = lay_out(backend, Settings(model=bundle, device="cpu"))
    assert isinstance(served, OnnxBackend) and served.threads == 1
    assert np.array_equal(served.infer(clips), expected)


@pytest.mark.usefixtures("two_cores")
def test_fixed_streams_share_the_cores_and_keep_the_budget(bundle: Path) -> None:
    served, settings = lay_out(
        OnnxBackend(bundle, "cpu"), Settings(model=bundle, device="cpu", engine_streams=2)
    )
    assert isinstance(served, OnnxBackend) and served.threads == 1
    assert settings.engine_streams == 2 and settings.max_batch_audio_s == 96.0


@pytest.mark.usefixtures("two_cores")
def test_one_stream_or_no_warm_up_serves_as_configured(bundle: Path) -> None:
    backend = OnnxBackend(bundle, "cpu")
    for settings in (
        Settings(model=bundle, device="cpu", engine_streams=1),
        Settings(model=bundle, device="cpu", warmup=False),
    ):
        served, laid_out = lay_out(backend, settings)
        assert served is backend and backend.threads == 0
        assert laid_out.engine_streams == 1 and laid_out.max_batch_audio_s == 96.0


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
    served, settings = warm_up(backend, Settings(model=bundle, device="cpu"))
    assert served is backend and settings.engine_streams == 1
    assert settings.max_batch_audio_s == 96.0
