"""Ours against what users would pick instead, side by side on one machine in one run.

    python -m bench.peers --model models/demo/bundle [--base models/bench/base_bundle]
                          [--clients 16,64,256] [--requests 512] [--repeats 2]
                          [--clip-s 3 | --mixed] [--base-mixed]
                          [--peers litserve,ray,triton] [--kinds multipart,v2-binary,v2-json]
                          [--out FILE.json]

Needs the `peers` extra (make bench-peers installs it into its own venv). Every server is started
once (each paused while another is driven: an idle LitServe polls), then at each client count
the pairs are driven in alternation (round after round, the
order rotating), so a slow spell of a shared machine lands on all of them alike:
- ours (`python -m service`, its default layout for the host) and LitServe and Ray Serve
  (bench/peer_litserve.py, bench/peer_ray.py): the same 3 s WAV as a multipart upload to
  /predict;
- ours and Triton (bench/peer_triton.py): the same clip as an FP32 tensor on the Open
  Inference Protocol's infer route, with the binary tensor extension and as JSON (bodies built
  by tritonclient, Triton's own client).
Every peer decodes with our decoder and limits and scores with our onnxruntime session
(bench/peer_model.py), so only the serving stack differs. Figures per server and level:
requests/s (median round), p50/p99 latency (all rounds), CPU ms per request (the server's
process tree), mean batch size. The Python API against transformers' pipeline is
bench/peers_api.py, a part of this section; the section is bench/peers_report.py. Prints a
table and writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import io
import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import soundfile as sf

from bench.peer_model import STATS_ENV, read_stats
from bench.service_load import batch_totals, fire, free_port, own_cpu_s, process_tree, speech_like
from emodistill.audio import SAMPLE_RATE_HZ
from emodistill.bundle import load_bundle
from emodistill.options import InferenceOptions
from emodistill.streams import STREAM_BATCH_AUDIO_S, STREAM_MAX_CALL_S
from export.parity import probe_clips

PEERS = ("litserve", "ray", "triton")
MODULES = {"ours": "service", "litserve": "bench.peer_litserve", "ray": "bench.peer_ray"}
MODULES["triton"] = "bench.peer_triton"
# (server, request kind): who is compared with whom, on which wire.
KINDS = {"multipart": ("ours", "litserve", "ray"), "v2-binary": ("ours", "triton")}
KINDS["v2-json"] = ("ours", "triton")
PACKAGES = ("litserve", "ray", "nvidia-pytriton", "tritonclient", "transformers", "onnxruntime")


@dataclass
class Server:
    name: str
    process: subprocess.Popen
    url: str
    stats: Path | None  # a peer's clip and call counts; ours has /metrics
    ready_s: float = 0.0
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def batches(self) -> tuple[float, float]:
        """(clips, model calls) so far."""
        return batch_totals(self.url) if self.stats is None else read_stats(self.stats)


@dataclass(frozen=True)
class Wire:
    """The requests of one kind as sent, in turn: path, bodies and how (each body with its
    own headers)."""

    path: str
    bodies: tuple[bytes, ...]
    content_type: str = "application/octet-stream"
    form_field: str | None = None
    headers: tuple[dict[str, str], ...] = ({},)

    @property
    def body(self) -> bytes:
        """The first request: the readiness probe's."""
        return self.bodies[0]


# `--mixed`: clips of 1-6 s, as IEMOCAP's utterances mostly are, in turn (a fixed shuffle).
MIXED_CLIPS = 16
MIXED_S = (1.0, 6.0)
MIXED_SEED = 5


def clip_set(clip_s: float, mixed: bool) -> list[bytes]:
    """The clips sent, as 16-bit WAV: one of `clip_s`, or MIXED_CLIPS of MIXED_S."""
    if not mixed:
        return [speech_like(clip_s)]
    out = []
    for clip in probe_clips(MIXED_CLIPS, *MIXED_S, SAMPLE_RATE_HZ, MIXED_SEED):
        buffer = io.BytesIO()
        sf.write(buffer, clip, SAMPLE_RATE_HZ, format="WAV", subtype="PCM_16")
        out.append(buffer.getvalue())
    return out


