"""Bulk scoring as a Ray Data pipeline: emodistill.bulk's rows, from a cluster's cores and GPUs.

    python -m emodistill score s3://calls/2026/ --model /models/bundle \\
        --out s3://results/calls.parquet --ray      # run inside `ray job submit`

The pipeline, streamed (Ray holds a few batches in flight, whatever the number of files):
1. the paths to score -> decoding as CPU tasks, DECODE_TASK_FILES files a task, with
   bulk.decode.decode_path (local paths and URIs: inputs.read_input);
2. the model in a pool of actors, each loading the bundle once and scoring a batch of decoded
   files with bulk.score_chunk: one GPU an actor on a GPU cluster, CPU actors otherwise;
3. Parquet parts written by Ray as a dataset, into the folder `--out` names (a local path or
   s3:// / gs://; on several nodes, storage that every node sees).
The rows are rows.py's (the same schema, error rows included); their order is the order in
which batches finish, each file's rows together, its file row first.

Resume. A file's rows come from one scoring call, one block (Ray splits blocks only past
128 MiB, about a million rows), and a part is written by one write task; a part cut short by a
kill has no Parquet footer and cannot be read. So `resume` deletes the parts that cannot be
read and skips every file that has a file row in the others; without it, the folder's parts
are deleted first. On an object store a part appears only once its upload completes.

What it does not do: retry a file whose decoding kills the process (the embedded scorer names
it; here Ray retries the task, then the run stops). Knows nothing of decoding or scoring
itself, nor of the command line.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emodistill.audio_input import AudioLimits
from emodistill.bulk.decode import Decoded, decode_path
from emodistill.bulk.formats import FormatError, arrow_schema
from emodistill.bulk.inputs import is_uri, locate
from emodistill.bulk.journal import check_columns
from emodistill.bulk.rows import DURATION_S, ERROR, FILE, KIND, PATH, columns
from emodistill.bulk.score import BulkSummary, score_chunk
from emodistill.bundle import read_metadata
from emodistill.options import InferenceOptions

if TYPE_CHECKING:
    import pyarrow as pa

PART_SUFFIX = ".parquet"
# Files a decoding task decodes: enough that Ray's cost per task is small beside decoding
# (about 1 ms per audio-second, docs/benchmarks.md section 6). The demo model, 600 files of
# 2-8 s, 2 cores: 8 files a task scored 330 audio-s/s, 32 files 430-470, 64 files 500.
DECODE_TASK_FILES = 32
# Files an actor scores at once (`batch_files`): two full model batches of short files, to
# group by length; 600 s files (the limit) would hold 2.5 GB of samples, no more.
BATCH_FILES = 2 * InferenceOptions().max_batch_size
# CPUs Ray reserves for a decoding task (it runs one file at a time) and for an actor (its
# onnxruntime threads take what decoding leaves). Not equal: Ray Data fuses a task step into
# the actor step after it when their resources are equal, and the actor would then decode
# every file itself, one after another.
DECODE_TASK_CPUS = 1.0
ACTOR_CPUS = 0.5
# The decoded clips between the tasks and the actors: float32 samples, one list per file.
SAMPLES = "samples"


@dataclass(frozen=True)
class RayOptions:
    actors: int = 0  # model actors; 0: one per GPU of the cluster, or one per node on CPUs
    batch_files: int = 0  # files per scoring call; 0: BATCH_FILES
    device: str = "auto"  # auto: GPU actors if the cluster has GPUs; cpu; cuda
    int8: bool = False  # the bundle's int8 model (CPU only)
    max_audio_s: float | None = None  # longer files are error rows; None: InferenceOptions'.
    resume: bool = False  # keep the parts already written, score the other files
    progress: bool = True  # Ray Data's progress bars on stderr


def connect(address: str | None, quiet: bool = False) -> None:
    """Ray at `address`; None: RAY_ADDRESS (as `ray job submit` sets it), else a Ray of this
    machine's own, started here and stopped with this process."""
    import ray

    start_here = not address and not os.environ.get("RAY_ADDRESS")
    ray.init(
        address=address or None,
        include_dashboard=False if start_here else None,  # not in ray[data]; no use here
        logging_level=logging.WARNING if quiet else logging.INFO,
    )


