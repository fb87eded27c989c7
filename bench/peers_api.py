"""Scoring files from Python: our API and bulk scorer against transformers' pipeline.

Part of `python -m bench.peers`. The same WAV files (speech-like probe clips of 1-6 s) are
scored by
- `emodistill.load(bundle).predict_many(paths)` (the Python API, one call);
- `emodistill.bulk.score_files` (the bulk scorer: decoding processes, CSV out);
- transformers' `pipeline("audio-classification", model=CHECKPOINT)` on the checkpoint the
  bundle was exported from (the export contract: it loads as it is), at batch_size 1 and 8.
  This machine has no ffmpeg, which the pipeline needs to read a path, so each file is read
  with soundfile first, in the timed part, and handed over as {"raw", "sampling_rate"}.
Each is timed in alternation (bench/timing.py, median of rounds after a warm-up): files/s.
Knows nothing of servers.
"""

from __future__ import annotations

import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from bench.timing import timed_together
from emodistill.audio import SAMPLE_RATE_HZ
from export.parity import probe_clips

# The demo scores 24 files in about 0.15 s: a median of 3 such rounds moved by a fifth between
# runs (transformers at batch 8: 147 and 207 files/s), so 7.
ROUNDS = 7


def write_files(folder: Path, n: int) -> list[str]:
    paths = []
    for i, clip in enumerate(probe_clips(n, 1.0, 6.0, SAMPLE_RATE_HZ, seed=5)):
        path = folder / f"clip{i:04d}.wav"
        sf.write(path, clip, SAMPLE_RATE_HZ, subtype="PCM_16")
        paths.append(str(path))
    return paths


def checkpoint_for(bundle: Path, folder: Path) -> Path | None:
    """The checkpoint the bundle came from: the demo layout's sibling `checkpoint`, or the
    base bench bundle's random-init student written again (same seed, same weights)."""
    sibling = bundle.parent / "checkpoint"
    if (sibling / "config.json").is_file():
        return sibling
    if bundle.name == "base_bundle":
        from bench.base_bundle import write_base_checkpoint

        return write_base_checkpoint(folder / "checkpoint")
    return None


def runs(bundle: Path, checkpoint: Path | None, paths: list[str], out: Path) -> dict[str, Any]:
    import emodistill
    from emodistill.bulk import BulkOptions, score_files

    recognizer = emodistill.load(bundle, "cpu")
    bulk_options = BulkOptions(progress=False)

    def bulk() -> None:
        out.unlink(missing_ok=True)
        score_files(recognizer, paths, out, bulk_options)

    calls: dict[str, Any] = {
        "ours: load().predict_many": partial(recognizer.predict_many, paths),
        "ours: bulk score_files": bulk,
    }
    if checkpoint is not None:
        from transformers import pipeline

        classify = pipeline("audio-classification", model=str(checkpoint), device=-1)

        def transformers_run(batch_size: int) -> None:
            inputs = [
                {"raw": sf.read(p, dtype="float32")[0], "sampling_rate": SAMPLE_RATE_HZ}
                for p in paths
            ]
            classify(inputs, batch_size=batch_size, top_k=None)  # type: ignore[arg-type]

        for batch_size in (1, 8):
            calls[f"transformers pipeline, batch_size {batch_size}"] = partial(
                transformers_run, batch_size
            )
    return calls


def run(demo: Path, base: Path | None, n_files: int) -> dict[str, Any]:
    """{bundle: {"files", "files_per_s": {how: files/s}}} for the demo bundle (and base)."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = write_files(folder, n_files)
        for name, bundle in (("demo", demo), ("base", base)):
            if bundle is None:
                continue
            checkpoint = checkpoint_for(bundle, folder)
            calls = runs(bundle, checkpoint, paths, folder / "scores.csv")
            walls = timed_together(calls, ROUNDS)
            out[name] = {
                "files": len(paths),
                "audio_s": float(np.sum([sf.info(p).duration for p in paths])),
                "checkpoint": "found" if checkpoint else "absent: no transformers row",
                "files_per_s": {how: len(paths) / wall for how, wall in walls.items()},
            }
            print(f"API {name}: {out[name]['files_per_s']}", flush=True)
    return out
