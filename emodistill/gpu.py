"""Can onnxruntime's CUDA provider attach here, and if not, why not, in one sentence.

onnxruntime itself answers a failed CUDA provider by logging to stderr and running on the CPU.
A service that asked for a GPU must instead stop with the cause, and one that would take a GPU
if there is one must say why it did not. The causes, checked in the order they occur: this
onnxruntime has no CUDA provider (the CPU build); a CUDA or cuDNN library it links is missing
(named); no NVIDIA driver is visible (no `--gpus`, no NVIDIA Container Toolkit); the driver is
older than the CUDA release the libraries were built for; the driver sees no GPU.

Knows nothing of models or HTTP; torch-free (ctypes against the driver's own library).
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import logging
import types
from pathlib import Path

log = logging.getLogger(__name__)

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"
# The oldest Linux driver of each CUDA major (NVIDIA's CUDA release notes, "CUDA Toolkit and
# Corresponding Driver Versions"); with minor-version compatibility it runs every minor of it.
MIN_DRIVER_BY_CUDA_MAJOR = {12: "525.60.13", 13: "580.65.06"}
# What cuInit answers when there is a driver but no device it may use.
CUDA_ERROR_NO_DEVICE = 100


class CudaUnavailable(RuntimeError):
    """The CUDA provider cannot attach; the message is the cause, for a person."""


def cuda_runtime_version() -> tuple[int, int] | None:
    """(major, minor) of the CUDA runtime wheel onnxruntime-gpu loads, or None without one."""
    try:
        major, minor = importlib.metadata.version("nvidia-cuda-runtime").split(".")[:2]
    except importlib.metadata.PackageNotFoundError:
        return None
    return int(major), int(minor)


def _provider_library(ort: types.ModuleType) -> Path:
    return Path(str(ort.__file__)).parent / "capi" / "libonnxruntime_providers_cuda.so"


def _load_provider_library(ort: types.ModuleType) -> None:
    """Loads the CUDA provider with the CUDA and cuDNN wheels' libraries preloaded; a missing
    library raises CudaUnavailable naming it (the loader's own message does)."""
    if hasattr(ort, "preload_dlls"):
        # onnxruntime >= 1.21: loads libcudart, libcublas, libcudnn, ... from the nvidia-*
        # wheels (`onnxruntime-gpu[cuda,cudnn]`), so no CUDA base image or LD_LIBRARY_PATH.
        ort.preload_dlls()
    library = _provider_library(ort)
    try:
        ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)
    except OSError as err:
        raise CudaUnavailable(
            f"onnxruntime's CUDA provider cannot load: {err} "
            "(install onnxruntime-gpu[cuda,cudnn], the gpu extra, or the library's CUDA package)"
        ) from err


def _driver() -> ctypes.CDLL:
    try:
        return ctypes.CDLL("libcuda.so.1")
    except OSError as err:
        raise CudaUnavailable(
            "no NVIDIA driver is visible (libcuda.so.1 not found): no GPU was given to this "
            "process. In a container: `docker run --gpus all` or a compose device reservation, "
            "with the NVIDIA Container Toolkit on the host"
        ) from err


def check_driver(cuda: ctypes.CDLL, needs: tuple[int, int] | None) -> str:
    """Driver version check and device count through the driver API; returns e.g. 'CUDA 13.0
    driver, 1 GPU(s)'. Raises CudaUnavailable when the driver is too old or sees no GPU."""
    version = ctypes.c_int(0)
    if cuda.cuDriverGetVersion(ctypes.byref(version)) != 0:
        raise CudaUnavailable("the NVIDIA driver does not answer (cuDriverGetVersion failed)")
    have = (version.value // 1000, (version.value % 1000) // 10)
    if needs is not None and have[0] < needs[0]:
        minimum = MIN_DRIVER_BY_CUDA_MAJOR.get(needs[0], "a newer one")
        raise CudaUnavailable(
            f"the NVIDIA driver is too old: it supports CUDA {have[0]}.{have[1]}, and this "
            f"onnxruntime-gpu is built for CUDA {needs[0]}.{needs[1]}; "
            f"update the driver to {minimum} or newer"
        )
    status = cuda.cuInit(0)
    count = ctypes.c_int(0)
    if status == CUDA_ERROR_NO_DEVICE or (
        status == 0 and cuda.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value == 0
    ):
        raise CudaUnavailable(
            "the NVIDIA driver sees no GPU (check CUDA_VISIBLE_DEVICES / NVIDIA_VISIBLE_DEVICES "
            "and the container's device reservation)"
        )
    if status != 0:
        raise CudaUnavailable(f"the NVIDIA driver failed to initialise (cuInit error {status})")
    return f"CUDA {have[0]}.{have[1]} driver, {count.value} GPU(s)"


def diagnose_cuda(ort: types.ModuleType) -> str:
    """Why the CUDA provider can attach ('CUDA 13.0 driver, 1 GPU(s)'), or CudaUnavailable."""
    if CUDA_PROVIDER not in ort.get_available_providers():
        raise CudaUnavailable(
            "this onnxruntime has no CUDA provider (it is the CPU build: the GPU image and "
            "the dev-gpu lock install onnxruntime-gpu)"
        )
    # The driver first: the provider links libcuda.so.1 itself, and its absence (no GPU given
    # to the container) would otherwise read as a missing CUDA library.
    driver = _driver()
    _load_provider_library(ort)
    return check_driver(driver, cuda_runtime_version())