def _decoded_table(decoded: Sequence[Decoded]) -> pa.Table:
    """Decoded files as one Arrow table: path, samples (null for a failed file), duration_s,
    error. The samples go in one buffer, as they are (float32 exactly)."""
    import pyarrow as pa

    clips = [d.samples for d in decoded if d.samples is not None]
    lengths = [0 if d.samples is None else len(d.samples) for d in decoded]
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]), pa.int64())
    values = pa.array(np.concatenate(clips) if clips else np.empty(0, np.float32))
    failed = pa.array([d.samples is None for d in decoded])
    samples = pa.LargeListArray.from_arrays(offsets, values, mask=failed)
    return pa.table(
        {
            PATH: [d.path for d in decoded],
            SAMPLES: samples,
            DURATION_S: pa.array([d.duration_s for d in decoded], pa.float64()),
            ERROR: pa.array([d.error for d in decoded], pa.string()),
        }
    )


def _decoded(table: pa.Table) -> list[Decoded]:
    """_decoded_table's inverse; the samples are views of the table's buffer."""
    samples = table.column(SAMPLES).combine_chunks()
    offsets = samples.offsets.to_numpy()
    values = samples.values.to_numpy()
    failed = samples.is_null().to_numpy(zero_copy_only=False)
    rows = zip(table.column(PATH).to_pylist(), table.column(DURATION_S).to_pylist(), strict=True)
    errors = table.column(ERROR).to_pylist()
    return [
        Decoded(
            path, None if failed[i] else values[offsets[i] : offsets[i + 1]], seconds, errors[i]
        )
        for i, (path, seconds) in enumerate(rows)
    ]


def _decode(batch: pa.Table, limits: AudioLimits) -> pa.Table:
    """A decoding task: each file of the batch, opened at its location (absolute), named by
    its path as given."""
    paths, locations = batch.column(PATH).to_pylist(), batch.column("location").to_pylist()
    return _decoded_table(
        [
            dataclasses.replace(decode_path(location, limits), path=path)
            for path, location in zip(paths, locations, strict=True)
        ]
    )


class _Scorer:
    """A model actor: the bundle loaded once, then batches of decoded files scored."""

    def __init__(self, bundle: str, device: str, int8: bool, options: dict[str, Any]) -> None:
        import emodistill

        self.recognizer = emodistill.load(bundle, device, int8, **options)
        rec = self.recognizer
        self.schema = arrow_schema(columns(rec.labels, rec.dimensions))

    def __call__(self, batch: pa.Table) -> pa.Table:
        import pyarrow as pa

        groups = score_chunk(self.recognizer, _decoded(batch))
        return pa.Table.from_pylist([row for group in groups for row in group], schema=self.schema)


class _Parts:
    """The output folder's Parquet parts."""

    def __init__(self, output: str) -> None:
        if not output.lower().endswith(PART_SUFFIX):
            raise FormatError(f"{output}: with --ray the output is a Parquet folder, *.parquet")
        self.output = output
        self.filesystem, self.path = locate(output)

    def list(self) -> list[str]:
        from pyarrow.fs import FileSelector, FileType

        info = self.filesystem.get_file_info(self.path)
        if info.type == FileType.File:
            raise FormatError(
                f"{self.output} is a file (written without --ray): write to a new folder"
            )
        if info.type == FileType.NotFound:
            return []
        found = self.filesystem.get_file_info(FileSelector(self.path))
        return sorted(f.path for f in found if f.path.endswith(PART_SUFFIX))

    def read(self, part: str, names: Sequence[str]) -> pa.Table | None:
        """The part's columns `names`; None if it is torn (a kill cut its write short)."""
        import pyarrow.parquet as pq

        try:
            with self.filesystem.open_input_file(part) as f:
                return pq.ParquetFile(f).read(columns=list(names))
        except (OSError, ValueError):  # pyarrow's ArrowInvalid is a ValueError
            return None

    def check(self, part: str, names: Sequence[str]) -> None:
        import pyarrow.parquet as pq

        with self.filesystem.open_input_file(part) as f:
            check_columns(self.output, pq.ParquetFile(f).schema_arrow.names, names)

    def prepare(self, names: Sequence[str], resume: bool) -> set[str]:
        """The files already written (none unless `resume`); torn or old parts deleted."""
        done: set[str] = set()
        for part in self.list():
            table = self.read(part, [PATH, KIND]) if resume else None
            if table is None:
                self.filesystem.delete_file(part)
                continue
            self.check(part, names)
            rows = zip(*(table.column(n).to_pylist() for n in (PATH, KIND)), strict=True)
            done.update(path for path, kind in rows if kind == FILE)
        return done


