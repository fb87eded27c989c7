"""Bulk scoring against the engine alone: how much of the model's throughput reaches a table,
in this process and on Ray Data.

    python -m bench.bulk [--model models/demo/bundle] [--base models/bench/base_bundle]
                         [--files 60] [--long-run-files 600] [--min-s 2] [--max-s 8]
                         [--workers 0] [--repeats 3] [--no-ray] [--out docs/bench/bulk.json]

Writes `--files` WAVs of `--min-s` to `--max-s` seconds (seeded), then, for each bundle on
the CPU: the bulk scorer (`emodistill.bulk.score_files`: worker processes decoding, chunks,
`predict_many`, the journal, the Parquet written at the end, the pool's start included)
against the engine alone (the same runtime backend's `infer` on the same decoded windows, in
the very batches the bulk run sent it, recorded in a first run). Both are timed in
alternation (bench/timing.py), median of `--repeats`; the ratio is bulk audio-s/s over
engine audio-s/s (the goal: ≥ 85 %). What limits it: the bulk run's time before its first
chunk reaches the model (the workers' start); the CPU decoding costs per audio-second, and
so the most the cores can do when decoding and the engine share them (`cpu_ceiling`); and
the demo bundle again on `--long-run-files` files, where the start weighs less.

Ray: the same files through `emodistill.bulk.ray.score_files_ray` on a local Ray of this
machine's cores (started once: `ray_start_s`), timed in alternation with the other two. Each
run pays its own fixed cost (the model actor's start and model load, the pipeline's
scheduling, the dataset read back): `ray_fixed_s` is a run of one file. `ray_over_bulk` is
Ray's audio-s/s over the embedded scorer's. Prints a table and writes JSON. `make demo`
builds the demo bundle; bench/base_bundle.py the base one.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import soundfile as sf

import emodistill
from bench.report import Results
from bench.timing import timed, timed_together
from emodistill.bulk.decode import decode_path, decoded_chunks
from emodistill.bulk.score import BulkOptions, default_workers, score_files
from emodistill.bundle import METADATA

if TYPE_CHECKING:  # not imported at run time: the spawned workers import this script again
    from emodistill.recognizer import Recognizer

FILE_RATE_HZ = 16_000  # the corpora's rate (IEMOCAP): no resampling, decoding at its cheapest


class RecordingBackend:
    """The backend, keeping every batch it is given: the engine's workload, exactly."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.metadata = backend.metadata
        self.labels = backend.labels
        self.provider = backend.provider
        self.batches: list[list[np.ndarray]] = []

    def infer(self, clips: list[np.ndarray]) -> np.ndarray:
        self.batches.append(list(clips))
        return np.asarray(self.backend.infer(clips))


def write_corpus(folder: Path, files: int, min_s: float, max_s: float) -> tuple[list[str], float]:
    """(paths, total seconds): tones with noise, lengths uniform in [min_s, max_s]."""
    rng = np.random.default_rng(0)
    paths, total_s = [], 0.0
    for i, seconds in enumerate(rng.uniform(min_s, max_s, files)):
        n = int(seconds * FILE_RATE_HZ)
        t = np.arange(n) / FILE_RATE_HZ
        samples = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 400) * t) + 0.05 * rng.normal(size=n)
        path = folder / f"clip{i:03d}.wav"
        sf.write(str(path), samples.astype(np.float32), FILE_RATE_HZ, subtype="PCM_16")
        paths.append(str(path))
        total_s += n / FILE_RATE_HZ
    return paths, total_s


def first_chunk_s(rec: Recognizer, paths: list[str], workers: int) -> float:
    """Seconds until the first decoded chunk is ready: the workers' start and first files."""
    limits = rec.pipeline.limits
    start = time.perf_counter()
    chunks = decoded_chunks(paths, limits, workers, chunk_audio_s=1.0, chunk_files=1)
    next(chunks)
    seconds = time.perf_counter() - start
    chunks.close()
    return seconds


def decode_ms_per_audio_s(rec: Recognizer, paths: list[str], audio_s: float) -> float:
    """CPU milliseconds one core spends decoding an audio-second (decode_upload, serially)."""
    limits = rec.pipeline.limits
    start = time.process_time()
    for path in paths:
        decode_path(path, limits)
    return 1000 * (time.process_time() - start) / audio_s


def cpu_ceiling(engine_audio_s_per_s: float, decode_ms: float, cores: int) -> float:
    """audio-s/s at most, when decoding and the engine share `cores` perfectly: each
    audio-second costs its decoding plus the engine's time on every core."""
    return cores / (decode_ms / 1000 + cores / engine_audio_s_per_s)


def ray_run(bundle: str, paths: list[str], out: Path) -> Callable[[], object]:
    """A Ray Data run over `paths` into the folder `out` (written anew each time). Ray is
    imported where it runs: the spawned decoding workers import this module again."""
    from emodistill.bulk.ray import RayOptions, score_files_ray

    options = RayOptions(device="cpu", progress=False)
    return lambda: score_files_ray(paths, bundle, str(out), options)


