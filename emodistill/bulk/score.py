"""Bulk scoring: many files -> one table (Parquet, CSV or JSONL) with a row per file and one
per segment, resumable after a kill at any moment.

    rec = emodistill.load("models/demo/bundle")
    paths = emodistill.bulk.inputs.expand_inputs(["calls/**/*.wav", "manifest.csv"])
    summary = score_files(rec, paths, Path("out.parquet"), BulkOptions(workers=4))

Worker processes (threads, for a short run) decode the files ahead of the model
(bulk/decode.py); the model scores them a chunk at a time through the recognizer's pipeline,
whose windows are batched by length across the chunk's files; each chunk's rows go to the
journal (bulk/journal.py), which becomes the output at the end. A file the runtime refuses
is an error row, never the end of the run; anything else (the model failing) stops it, and
`resume=True` goes on from the journal.

The answers are the runtime's own: a file row holds what `Recognizer.predict(path)` answers.
Knows nothing of the command line (emodistill/__main__.py) or of HTTP.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from emodistill.bulk.decode import Decoded, decoded_chunks
from emodistill.bulk.formats import check_format, partial_path
from emodistill.bulk.journal import fold, prepare
from emodistill.bulk.rows import ERROR, Row, answer_rows, columns, error_row
from emodistill.errors import AudioError, NonFiniteAnswerError

if TYPE_CHECKING:
    from emodistill.recognizer import Recognizer

# A chunk holds about this many full batches' audio (options.max_batch_audio_s each): the
# length grouping then has enough windows to pad little, and a kill loses little work.
CHUNK_BATCHES = 8
# A run of at most this many files decodes in threads of this process (workers=0, the default):
# spawning the decoding processes costs more than such a run's decoding. On 2 cores (the tiny
# demo model, 24 WAV files of 1-6 s): the workers' start took 0.4 s, decoding in this process
# 30 ms. Larger runs, and any run given its workers, decode in processes: a decoder that
# crashes then takes only its worker with it, and decoding holds no lock the model needs.
IN_PROCESS_MAX_FILES = 64
# What one file may do wrong at inference; any other error is the model's, and stops the run.
FILE_ERRORS = (AudioError, NonFiniteAnswerError)


def default_workers() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class BulkOptions:
    workers: int = 0  # decoding processes; 0: default_workers(), in-process for short runs
    chunk_audio_s: float = 0.0  # audio per model chunk; 0: CHUNK_BATCHES full batches
    resume: bool = False  # keep the output's and the journal's files, score the others
    progress: bool = True  # the bar on stderr


@dataclass(frozen=True)
class BulkSummary:
    files: int  # scored by this run, errors included
    errors: int
    audio_s: float  # the scored files' own durations, summed
    wall_s: float  # from the start to the output written
    skipped: int  # already in the output or journal (resume)
    rows: int  # in the output, old ones included

    @property
    def files_per_s(self) -> float:
        return self.files / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def audio_s_per_s(self) -> float:
        return self.audio_s / self.wall_s if self.wall_s > 0 else 0.0

    def line(self, output: Path | str) -> str:
        return (
            f"{self.files} files ({self.errors} errors, {self.skipped} already done) in "
            f"{self.wall_s:.1f} s: {self.files_per_s:.2f} files/s, "
            f"{self.audio_s_per_s:.1f} audio-s/s; {self.rows} rows in {output}"
        )


def _answers(recognizer: Recognizer, decoded: list[Decoded]) -> list[dict[str, Any] | str]:
    """Each decoded file's answer, or why it has none: all batched together, or, when one
    file spoils the batch, each alone. The decoder checked the samples already: they go
    straight to the pipeline's plans, with the files' own durations."""

    def answer(files: list[Decoded]) -> list[dict[str, Any]]:
        pipeline = recognizer.pipeline
        prepared = [
            pipeline.planned(d.samples, d.duration_s) for d in files if d.samples is not None
        ]
        return [p.model_dump() for p in recognizer.run(prepared)]

    try:
        return list(answer(decoded))
    except FILE_ERRORS:
        pass
    answers: list[dict[str, Any] | str] = []
    for d in decoded:
        try:
            answers.append(answer([d])[0])
        except FILE_ERRORS as err:
            answers.append(str(err))
    return answers


def score_chunk(recognizer: Recognizer, chunk: Sequence[Decoded]) -> list[list[Row]]:
    """Each file's rows (the file row first), in the chunk's order."""
    labels, dimensions = recognizer.labels, recognizer.dimensions
    scored = [d for d in chunk if d.samples is not None]
    answers = _answers(recognizer, scored) if scored else []
    by_path = dict(zip((d.path for d in scored), answers, strict=True))
    groups = []
    for d in chunk:
        answer = by_path.get(d.path, d.error or "")
        if isinstance(answer, str):
            groups.append([error_row(d.path, answer, labels, dimensions)])
        else:
            groups.append(answer_rows(d.path, answer, d.duration_s, labels, dimensions))
    return groups


def score_files(
    recognizer: Recognizer, paths: Sequence[str], output: Path, options: BulkOptions | None = None
) -> BulkSummary:
    """Score every file of `paths` not already done into `output`; see the module doc."""
    start = time.perf_counter()
    options = options or BulkOptions()
    check_format(output)
    names = columns(recognizer.labels, recognizer.dimensions)
    journal, done = prepare(output, names, options.resume)
    # The output and its journal may lie in a folder being scored: they are not inputs.
    own = {os.path.abspath(f) for f in (output, journal.path, partial_path(output))}
    todo = [p for p in paths if p not in done and os.path.abspath(p) not in own]
    inference = recognizer.options
    chunk_audio_s = options.chunk_audio_s or CHUNK_BATCHES * inference.max_batch_audio_s
    chunks = decoded_chunks(
        todo,
        recognizer.pipeline.limits,
        workers=options.workers or default_workers(),
        chunk_audio_s=chunk_audio_s,
        chunk_files=CHUNK_BATCHES * inference.max_batch_size,
        in_process=not options.workers and len(todo) <= IN_PROCESS_MAX_FILES,
    )
    errors, audio_s = 0, 0.0
    bar = tqdm(total=len(todo), unit="file", file=sys.stderr, disable=not options.progress)
    with bar:
        for chunk in chunks:
            groups = score_chunk(recognizer, chunk)
            journal.append(groups)
            errors += sum(g[0][ERROR] is not None for g in groups)
            audio_s += sum(
                d.duration_s for d, g in zip(chunk, groups, strict=True) if g[0][ERROR] is None
            )
            bar.update(len(chunk))
            bar.set_postfix(errors=errors, refresh=False)
    rows = fold(journal, names)
    wall_s = time.perf_counter() - start
    return BulkSummary(len(todo), errors, audio_s, wall_s, sum(p in done for p in paths), rows)
