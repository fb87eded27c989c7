"""Triton (NVIDIA's tritonserver, from the `nvidia-pytriton` wheel) serving the bundle over the
Open Inference Protocol, as its documentation recommends for throughput: the dynamic batcher
(max_batch_size 32, max_queue_delay 2 ms) in front of the model, Triton's C++ HTTP front end.

    python -m bench.peer_triton --model BUNDLE --port P [--max-batch-size 32]
                                [--queue-delay-us 2000]

The model is the bundle's ONNX graph on our onnxruntime session (bench/peer_model.py), reached
through Triton's Python backend: the backend's stub process hands each batch to this process,
which pytriton runs the function in. Triton's native ONNX Runtime backend (the model file
loaded in tritonserver itself, no Python) is not in the pip wheel. Input "audio" FP32
[batch, samples], output "probabilities" FP32 [batch, labels], as our /v2 routes name them.
The dynamic batcher joins only requests of one shape (no ragged batching here).

The Python backend's stub is linked against libpython3.X.so and finds the first one on the
loader's path: on a machine whose Python is not the system's (pyenv here: 3.11.7 beside
Debian's libpython3.11 3.11.2), the stub ran Debian's library on pyenv's standard library and
failed in `initialize` (`'_thread.RLock' object has no attribute '_recursion_count'`, which
3.11.2 lacks). `main` puts the running interpreter's own library first on LD_LIBRARY_PATH.
"""

from __future__ import annotations

import argparse
import os
import sys
import sysconfig
from pathlib import Path

import numpy as np

from bench.peer_model import PeerModel

INPUT, OUTPUT = "audio", "probabilities"


def matching_libpython_env() -> None:
    """LD_LIBRARY_PATH with this interpreter's libpython first, for the stub (module doc).
    tritonserver is started by pytriton as a child and inherits the environment."""
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir and any(Path(libdir).glob("libpython3*.so*")):
        os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(
            [libdir, *filter(None, [os.environ.get("LD_LIBRARY_PATH")])]
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--queue-delay-us", type=int, default=2000)
    args = p.parse_args()
    matching_libpython_env()
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    model = PeerModel(args.model)

    @batch  # type: ignore[misc]
    def infer(audio: np.ndarray) -> dict[str, np.ndarray]:
        return {OUTPUT: model.probabilities(list(audio.astype(np.float32)))}

    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=args.port,
        grpc_port=args.port + 1,
        metrics_port=args.port + 2,
        exit_on_error=True,
    )
    with Triton(config=config) as triton:
        triton.bind(
            model_name=model.backend.metadata.name,
            infer_func=infer,
            inputs=[Tensor(name=INPUT, dtype=np.float32, shape=(-1,))],
            outputs=[Tensor(name=OUTPUT, dtype=np.float32, shape=(-1,))],
            config=ModelConfig(
                max_batch_size=args.max_batch_size,
                batcher=DynamicBatcher(max_queue_delay_microseconds=args.queue_delay_us),
            ),
            strict=False,
        )
        print("ready", flush=True, file=sys.stderr)
        triton.serve()


if __name__ == "__main__":
    main()