def measure(
    bundle: str, paths: list[str], audio_s: float, workers: int, repeats: int, ray: bool
) -> dict:
    from emodistill.recognizer import Recognizer

    rec = emodistill.load(bundle, device="cpu")
    recording = RecordingBackend(rec.backend)
    options = BulkOptions(workers=workers, progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.parquet"
        recorder = Recognizer(recording, rec.options)
        score_files(recorder, paths, out, options)
        batches = recording.batches

        def engine() -> None:
            for batch in batches:
                rec.backend.infer(batch)

        runs: dict[str, Callable[[], object]] = {
            "engine": engine,
            "bulk": lambda: score_files(rec, paths, out, options),
        }
        if ray:
            runs["ray"] = ray_run(bundle, paths, Path(tmp) / "ray.parquet")
        seconds = timed_together(runs, repeats)
        ray_fixed_s = (
            timed(ray_run(bundle, paths[:1], Path(tmp) / "one.parquet"), repeats) if ray else None
        )
    start_s = first_chunk_s(rec, paths, workers)
    decode_ms = decode_ms_per_audio_s(rec, paths, audio_s)
    ceiling = cpu_ceiling(audio_s / seconds["engine"], decode_ms, default_workers())
    row: dict[str, Any] = {
        "bundle": bundle,
        "files": len(paths),
        "audio_s": audio_s,
        "workers": workers,
        "batches": len(batches),
        "mean_batch": sum(map(len, batches)) / len(batches),
        "engine_s": seconds["engine"],
        "bulk_s": seconds["bulk"],
        "engine_audio_s_per_s": audio_s / seconds["engine"],
        "bulk_audio_s_per_s": audio_s / seconds["bulk"],
        "bulk_files_per_s": len(paths) / seconds["bulk"],
        "bulk_over_engine": seconds["engine"] / seconds["bulk"],
        "first_chunk_s": start_s,
        "decode_ms_per_audio_s": decode_ms,
        "cpu_ceiling_audio_s_per_s": ceiling,
    }
    print(
        f"{bundle:28} {len(paths):4} files, {audio_s:5.0f} s: "
        f"engine {row['engine_audio_s_per_s']:7.1f} audio-s/s, "
        f"bulk {row['bulk_audio_s_per_s']:7.1f} audio-s/s ({row['bulk_files_per_s']:.1f} files/s), "
        f"bulk/engine {100 * row['bulk_over_engine']:5.1f} %, workers' start {start_s:.2f} s "
        f"({100 * start_s / seconds['bulk']:.0f} % of the bulk run), decoding "
        f"{decode_ms:.2f} CPU-ms per audio-s: the cores hold at most {ceiling:.1f} audio-s/s "
        f"({100 * ceiling * seconds['engine'] / audio_s:.0f} % of the engine)",
        flush=True,
    )
    if ray:
        row |= {
            "ray_s": seconds["ray"],
            "ray_audio_s_per_s": audio_s / seconds["ray"],
            "ray_files_per_s": len(paths) / seconds["ray"],
            "ray_over_bulk": seconds["bulk"] / seconds["ray"],
            "ray_fixed_s": ray_fixed_s,
        }
        print(
            f"{'':28} ray {row['ray_audio_s_per_s']:7.1f} audio-s/s "
            f"({row['ray_files_per_s']:.1f} files/s), ray/bulk "
            f"{100 * row['ray_over_bulk']:5.1f} %, a run of one file {ray_fixed_s:.2f} s",
            flush=True,
        )
    return row


def start_ray() -> float:
    """Seconds to start a local Ray of this machine's cores (once for every run)."""
    from emodistill.bulk.ray import connect

    start = time.perf_counter()
    connect(None, quiet=True)
    seconds = time.perf_counter() - start
    print(f"a local Ray started in {seconds:.1f} s", flush=True)
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="models/demo/bundle", help="the demo (tiny) bundle")
    p.add_argument("--base", default="models/bench/base_bundle", help="a HuBERT-base bundle")
    p.add_argument("--files", type=int, default=60, help="files in the corpus")
    p.add_argument("--min-s", type=float, default=2.0, help="shortest file, seconds")
    p.add_argument("--max-s", type=float, default=8.0, help="longest file, seconds")
    p.add_argument(
        "--long-run-files",
        type=int,
        default=600,
        help="files of a second, longer run of the demo bundle alone, where the workers' "
        "start weighs less (0: none)",
    )
    p.add_argument("--workers", type=int, default=0, help="decoding processes (0: the cores)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each, after a warm-up")
    p.add_argument(
        "--no-ray", action="store_true", help="leave out the Ray Data path (the `ray` extra)"
    )
    p.add_argument("--out", type=Path, default=Path("docs/bench/bulk.json"))
    args = p.parse_args()
    workers = args.workers or default_workers()
    bundles = [b for b in (args.model, args.base) if b]
    if missing := [b for b in bundles if not (Path(b) / METADATA).is_file()]:
        sys.exit(f"error: no bundle at {missing}: make demo; python bench/base_bundle.py")
    ray = not args.no_ray
    if ray and importlib.util.find_spec("ray") is None:
        sys.exit("error: Ray is not installed (pip install 'emodistill[ray]'), or pass --no-ray")
    ray_start_s = start_ray() if ray else None
    runs = [(b, args.files) for b in bundles]
    if args.model and args.long_run_files:
        runs.append((args.model, args.long_run_files))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        corpora: dict[int, tuple[list[str], float]] = {}
        for bundle, files in runs:
            if files not in corpora:
                (folder := Path(tmp) / f"{files}_files").mkdir()
                corpora[files] = write_corpus(folder, files, args.min_s, args.max_s)
            rows.append(measure(bundle, *corpora[files], workers, args.repeats, ray))
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPU provider",
        "command": " ".join(["python -m bench.bulk", *sys.argv[1:]]),
        "command_shown": " ".join(
            ["python -m bench.bulk", *sys.argv[1:]]
        ),  # python -m bench writes its own
        "repeats": args.repeats,
        "ray_start_s": ray_start_s,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