def wires(bundle: Path, clip_s: float, mixed: bool = False) -> dict[str, Wire]:
    """The requests of each kind for the clips (clip_set): multipart WAV, v2 binary and JSON."""
    import tritonclient.http as triton

    wavs = clip_set(clip_s, mixed)
    name = load_bundle(bundle).name
    out = {"multipart": Wire("/predict", tuple(wavs), "audio/wav", form_field="file")}
    for kind, binary in (("v2-binary", True), ("v2-json", False)):
        bodies, headers = [], []
        for wav in wavs:
            samples = sf.read(io.BytesIO(wav), dtype="float32")[0][None]
            audio = triton.InferInput("audio", list(samples.shape), "FP32")
            audio.set_data_from_numpy(samples, binary_data=binary)
            wanted = triton.InferRequestedOutput("probabilities", binary_data=binary)
            body, json_size = triton.InferenceServerClient.generate_request_body([audio], [wanted])
            bodies.append(bytes(body))
            headers.append({"Inference-Header-Content-Length": str(json_size)} if json_size else {})
        content = "application/octet-stream" if binary else "application/json"
        path = f"/v2/models/{name}/infer"
        out[kind] = Wire(path, tuple(bodies), content, headers=tuple(headers))
    return out


def send(url: str, wire: Wire, total: int, clients: int) -> tuple[float, list[float]]:
    return asyncio.run(
        fire(
            url,
            wire.bodies,
            total,
            clients,
            wire.content_type,
            wire.path,
            wire.form_field,
            wire.headers,
        )
    )


def start(
    name: str,
    bundle: Path,
    workdir: Path,
    probe: Wire,
    extra: list[str] | None = None,
    timeout_s: float = 300,
) -> Server:
    """The server as a subprocess (`extra`: more flags), ready once it answers `probe`."""
    port = free_port()
    stats = None if name == "ours" else workdir / f"{name}.stats.json"
    env = {**os.environ, **({STATS_ENV: str(stats)} if stats else {})}
    log = (workdir / f"{name}.log").open("w")
    command = [sys.executable, "-m", MODULES[name], "--model", str(bundle), "--port", str(port)]
    command += extra or []
    begin = time.perf_counter()
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    server = Server(name, process, f"http://127.0.0.1:{port}", stats)
    while time.perf_counter() - begin < timeout_s:
        if process.poll() is not None:
            server.error = f"exited {process.returncode}: " + _tail(workdir / f"{name}.log")
            return server
        try:
            if probe.form_field:
                files = {probe.form_field: ("clip", probe.body, probe.content_type)}
                reply = httpx.post(server.url + probe.path, files=files, timeout=30)
            else:
                headers = {"content-type": probe.content_type, **probe.headers[0]}
                reply = httpx.post(
                    server.url + probe.path, content=probe.body, headers=headers, timeout=30
                )
            if reply.status_code == 200:
                server.ready_s = time.perf_counter() - begin
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    server.error = f"not ready within {timeout_s:.0f} s: " + _tail(workdir / f"{name}.log")
    return server


def _tail(path: Path, lines: int = 8) -> str:
    return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])


def stop(server: Server) -> None:
    for pid in reversed(process_tree(server.process.pid)):  # children first: Ray's raylet, ...
        with contextlib.suppress(OSError):
            os.kill(pid, 15)
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()


# Idle, LitServe's worker polls its queue: 21 % of a core on the 2-core machine, against under
# 1 % for ours and Triton. Left running, it takes that from whichever server is measured.
# Ray is never paused: its processes watch each other's heartbeats.
_NEVER_PAUSED = ("ray",)


@contextlib.contextmanager
def _alone(servers: dict[str, Server], measured: str) -> Iterator[None]:
    """The other servers paused (SIGSTOP, their whole process trees) while `measured` is
    driven, so that none takes the cores from it; resumed after, whatever happens."""
    paused = [
        pid
        for name, server in servers.items()
        if name != measured and name not in _NEVER_PAUSED
        for pid in process_tree(server.process.pid)
    ]
    try:
        for pid in paused:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGSTOP)
        yield
    finally:
        for pid in paused:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGCONT)


