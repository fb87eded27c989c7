"""Live streams: how many real-time streams one host carries before utterances come late.

    python -m bench.stream --model models/demo/bundle [--levels 8,16,32,64] [--seconds 30]
                           [--audio call.wav] [--out docs/bench/stream.json]

Starts `python -m service` (one process) and, at each level, opens N streams that send the
same recording at real time (100 ms frames, their starts spread over a second so they do not
speak in lockstep) for `--seconds`. Per utterance.end event, client side:

- delay: from the moment the utterance's last sample was sent to its event. It includes
  the hold until no later audio can change the utterance (emodistill.live_segments: the
  next speech lasting min_segment_s, or max_segment_s after its start), which no load
  changes;
- processing: the event's `processing_s`, from the arrival of the audio that settled the
  utterance to its event (queue and model): what load adds.

A level is sustained while the processing p99 stays under 1 s and every stream ends with
session.ended. The service's CPU per stream-second of audio (from /proc) projects a GPU host
as bench/frontend.py does: HTTP workers on `--cores` - 1 cores each carry
1 / (CPU s per stream-s) streams, the model process is one more, and the simulated H100
(bench/simulated_engine.py: fixed_ms + ms_per_audio_s × padded audio-s per batch; HuBERT-base
at 30 % of the fp16 peak, not a GPU measurement) carries 1 / (engine s per stream-s), where a
stream sends the engine the audio it scores (its spans and interims, measured here) in full
batches of max_batch_size spans of the mean span length.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.simulated_engine import LatencyModel
from emodistill.audio import SAMPLE_RATE_HZ, load_audio

SUSTAINED_P99_S = 1.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def recording(path: str | None) -> np.ndarray:
    """The recording every stream sends: a file, or test_segments' espeak-ng conversation."""
    if path:
        return load_audio(path)
    if shutil.which("espeak-ng") is None:
        raise SystemExit("bench.stream: give --audio FILE (espeak-ng is not installed)")
    from tests.emodistill.test_segments import make_conversation

    return make_conversation()[0]


async def one_stream(url: str, audio: np.ndarray, seconds: float, offset_s: float) -> dict:
    """One real-time stream of `audio` (looped to `seconds`): its utterance figures."""
    from emodistill.live import SessionEnded, UtteranceEnd
    from emodistill.live_client import stream

    await asyncio.sleep(offset_s)
    loops = max(1, round(seconds * SAMPLE_RATE_HZ / len(audio)))
    samples = np.tile(audio, loops)
    delays, processing, scored_s = [], [], 0.0
    started = time.monotonic()
    ended = False
    async for event in stream(url, samples, realtime=True, interim_ms=1000):
        if isinstance(event, UtteranceEnd):
            delays.append(time.monotonic() - (started + event.end_s))
            processing.append(event.processing_s)
            scored_s += event.end_s - event.start_s
        ended = ended or isinstance(event, SessionEnded)
    return {
        "delays": delays,
        "processing": processing,
        "ended": ended,
        "audio_s": len(samples) / SAMPLE_RATE_HZ,
        "scored_s": scored_s,
    }


