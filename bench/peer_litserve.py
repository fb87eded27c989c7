"""LitServe serving the bundle, as its documentation recommends for throughput: dynamic
batching (`max_batch_size`, `batch_timeout`), one worker on the CPU, one API server process.

    python -m bench.peer_litserve --model BUNDLE --port P [--max-batch-size 32]
                                  [--batch-timeout-ms 2]

Takes the same multipart upload as our /predict (the part named `file`) and decodes it with our
decoder and limits (bench/peer_model.py); batches are scored by our ONNX session.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import litserve as ls
import numpy as np

from bench.peer_model import PeerModel


class EmotionAPI(ls.LitAPI):  # type: ignore[misc]
    def __init__(self, bundle: Path, max_batch_size: int, batch_timeout_s: float):
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout_s)
        self.bundle = bundle

    def setup(self, device: str) -> None:
        self.model = PeerModel(self.bundle)

    # Unannotated on purpose: LitServe reads the annotation to choose how to parse the body,
    # and only an absent one gives the parsed multipart form (a JSON body otherwise).
    def decode_request(self, request) -> np.ndarray:  # type: ignore[no-untyped-def]
        upload = request["file"]  # a starlette UploadFile
        return self.model.decode(upload.file.read(), upload.content_type)

    def batch(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return inputs  # clips of any length: padded and masked by the backend

    def predict(self, clips: list[np.ndarray]) -> list[dict[str, float]]:
        return self.model.predict(clips)

    def unbatch(self, output: list[dict[str, float]]) -> list[dict[str, float]]:
        return output

    def encode_response(self, output: dict[str, float]) -> dict[str, Any]:
        return {"probabilities": output}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--batch-timeout-ms", type=float, default=2.0)
    args = p.parse_args()
    api = EmotionAPI(args.model, args.max_batch_size, args.batch_timeout_ms / 1000)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1, timeout=300)
    server.run(port=args.port, host="127.0.0.1", generate_client_file=False)


if __name__ == "__main__":
    main()