def measure(
    servers: dict[str, Server],
    wire_of: dict[str, Wire],
    clients: int,
    requests: int,
    repeats: int,
    kinds: tuple[str, ...] = tuple(KINDS),
) -> dict[str, dict[str, dict[str, Any]]]:
    """{kind: {server: figures}} at one client count, every pair in alternation."""
    requests = max(requests, 2 * clients)
    runs = [(k, s) for k, names in KINDS.items() if k in kinds for s in names if s in servers]
    for kind, name in runs:  # warm-up burst each
        with _alone(servers, name):
            send(servers[name].url, wire_of[kind], min(requests, 2 * clients), clients)
    rates: dict[tuple[str, str], list[float]] = {r: [] for r in runs}
    latencies: dict[tuple[str, str], list[float]] = {r: [] for r in runs}
    cpu = {r: 0.0 for r in runs}
    batches = {r: [0.0, 0.0] for r in runs}
    for round_index in range(repeats):
        shift = round_index % len(runs)
        for kind, name in runs[shift:] + runs[:shift]:
            server = servers[name]
            pids = process_tree(server.process.pid)
            cpu_before = sum(own_cpu_s(p) for p in pids)
            clips_before, calls_before = server.batches()
            with _alone(servers, name):
                wall, times = send(server.url, wire_of[kind], requests, clients)
            cpu[(kind, name)] += sum(own_cpu_s(p) for p in process_tree(server.process.pid))
            cpu[(kind, name)] -= cpu_before
            clips, calls = server.batches()
            batches[(kind, name)][0] += clips - clips_before
            batches[(kind, name)][1] += calls - calls_before
            rates[(kind, name)].append(requests / wall)
            latencies[(kind, name)] += times
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for kind, name in runs:
        clips, calls = batches[(kind, name)]
        out.setdefault(kind, {})[name] = {
            "requests_per_s": statistics.median(rates[(kind, name)]),
            "requests_per_s_rounds": rates[(kind, name)],
            "p50_ms": 1000 * float(np.percentile(latencies[(kind, name)], 50)),
            "p99_ms": 1000 * float(np.percentile(latencies[(kind, name)], 99)),
            "cpu_ms_per_request": 1000 * cpu[(kind, name)] / (requests * repeats),
            "mean_batch_size": clips / calls if calls else float("nan"),
        }
    return out


def run_bundle(bundle: Path, args: argparse.Namespace) -> dict[str, Any]:
    wire_of = wires(bundle, args.clip_s, args.mixed)
    entry: dict[str, Any] = {"bundle": str(bundle), "levels": {}, "servers": {}}
    entry["clips"] = _clips_shown(args)
    with tempfile.TemporaryDirectory() as tmp:
        servers: dict[str, Server] = {}
        try:
            for name in ("ours", *args.peers):
                if missing := _missing(name):
                    entry["servers"][name] = {"error": f"{missing} not installed: make bench-peers"}
                    print(f"{name}: {missing} not installed", flush=True)
                    continue
                probe = wire_of["v2-binary" if name == "triton" else "multipart"]
                extra = shlex.split(args.service_args) if name == "ours" else []
                server = start(name, bundle, Path(tmp), probe, extra)
                entry["servers"][name] = {"ready_s": server.ready_s, "error": server.error}
                print(
                    f"{name}: " + (server.error or f"ready in {server.ready_s:.1f} s"), flush=True
                )
                if server.error:
                    stop(server)
                else:
                    servers[name] = server
            for clients in args.clients:
                level = measure(servers, wire_of, clients, args.requests, args.repeats, args.kinds)
                entry["levels"][str(clients)] = level
                print_level(clients, level)
        finally:
            for server in servers.values():
                stop(server)
    return entry


def _clips_shown(args: argparse.Namespace) -> str:
    if args.mixed:
        return f"{MIXED_CLIPS} clips of {MIXED_S[0]:g}-{MIXED_S[1]:g} s in turn"
    return f"one clip of {args.clip_s:g} s"


def _missing(name: str) -> str:
    """The peer's package when it cannot be imported here (the peers venv has them all)."""
    package = {"litserve": "litserve", "ray": "ray.serve", "triton": "pytriton"}.get(name)
    if package is None:
        return ""
    try:
        found = importlib.util.find_spec(package) is not None
    except ModuleNotFoundError:
        found = False
    return "" if found else package


