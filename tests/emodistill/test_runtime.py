"""The backend says which device and file it serves, and why; cuda that cannot be had stops."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from emodistill.bundle import MODEL_FP16, MODEL_FP32, MODEL_INT8
from emodistill.gpu import CudaUnavailable
from emodistill.runtime import OnnxBackend, choose_device, choose_model

ROOT = Path(__file__).resolve().parents[2]


def test_auto_without_a_gpu_serves_fp32_on_the_cpu_and_warns_why(bundle, caplog):
    with caplog.at_level(logging.WARNING):
        backend = OnnxBackend(bundle, device="auto")
    assert backend.provider == "CPUExecutionProvider"
    assert backend.model_file.name == MODEL_FP32  # never fp16 on the CPU
    warning = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning and "device=auto: no GPU, serving on the CPU" in warning[0].getMessage()


def test_cuda_without_a_gpu_raises_the_cause():
    with pytest.raises(CudaUnavailable, match="no CUDA provider"):
        choose_device("cuda")


def test_cpu_is_not_diagnosed():
    assert choose_device("cpu") == (False, "device=cpu")


def test_files_by_device(bundle):
    from emodistill.bundle import load_bundle

    meta = load_bundle(bundle)
    assert choose_model(meta, cuda=True, int8=True) == MODEL_FP16
    assert choose_model(meta, cuda=False, int8=False) == MODEL_FP32
    expected_int8 = MODEL_INT8 if MODEL_INT8 in meta.files else MODEL_FP32
    assert choose_model(meta, cuda=False, int8=True) == expected_int8


def test_the_service_asked_for_cuda_exits_with_one_line(bundle):
    done = subprocess.run(
        [sys.executable, "-m", "service", "--model", str(bundle), "--device", "cuda"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "error: device=cuda, but CUDA is unavailable: this onnxruntime has no CUDA provider"
        )
    )
    assert "Traceback" not in done.stderr
