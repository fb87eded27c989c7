"""Decoding cost per audio-second for each format people send, on one core.

`python -m bench.decode [--seconds 30] [--repeats 5]`: each format of `bench.formats` is
encoded once (a speech-like signal: a harmonic voice with a wandering pitch, stereo where the
format is usually stereo), then decoded by the service's own `decode_upload` (container,
limits, decode, mono, soxr to 16 kHz) `repeats` times; prints and writes
docs/bench/decode.json with the median ms per audio-second. Pinned to one core, since the
service decodes one upload per core.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from bench.formats import FORMATS, encode
from bench.report import Results
from emodistill.audio import SAMPLE_RATE_HZ
from emodistill.audio_input import decode_upload
from emodistill.options import InferenceOptions
from export.parity import probe_clips

OUT = Path("docs/bench/decode.json")


def measure(seconds: float, repeats: int) -> list[dict[str, object]]:
    limits = InferenceOptions(max_audio_s=seconds + 5).audio_limits(SAMPLE_RATE_HZ)
    rows: list[dict[str, object]] = []
    for fmt in FORMATS:
        voice = probe_clips(1, seconds, seconds, fmt.rate_hz, seed=4)[0]
        data = encode(voice, fmt)
        out = decode_upload(data, limits)  # warm: the codec's tables, numpy's first call
        times_s = []
        for _ in range(repeats):
            start = time.perf_counter()
            decode_upload(data, limits)
            times_s.append(time.perf_counter() - start)
        rows.append(
            {
                "format": fmt.name,
                "container": fmt.container,
                "codec": fmt.codec,
                "rate_hz": fmt.rate_hz,
                "bytes_per_audio_s": round(len(data) / seconds),
                # Within a codec block (IMA ADPCM pads its last block: +0.1 s here).
                "decoded_ok": abs(out.duration_s - seconds) < 0.2,
                "ms_per_audio_s": statistics.median(times_s) * 1000 / seconds,
            }
        )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.decode")
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    rows = measure(args.seconds, args.repeats)
    print(f"{'format':36s} {'decoded':>8s} {'kB/audio-s':>10s} {'ms/audio-s':>10s}")
    for r in rows:
        kb = float(r["bytes_per_audio_s"]) / 1000  # type: ignore[arg-type]
        print(f"{r['format']!s:36s} {r['decoded_ok']!s:>8s} {kb:10.1f} {r['ms_per_audio_s']:10.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    command = f"python -m bench.decode --seconds {args.seconds:g} --repeats {args.repeats}"
    record = {"command_shown": command, "one_core": True, "rows": rows}
    args.out.write_text(json.dumps(record, indent=2))
    print(f"wrote {args.out}")


def report_section(results: Results, model: str) -> list[str]:
    """Section 6 of docs/benchmarks.md: cost and size per audio-second of each format."""
    if "decode" not in results:
        return ["Pending.", ""]
    shown_cmd, decode = results["decode"]
    lines = [
        f"`{shown_cmd}`: the service's `decode_upload` (container, limits, FFmpeg decode, mono, "
        "soxr to 16 kHz) on one core, median per audio-second of a speech-like signal.",
        "",
        "| format | decoded | kB per audio-s | ms per audio-s |",
        "|---|---|---|---|",
    ]
    for r in decode["rows"]:
        ok = "yes" if r["decoded_ok"] else "no"
        kb = r["bytes_per_audio_s"] / 1000
        lines.append(f"| {r['format']} | {ok} | {kb:.1f} | {r['ms_per_audio_s']:.2f} |")
    return [*lines, ""]


if __name__ == "__main__":
    main()