def print_level(clients: int, level: dict[str, dict[str, dict[str, Any]]]) -> None:
    for kind, by_server in level.items():
        for name, r in by_server.items():
            print(
                f"{clients:>4} clients {kind:10} {name:9} {r['requests_per_s']:8.1f} req/s "
                f"p50 {r['p50_ms']:7.1f} ms p99 {r['p99_ms']:7.1f} ms "
                f"CPU {r['cpu_ms_per_request']:6.1f} ms/req batch {r['mean_batch_size']:5.2f}",
                flush=True,
            )


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            out[package] = package_metadata.version(package)
        except package_metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", type=Path, required=True, help="the demo bundle")
    p.add_argument("--base", type=Path, default=None, help="the HuBERT-base bench bundle too")
    p.add_argument("--clients", default="16,64,256")
    p.add_argument("--base-clients", default=None, help="client counts for the base bundle")
    p.add_argument("--requests", type=int, default=512, help="per round (at least 2 × clients)")
    p.add_argument("--base-requests", type=int, default=None)
    p.add_argument("--repeats", type=int, default=2, help="rounds per server and level")
    p.add_argument("--clip-s", type=float, default=3.0)
    p.add_argument(
        "--mixed",
        action="store_true",
        help=f"{MIXED_CLIPS} clips of {MIXED_S[0]:g}-{MIXED_S[1]:g} s in turn, not one of --clip-s",
    )
    p.add_argument(
        "--base-mixed",
        action="store_true",
        help="then the base bundle again on the mixed clips (as --mixed), at its client counts",
    )
    p.add_argument("--peers", default=",".join(PEERS))
    p.add_argument("--kinds", default=",".join(KINDS), help="the wires to drive (all by default)")
    p.add_argument(
        "--api-files", type=int, default=48, help="files for the Python API part (0: none)"
    )
    p.add_argument("--service-args", default="", help="more flags for ours (python -m service)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    args.peers = [name for name in args.peers.split(",") if name]
    if missing := [_missing(name) for name in args.peers if _missing(name)]:
        # Before any figure is written: a run without its peers would overwrite theirs.
        sys.exit(f"error: {', '.join(missing)} not installed here; run `make bench-peers`")
    args.clients = [int(c) for c in args.clients.split(",")]
    args.kinds = tuple(kind for kind in args.kinds.split(",") if kind)
    if unknown := [kind for kind in args.kinds if kind not in KINDS]:
        sys.exit(f"error: unknown kinds {unknown}; the kinds are {list(KINDS)}")
    result: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "versions": versions(),
        "clip_s": args.clip_s,
        "repeats": args.repeats,
        "settings": SETTINGS,
        "service_args": args.service_args,
        "bundles": {},
    }

    def save() -> None:
        """After each part: a part that fails later (a server, the API's torch) loses only
        its own figures."""
        if args.out:
            args.out.write_text(json.dumps(result, indent=2) + "\n")

    result["bundles"]["demo"] = run_bundle(args.model, args)
    save()
    if args.base is not None:
        if args.base_clients:
            args.clients = [int(c) for c in args.base_clients.split(",")]
        args.requests = args.base_requests or args.requests
        result["bundles"]["base"] = run_bundle(args.base, args)
        save()
        if args.base_mixed and not args.mixed:
            args.mixed = True
            result["bundles"]["base-mixed"] = run_bundle(args.base, args)
            save()
    if args.api_files:
        from bench import peers_api

        result["api"] = peers_api.run(args.model, args.base, args.api_files)
        save()


# What each server was configured with: stated in the report.
_OURS = InferenceOptions()
_JSON_PARSER = (
    " and ".join(
        name
        for module, name in (("simdjson", "simdjson (the common request)"), ("orjson", "orjson"))
        if importlib.util.find_spec(module)
    )
    or "Python's json"
)
SETTINGS = {
    "ours": "python -m service --model BUNDLE (its defaults: the host's layout; on the CPU, "
    f"where a call of {STREAM_BATCH_AUDIO_S:g} s takes less than {STREAM_MAX_CALL_S:g} s "
    "(the demo), a model call per core at once, each of at most "
    f"{_OURS.max_batch_size} clips and {STREAM_BATCH_AUDIO_S:g} s of padded audio, a lone one "
    "on every core, the oldest clip's batch filled with the nearest lengths, padding at most "
    f"{_OURS.max_batch_padding:g} of its audio; else (HuBERT-base) one call at a time on every "
    f"core, of at most {_OURS.max_batch_size} clips and {_OURS.max_batch_audio_s:g} s, the next "
    "clips in arrival order of the oldest's length, one decoding thread; v2 JSON read by "
    f"{_JSON_PARSER})",
    "litserve": "LitAPI(max_batch_size=32, batch_timeout=0.002), LitServer(accelerator='cpu', "
    "workers_per_device=1), one API server",
    "ray": "@serve.deployment(num_replicas=1, max_ongoing_requests=128), "
    "@serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002), Ray's HTTP proxy, "
    "ray.init(num_cpus=2)",
    "triton": "pytriton: ModelConfig(max_batch_size=32, DynamicBatcher("
    "max_queue_delay_microseconds=2000)), tritonserver's HTTP front end, Python backend",
}


if __name__ == "__main__":
    main()
