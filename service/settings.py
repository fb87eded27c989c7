"""Every setting of the service: a command-line flag and an EMODISTILL_ environment variable.

`python -m service --max-batch-size 16` and `EMODISTILL_MAX_BATCH_SIZE=16` set the same
field; flags win over the environment. Each field's description says its trade-off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from emodistill.audio_input import MAX_AUDIO_S, MAX_DECODED_SAMPLES
from emodistill.scoring import (
    HOP_S,
    MAX_BATCH_AUDIO_S,
    MAX_BATCH_SIZE,
    MAX_SEGMENT_S,
    MIN_SEGMENT_S,
    WINDOW_S,
)
from emodistill.segments import SegmentOptions


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EMODISTILL_", extra="forbid")

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
    max_batch_size: int = Field(
        MAX_BATCH_SIZE,
        ge=1,
        description="Most clips per model call. Larger: more throughput under load, "
        "more latency for the clips that wait for a long one.",
    )
    max_batch_audio_s: float = Field(
        MAX_BATCH_AUDIO_S,
        gt=0,
        description="Padded audio per batch (longest clip × clips), in seconds: "
        "bounds memory and the cost of padding, as text-embeddings-inference bounds tokens.",
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
    max_audio_s: float = Field(
        MAX_AUDIO_S,
        gt=0,
        description="Longest audio accepted (413 beyond). Long audio is scored "
        "window by window, so this bounds work, not memory.",
    )
    max_decoded_samples: int = Field(
        MAX_DECODED_SAMPLES,
        ge=1,
        description="Decoding work per upload: frames × channels, from the header, before "
        "decoding (413 beyond). The default is 600 s of 48 kHz stereo; a small compressed "
        "file of many channels at a high rate would otherwise decode to gigabytes.",
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
        2,
        ge=1,
        description="Threads that decode, resample and parse uploads off the event loop, so "
        "that no upload delays another request (health checks included). About the number "
        "of cores left to the service after the model's.",
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
    segmentation: Literal["speech", "windows"] = Field(
        "speech",
        description="How POST /predict cuts audio longer than max_segment_s: 'speech' into "
        "utterances at pauses (voice activity detection; silence is not scored), 'windows' "
        "into fixed windows whatever is said.",
    )
    min_segment_s: float = Field(
        MIN_SEGMENT_S, gt=0, description="A shorter utterance joins its nearer neighbour."
    )
    max_segment_s: float = Field(
        MAX_SEGMENT_S,
        gt=0,
        description="Clips up to this are scored whole; a longer stretch of speech in windows.",
    )
    window_s: float = Field(
        WINDOW_S,
        gt=0,
        description="Windows where audio is cut without speech detection (and inside a "
        "stretch of speech longer than max_segment_s); IEMOCAP utterances are mostly under 10 s.",
    )
    hop_s: float = Field(HOP_S, gt=0, description="Step between windows; < window_s overlaps.")
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

    @model_validator(mode="after")
    def _windows(self) -> Settings:
        _ = self.segment_options  # its checks: hop_s within window_s, the segment bounds
        return self

    @property
    def segment_options(self) -> SegmentOptions:
        return SegmentOptions(
            self.segmentation, self.window_s, self.hop_s, self.min_segment_s, self.max_segment_s
        )


def settings_from_cli(argv: list[str] | None = None) -> Settings:
    """Settings from flags (argv), then EMODISTILL_ variables, then defaults."""
    from pydantic_settings import CliSettingsSource

    args = list(argv or [])
    source: CliSettingsSource[Settings] = CliSettingsSource(
        Settings, cli_prog_name="python -m service", cli_parse_args=args, cli_kebab_case=True
    )
    return Settings(_cli_settings_source=source(args=args))  # type: ignore[call-arg]
