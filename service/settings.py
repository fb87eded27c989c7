"""Every setting of the service: a command-line flag and an EMODISTILL_ environment variable.

`python -m service --max-batch-size 16` and `EMODISTILL_MAX_BATCH_SIZE=16` set the same
field; flags win over the environment. Each field's description says its trade-off. The
inference options (segmentation, windows, batch and audio limits) are
emodistill.options.InferenceOptions' fields, inherited with their defaults and descriptions:
the Python API and the service share that one home.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from emodistill.options import InferenceOptions


class Settings(BaseSettings, InferenceOptions):
    model_config = SettingsConfigDict(env_prefix="EMODISTILL_", extra="forbid", frozen=False)

    model: Path = Field(Path("models/demo/bundle"), description="Model bundle folder (read only).")
    host: str = Field("127.0.0.1", description="Interface to bind; 0.0.0.0 in a container.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port to listen on (0: any free).")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: CUDA with model.fp16.onnx when onnxruntime-gpu sees a GPU."
    )
    int8: bool = Field(
        False,
        description="On CPU, serve model.int8.onnx if the bundle has it: faster, "
        "slightly different probabilities (its agreement is in bundle.json).",
    )
    max_wait_ms: float = Field(
        0.0,
        ge=0,
        description="How long a request may wait for others to share its batch. 0: a batch "
        "leaves as soon as the model is free, and requests arriving while it runs form the "
        "next one (lowest latency, full batches under load); more helps only when requests "
        "arrive far apart yet the model is busy.",
    )
    max_queue: int = Field(
        256,
        ge=1,
        description="Requests waiting for the model; beyond it, 503 with Retry-After "
        "(fast failure instead of unbounded latency and memory).",
    )
    max_upload_mb: float = Field(
        25.0,
        gt=0,
        description="Largest request body; larger uploads get 413 without being read into memory.",
    )
    max_json_mb: float = Field(
        8.0,
        gt=0,
        description="Largest JSON part of a v2 infer request (413 beyond, before parsing). "
        "Larger tensors go as binary data (Inference-Header-Content-Length), which costs no "
        "parsing.",
    )
    max_uploads: int = Field(
        32,
        ge=1,
        description="Requests whose body is read and decoded at once; the others wait before "
        "reading theirs. Bounds request bodies in memory to max_uploads × max_upload_mb "
        "(800 MB at the defaults); each waits at most body_timeout_s.",
    )
    decode_workers: int = Field(
        0,
        ge=0,
        description="Threads that decode, resample and parse uploads off the event loop, so "
        "that no upload delays another request (health checks included). About the number "
        "of cores left to the service after the model's. 0: 1 where one model call at a "
        "time holds every core (a large model on the CPU: a second thread only competes "
        "with the model's, HuBERT-base 0.94x -> 1.02x Triton's requests/s), else 2.",
    )
    engine_streams: int = Field(
        0,
        ge=0,
        description="Model calls at once on the CPU: a call that starts beside another runs "
        "on cores / N threads, a lone one on every core (emodistill/streams.py; the weights "
        "are then held twice). 0: chosen at warm-up: one per core, with at most 24 s of "
        "padded audio per call, where such a call takes under 0.5 s on every core (a small "
        "model: 1.55-1.66x the requests/s of one call on every core, measured on 2 cores), "
        "else 1 (a large model's operators share out well: HuBERT-base 1.20x). 1: one call "
        "at a time on every core. Always 1 on a GPU.",
    )
    batch_order: Literal["auto", "length", "arrival"] = Field(
        "auto",
        description="Which waiting clips join the oldest's batch. 'length': those nearest "
        "to it in length, from anywhere in the queue (little padding, and on a GPU, where a "
        "companion costs little, the most clips per call). 'arrival': the next ones in "
        "arrival order, while they fit (no clip is passed by a newer one). auto: on the CPU, "
        "for a model whose call of 24 s takes 0.5 s or more on every core (HuBERT-base), "
        "'arrival' with no padding unless --max-batch-padding is given, as a call there "
        "costs its padded audio, batch or not (HuBERT-base, clips of 1-6 s, 64 clients: "
        "p99 20.8 s against 34.7 s by length); else 'length'.",
    )
    workers: int = Field(
        0,
        ge=0,
        description="HTTP processes: each parses requests and decodes uploads on its own "
        "cores. 0: what suits the host (auto_workers). 1: one process, the model in it.",
    )
    layout: Literal["shared-model", "replicas"] = Field(
        "shared-model",
        description="With several workers: 'shared-model' runs the model in one process that "
        "every worker feeds (batches as large as one process forms; one copy in memory); "
        "'replicas' loads a model into each worker (N copies, N smaller batches). "
        "docs/benchmarks.md compares them.",
    )
    keep_alive_s: float = Field(
        5.0, gt=0, description="An idle kept-alive connection is closed after this long."
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="A request's header block must arrive within this long of its first byte "
        "(or of the connection): 408 and close. Stops connections held open by trickling "
        "headers.",
    )
    max_header_kb: int = Field(
        16, ge=1, description="Largest header block; 431 and close beyond (checked as it arrives)."
    )
    body_timeout_s: float = Field(
        120.0,
        gt=0,
        description="A request's whole body must arrive within this long of its headers: "
        "408 and close. 120 s carries 25 MB at under 2 Mbit/s; lower it where clients are fast.",
    )
    max_connections: int = Field(
        1000,
        ge=1,
        description="Open connections of the whole service (every worker counts into one "
        "shared count) before new requests get 503 with Retry-After; keep it below the "
        "file-descriptor limit (ulimit -n).",
    )
    shutdown_grace_s: float = Field(
        5.0,
        ge=0,
        description="On SIGTERM: readiness fails at once, requests are still accepted for this "
        "long (a load balancer or Kubernetes endpoint stops sending meanwhile), then the "
        "service drains. A second signal stops at once.",
    )
    drain_s: float = Field(
        30.0,
        ge=0,
        description="After the grace period, how long requests in flight may take to finish.",
    )
    api_key: str | None = Field(
        None,
        description="If set, every route but health and metrics needs "
        "'Authorization: Bearer <key>'.",
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS; empty: CORS off."
    )
    warmup: bool = Field(True, description="Run a full batch at start; not ready until done.")
    # --- the model process's watchdog (--workers N, layout shared-model) ---
    model_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Each HTTP worker pings the model process (every second at most): past "
        "this long without an answer, or with one model call running longer (a frozen process, "
        "a deadlock, a hung GPU kernel), the worker fails readiness, answers new requests 503 "
        "with Retry-After and those waiting 504. Above the slowest batch the model runs.",
    )
    model_stall_exit_s: float = Field(
        60.0,
        gt=0,
        description="A model process stalled this long (see model_timeout_s) ends the service "
        "with exit status 1, for the orchestrator to restart it. A model that answers again "
        "sooner is served again as before.",
    )
    # --- live streams (WS /stream, service/stream.py; docs/streaming.md) ---
    max_streams: int = Field(
        100,
        ge=0,
        description="Open WebSocket streams per process; more are refused (HTTP 503) before "
        "the upgrade. Each holds at most ~3 × max_segment_s of audio (about 2 MB).",
    )
    max_stream_s: float = Field(
        3600.0,
        gt=0,
        description="A stream ends (session.ended, close 4413) once its audio or its "
        "wall-clock time passes this.",
    )
    stream_idle_s: float = Field(
        10.0, gt=0, description="A stream that sends nothing for this long is closed (4408)."
    )
    max_frame_kb: int = Field(
        256,
        ge=1,
        description="Largest binary audio frame (1009 beyond); 256 KB is 8 s of 16 kHz PCM.",
    )
    interim_ms: float = Field(
        1000.0,
        ge=0,
        description="Default interval of interim estimates, in ms of speech (each one is a "
        "model call); 0: none.",
    )
    min_interim_ms: float = Field(
        250.0, ge=0, description="The shortest interim interval a client may ask for."
    )
