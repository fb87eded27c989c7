"""The CUDA diagnosis: each cause gives its own sentence (fake driver; no GPU needed)."""

from __future__ import annotations

import ctypes
import types

import onnxruntime as ort
import pytest

from emodistill import gpu
from emodistill.gpu import CudaUnavailable, check_driver, diagnose_cuda


class FakeDriver:
    """libcuda's three calls that check_driver makes, answering as a driver would."""

    def __init__(self, version: int, init_status: int = 0, devices: int = 1):
        self.version, self.init_status, self.devices = version, init_status, devices

    def cuDriverGetVersion(self, out) -> int:
        out._obj.value = self.version
        return 0

    def cuInit(self, flags: int) -> int:
        return self.init_status

    def cuDeviceGetCount(self, out) -> int:
        out._obj.value = self.devices
        return 0


def test_a_driver_new_enough_with_a_gpu_is_usable():
    assert check_driver(FakeDriver(13000), (13, 0)) == "CUDA 13.0 driver, 1 GPU(s)"  # type: ignore[arg-type]


def test_an_old_driver_names_the_versions_and_the_driver_to_install():
    with pytest.raises(CudaUnavailable) as err:
        check_driver(FakeDriver(12040), (13, 0))  # type: ignore[arg-type]
    assert "supports CUDA 12.4" in str(err.value) and "built for CUDA 13.0" in str(err.value)
    assert gpu.MIN_DRIVER_BY_CUDA_MAJOR[13] in str(err.value)


@pytest.mark.parametrize(
    "driver", [FakeDriver(13000, init_status=100), FakeDriver(13000, devices=0)]
)
def test_a_driver_without_a_gpu_says_so(driver):
    with pytest.raises(CudaUnavailable, match="sees no GPU"):
        check_driver(driver, (13, 0))  # type: ignore[arg-type]


def test_the_cpu_build_of_onnxruntime_is_named():
    with pytest.raises(CudaUnavailable, match=r"no CUDA provider .*CPU build"):
        diagnose_cuda(ort)  # this environment's onnxruntime is the CPU build


def test_a_gpu_build_without_a_driver_blames_the_driver_not_a_library(monkeypatch):
    fake_ort = types.SimpleNamespace(
        get_available_providers=lambda: [gpu.CUDA_PROVIDER, gpu.CPU_PROVIDER],
        __file__="/nonexistent/onnxruntime/__init__.py",
    )

    def no_library(name, mode=0):
        raise OSError(f"{name}: cannot open shared object file: No such file or directory")

    monkeypatch.setattr(ctypes, "CDLL", no_library)
    with pytest.raises(CudaUnavailable, match=r"no NVIDIA driver is visible \(libcuda.so.1"):
        diagnose_cuda(fake_ort)  # type: ignore[arg-type]


def test_a_missing_cuda_library_is_named(monkeypatch):
    fake_ort = types.SimpleNamespace(
        get_available_providers=lambda: [gpu.CUDA_PROVIDER, gpu.CPU_PROVIDER],
        __file__="/site/onnxruntime/__init__.py",
    )

    def only_the_driver(name, mode=0):
        if name == "libcuda.so.1":
            return FakeDriver(13000)
        raise OSError("libcublasLt.so.13: cannot open shared object file: No such file")

    monkeypatch.setattr(ctypes, "CDLL", only_the_driver)
    with pytest.raises(CudaUnavailable, match=r"libcublasLt\.so\.13"):
        diagnose_cuda(fake_ort)  # type: ignore[arg-type]
