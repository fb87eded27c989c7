"""Ray Serve serving the bundle, as its documentation recommends for throughput: one replica
with `@serve.batch` (max_batch_size 32, batch_wait_timeout_s 2 ms) and max_ongoing_requests
above the batch size (the default, 5, would cap every batch at 5), behind Ray's HTTP proxy.

    python -m bench.peer_ray --model BUNDLE --port P [--max-batch-size 32] [--batch-wait-ms 2]

Takes the same multipart upload as our /predict (the part named `file`), decodes it with our
decoder and limits in the replica, and scores each batch with our ONNX session
(bench/peer_model.py). One replica: a second on 2 cores would only split them.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import ray
from ray import serve
from starlette.requests import Request

from bench.peer_model import PeerModel


def deployment(bundle: Path, max_batch_size: int, batch_wait_s: float) -> Any:
    @serve.deployment(num_replicas=1, max_ongoing_requests=4 * max_batch_size)
    class Emotion:
        def __init__(self) -> None:
            self.model = PeerModel(bundle)

        @serve.batch(max_batch_size=max_batch_size, batch_wait_timeout_s=batch_wait_s)
        async def score(self, clips: list[np.ndarray]) -> list[dict[str, float]]:
            return self.model.predict(clips)

        async def __call__(self, request: Request) -> dict[str, Any]:
            form = await request.form()
            upload = form["file"]
            data = await upload.read()  # type: ignore[union-attr]
            clip = self.model.decode(data, upload.content_type)  # type: ignore[union-attr]
            return {"probabilities": await self.score(clip)}

    return Emotion.bind()  # type: ignore[attr-defined]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--batch-wait-ms", type=float, default=2.0)
    args = p.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    app = deployment(args.model.resolve(), args.max_batch_size, args.batch_wait_ms / 1000)
    serve.run(app, route_prefix="/predict", blocking=False)
    print("ready", flush=True)
    while True:  # serve until terminated
        time.sleep(3600)


if __name__ == "__main__":
    main()