async def level(url: str, audio: np.ndarray, streams: int, seconds: float) -> list[dict]:
    return list(
        await asyncio.gather(
            *(one_stream(url, audio, seconds, i / streams) for i in range(streams))
        )
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    audio = recording(args.audio)
    port = _free_port()
    service = subprocess.Popen(
        [
            *(sys.executable, "-m", "service", "--model", str(args.model), "--port", str(port)),
            *("--workers", "1", "--max-streams", "1000", "--max-queue", "4096"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or service.poll() is not None:
                raise SystemExit("bench.stream: the service did not start")
            time.sleep(0.2)
        levels = {}
        for n in [int(x) for x in args.levels.split(",")]:
            cpu_before, t0 = _cpu_s(service.pid), time.monotonic()
            per_stream = asyncio.run(
                level(url.replace("http", "ws") + "/stream", audio, n, args.seconds)
            )
            cpu = _cpu_s(service.pid) - cpu_before
            wall = time.monotonic() - t0
            delays = [d for r in per_stream for d in r["delays"]]
            processing = [p for r in per_stream for p in r["processing"]]
            stream_s = sum(r["audio_s"] for r in per_stream)
            entry = {
                "streams": n,
                "ended": sum(r["ended"] for r in per_stream),
                "utterances": len(delays),
                "delay_p50_s": float(np.percentile(delays, 50)) if delays else None,
                "delay_p99_s": float(np.percentile(delays, 99)) if delays else None,
                "processing_p50_s": float(np.percentile(processing, 50)) if processing else None,
                "processing_p99_s": float(np.percentile(processing, 99)) if processing else None,
                "cpu_s_per_stream_s": cpu / stream_s,
                "scored_s_per_stream_s": sum(r["scored_s"] for r in per_stream) / stream_s,
                "wall_s": wall,
            }
            entry["sustained"] = bool(
                entry["ended"] == n
                and entry["processing_p99_s"] is not None
                and entry["processing_p99_s"] < SUSTAINED_P99_S
            )
            levels[str(n)] = entry
            print(json.dumps(entry), flush=True)
            if not entry["sustained"]:
                break
    finally:
        service.send_signal(signal.SIGINT)
        service.wait(timeout=60)
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "recording_s": len(audio) / SAMPLE_RATE_HZ,
        "seconds": args.seconds,
        "levels": levels,
    }
    results["projection"] = project(results, args.cores, args.batch)
    return results


def project(results: dict[str, Any], cores: int, batch: int) -> dict[str, Any]:
    """Streams one GPU host could carry (see the module doc for the assumptions)."""
    sustained = [e for e in results["levels"].values() if e["sustained"]] or list(
        results["levels"].values()
    )
    top = max(sustained, key=lambda e: e["streams"])
    http_streams = (cores - 1) / top["cpu_s_per_stream_s"]
    latency = LatencyModel()
    # Interims (1 per s of speech, up to window_s long) are not in scored_s: count them as
    # one more second of audio per second of speech, a generous bound.
    scored = top["scored_s_per_stream_s"] * 2
    span_s = 3.0  # the recording's utterances: 2.6-3.5 s
    engine_s_per_stream_s = latency.batch_s(batch, span_s) / batch * (scored / span_s)
    engine_streams = 1 / engine_s_per_stream_s
    return {
        "cores": cores,
        "http_streams": http_streams,
        "engine_streams": engine_streams,
        "projected_streams": min(http_streams, engine_streams),
        "assumptions": (
            f"{cores - 1} HTTP workers at the CPU per stream-second measured at "
            f"{top['streams']} streams; the simulated H100 ({latency.fixed_ms:g} ms + "
            f"{latency.ms_per_audio_s:.4f} ms per padded audio-s) in batches of {batch} "
            f"spans of {span_s:g} s; interims counted as much audio again as the utterances"
        ),
    }


def report_section(results: dict[str, tuple[str, dict[str, Any]]], model: str) -> list[str]:
    """The streaming section of docs/benchmarks.md."""
    if "stream" not in results:
        return ["Pending: `python -m bench.stream --model " + model + "`.", ""]
    shown_cmd, r = results["stream"]
    lines = [
        f"`{shown_cmd}` ({r['machine']}; the clients share the machine; each stream sends a "
        f"{r['recording_s']:.0f} s recording at real time for {r['seconds']:g} s).",
        "",
        "delay: the utterance's last sample sent → its utterance.end (includes the hold until "
        "no later audio can change it); processing: the audio that settled it → its event.",
        "",
        "| streams | ended | utterances | delay p50 s | delay p99 s | processing p50 ms "
        "| processing p99 ms | CPU s per stream-s | sustained |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in r["levels"].values():
        lines.append(
            f"| {e['streams']} | {e['ended']} | {e['utterances']} | {e['delay_p50_s']:.2f} | "
            f"{e['delay_p99_s']:.2f} | {1000 * e['processing_p50_s']:.0f} | "
            f"{1000 * e['processing_p99_s']:.0f} | {e['cpu_s_per_stream_s']:.4f} | "
            f"{'yes' if e['sustained'] else 'no'} |"
        )
    p = r["projection"]
    lines += [
        "",
        f"Projected to a {p['cores']}-core host with one H100: {p['projected_streams']:.0f} "
        f"real-time streams (HTTP side {p['http_streams']:.0f}, engine "
        f"{p['engine_streams']:.0f}). Assumptions: {p['assumptions']}.",
        "",
    ]
    return lines


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", type=Path, required=True, help="The bundle to serve.")
    p.add_argument("--levels", default="8,16,32,64", help="Concurrent streams, in order.")
    p.add_argument("--seconds", type=float, default=30.0, help="Audio per stream per level.")
    p.add_argument("--audio", help="The recording (default: an espeak-ng conversation).")
    p.add_argument("--cores", type=int, default=16, help="The GPU host's cores (projection).")
    p.add_argument("--batch", type=int, default=32, help="Spans per engine batch (projection).")
    p.add_argument("--out", type=Path, help="Write the results as JSON here.")
    args = p.parse_args()
    results = run(args)
    results["command_shown"] = "python -m bench.stream " + " ".join(sys.argv[1:])
    print(json.dumps(results["projection"], indent=2))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