def _location(path: str) -> str:
    """Where the workers open `path`: they run elsewhere, so a relative path must mean what
    it means here."""
    return path if is_uri(path) else os.path.abspath(path)


def check_output(output: str) -> None:
    """FormatError unless `output` can be a Parquet folder (its suffix, not a file)."""
    _Parts(output).list()


def _actors_and_gpus(device: str, actors: int) -> tuple[int, int]:
    """(actors, GPUs each). An autoscaling cluster may have no GPU yet: cuda asks for them."""
    import ray

    gpus = int(ray.cluster_resources().get("GPU", 0))
    per_actor = 1 if device == "cuda" or (device == "auto" and gpus) else 0
    nodes = sum(1 for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU"))
    return actors or (max(1, gpus) if per_actor else max(1, nodes)), per_actor


def score_files_ray(
    paths: Sequence[str], bundle: str, output: str, options: RayOptions | None = None
) -> BulkSummary:
    """Score every file of `paths` not already in the dataset `output`; see the module doc.
    Ray must be connected (`connect`)."""
    import ray
    from ray.data import ActorPoolStrategy, DataContext

    start = time.perf_counter()
    options = options or RayOptions()
    bundle = os.path.abspath(bundle)  # the actors' working folder is not this one
    metadata = read_metadata(Path(bundle))  # the actors check the checksums when they load it
    names = columns(metadata.labels, metadata.dimension_names)
    parts = _Parts(output)
    done = parts.prepare(names, options.resume)
    before = set(parts.list())
    # The output may lie in a folder being scored: its parts are not inputs.
    inside = _location(output).rstrip("/") + "/"
    todo = [p for p in paths if p not in done and not _location(p).startswith(inside)]
    if todo:
        DataContext.get_current().enable_progress_bars = options.progress
        if not options.progress:  # nor Ray Data's INFO lines: its log file keeps them
            for handler in logging.getLogger("ray.data").handlers:
                if isinstance(handler, logging.StreamHandler):
                    handler.setLevel(logging.ERROR)
        inference = InferenceOptions(
            max_audio_s=options.max_audio_s or InferenceOptions().max_audio_s
        )
        limits = inference.audio_limits(metadata.sample_rate_hz)
        actors, gpus = _actors_and_gpus(options.device, options.actors)
        items = [{PATH: p, "location": _location(p)} for p in todo]
        # An actor takes whole blocks: a run of few files still needs a block per actor.
        blocks = max(math.ceil(len(items) / DECODE_TASK_FILES), min(len(items), actors))
        recognizer = {"max_audio_s": inference.max_audio_s}
        (
            ray.data.from_items(items, override_num_blocks=blocks)
            .map_batches(
                functools.partial(_decode, limits=limits),
                batch_format="pyarrow",
                num_cpus=DECODE_TASK_CPUS,
            )
            .map_batches(
                _Scorer,
                batch_format="pyarrow",
                batch_size=options.batch_files or BATCH_FILES,
                compute=ActorPoolStrategy(size=actors),
                num_gpus=gpus,
                num_cpus=ACTOR_CPUS,
                fn_constructor_args=(bundle, "cuda" if gpus else "cpu", options.int8, recognizer),
            )
            .write_parquet(parts.path, filesystem=parts.filesystem)
        )
    skipped = sum(p in done for p in paths)
    return _summary(parts, before, len(todo), skipped, start)


def _summary(
    parts: _Parts, before: set[str], files: int, skipped: int, start: float
) -> BulkSummary:
    """The run's figures, read back from the parts it wrote."""
    errors, audio_s, rows = 0, 0.0, 0
    for part in parts.list():
        table = parts.read(part, [KIND, DURATION_S, ERROR])
        assert table is not None, f"{part}: written whole by this run"
        rows += table.num_rows
        if part in before:
            continue
        figures = (table.column(n).to_pylist() for n in (KIND, DURATION_S, ERROR))
        for kind, seconds, error in zip(*figures, strict=True):
            if kind == FILE:
                errors += error is not None
                audio_s += seconds if error is None else 0.0
    return BulkSummary(files, errors, audio_s, time.perf_counter() - start, skipped, rows)