def report_section(results: Results, model: str) -> list[str]:
    """Section 5 of docs/benchmarks.md: bulk scoring against the engine, and on Ray Data."""
    if "bulk" not in results:
        return ["Pending.", ""]
    shown_cmd, bulk = results["bulk"]
    lines = [
        f"`{shown_cmd}` ({bulk['machine']}, {bulk['rows'][0]['workers']} decoding workers; "
        f"median of {bulk['repeats']} after a warm-up, bulk and engine in alternation). The "
        "engine: the same backend's `infer` on the same decoded windows, in the same batches; "
        "bulk: `python -m emodistill score`'s work from the workers' start to the Parquet file. "
        "CPU ceiling: the most the cores hold when decoding (FFmpeg, measured) and the engine "
        "share them.",
        "",
        "| bundle | files | audio s | engine audio-s/s | bulk audio-s/s | bulk files/s "
        "| bulk / engine | CPU ceiling / engine | workers' start |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in bulk["rows"]:
        lines.append(
            f"| {r['bundle']} | {r['files']} | {r['audio_s']:.0f} | "
            f"{r['engine_audio_s_per_s']:.1f} | {r['bulk_audio_s_per_s']:.1f} | "
            f"{r['bulk_files_per_s']:.1f} | {100 * r['bulk_over_engine']:.0f} % | "
            f"{100 * r['cpu_ceiling_audio_s_per_s'] / r['engine_audio_s_per_s']:.0f} % | "
            f"{r['first_chunk_s']:.2f} s |"
        )
    ray_rows = [r for r in bulk["rows"] if r.get("ray_s") is not None]
    if not ray_rows:
        return [*lines, ""]
    start = bulk.get("ray_start_s")
    lines += [
        "",
        "**On Ray Data** (`python -m emodistill score --ray`, emodistill/bulk/ray.py): the same "
        "files through a local Ray of these cores, timed in alternation with the engine and "
        "the embedded scorer. A Ray run pays a fixed cost the embedded one does not (the "
        "actor's start and the model's load, the dataset's planning, the parts written and "
        "read back: `a run of one file`), and per file the decoded samples pass through Ray's "
        "object store (64 kB per audio-second)."
        + (f" Starting the local Ray took {start:.1f} s, once (not in the rows)." if start else ""),
        "",
        "| bundle | files | bulk audio-s/s | Ray audio-s/s | Ray files/s | Ray / bulk "
        "| a run of one file |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in ray_rows:
        lines.append(
            f"| {r['bundle']} | {r['files']} | {r['bulk_audio_s_per_s']:.1f} | "
            f"{r['ray_audio_s_per_s']:.1f} | {r['ray_files_per_s']:.1f} | "
            f"{100 * r['ray_over_bulk']:.0f} % | {r['ray_fixed_s']:.2f} s |"
        )
    lines += [
        "",
        "Ray is for what one machine cannot do: GPUs and cores on many nodes "
        '(docs/deploy.md, "Ray"). On one 2-core machine its fixed cost weighs most on few '
        "files.",
    ]
    return [*lines, ""]


def goals(results: Results) -> list[tuple[str, str]]:
    """Bulk scoring against the engine, per bundle and corpus size."""
    return [
        (
            f"Bulk scoring ≥ 85 % of the engine (CPU, {r['bundle']}, {r['files']} files)",
            f"{100 * r['bulk_over_engine']:.0f} %",
        )
        for r in (results["bulk"][1]["rows"] if "bulk" in results else [])
    ]


if __name__ == "__main__":  # the decoding workers (spawned) import this script again
    main()
