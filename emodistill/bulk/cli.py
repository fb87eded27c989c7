"""`emodistill score INPUT... --model BUNDLE --out FILE [--ray [ADDRESS]]` (also `python -m
emodistill score`): score many files into one table, in this process (emodistill/bulk/score.py)
or on a Ray cluster (emodistill/bulk/ray.py); see docs/bulk.md.

Imports nothing heavy at the top: the decoding workers (spawned) import the main module again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from emodistill.cli import add_device_flag


def parser(prog: str = "emodistill score") -> argparse.ArgumentParser:
    score = argparse.ArgumentParser(
        prog=prog,
        description="Score files, globs, directories and manifests into one table: one row "
        "per file and one per segment of long files, with the label and a probability per "
        "label; a file that cannot be scored is a row with its error.",
    )
    score.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="audio files, quoted globs ('data/**/*.wav'), directories (every file below) "
        "or manifest .csv files (a 'path' column, relative to the CSV)",
    )
    score.add_argument("--model", required=True, type=Path, help="the model bundle's folder")
    score.add_argument(
        "--out",
        required=True,
        help="the output; its suffix names the format: .parquet, .csv or .jsonl; with --ray, "
        "a folder of Parquet parts (*.parquet; local, or s3:// or gs://)",
    )
    score.add_argument(
        "--resume",
        action="store_true",
        help="keep the files already in the output (or in the journal of a run that was "
        "stopped) and score the others; without it, the output is written anew",
    )
    score.add_argument(
        "--workers",
        type=int,
        default=0,
        help="decoding processes (default: the cores; a short run decodes in threads of this "
        "process instead); the model runs in the main process",
    )
    add_device_flag(score)
    score.add_argument("--int8", action="store_true", help="the bundle's int8 model (CPU only)")
    score.add_argument(
        "--max-audio-s",
        type=float,
        default=None,
        help="longer files are error rows (default: the service's limit, 600 s)",
    )
    score.add_argument(
        "--chunk-audio-s",
        type=float,
        default=0.0,
        help="audio scored per model chunk; more groups lengths better but holds more "
        "memory and loses more work to a kill (default: 8 full batches, 512 s)",
    )
    score.add_argument("--quiet", action="store_true", help="no progress bar")
    ray = score.add_argument_group("Ray", "the same scorer as a Ray Data pipeline")
    ray.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="decode in Ray tasks and score in Ray actors; ADDRESS: the cluster's (host:6379, "
        "ray://host:10001); alone: RAY_ADDRESS (set by `ray job submit`), else a local Ray "
        "started for this run",
    )
    ray.add_argument(
        "--ray-actors",
        type=int,
        default=0,
        help="model actors (default: one per GPU of the cluster with GPUs, else one per node); "
        "each loads the model once and holds a GPU on a GPU cluster",
    )
    ray.add_argument(
        "--ray-batch-files",
        type=int,
        default=0,
        help="files an actor scores at once, their windows batched by length (default: 64); "
        "more groups lengths better and holds more memory",
    )
    return score


def score_ray(args: argparse.Namespace, paths: list[str]) -> None:
    from emodistill.bulk.ray import RayOptions, check_output, connect, score_files_ray

    if args.workers or args.chunk_audio_s:
        sys.exit("error: --workers and --chunk-audio-s are for runs without --ray")
    if args.ray_actors < 0 or args.ray_batch_files < 0:
        sys.exit("error: --ray-actors and --ray-batch-files cannot be negative")
    check_output(args.out)  # before the minutes a cluster may take to connect
    options = RayOptions(
        args.ray_actors,
        args.ray_batch_files,
        args.device,
        args.int8,
        args.max_audio_s,
        args.resume,
        not args.quiet,
    )
    connect(args.ray or None, args.quiet)
    summary = score_files_ray(paths, str(args.model), args.out, options)
    print(summary.line(args.out))


def main(argv: list[str] | None = None, prog: str = "emodistill score") -> None:
    args = parser(prog).parse_args(argv)
    import emodistill
    from emodistill.bulk.formats import FormatError, check_format
    from emodistill.bulk.inputs import InputError, expand_inputs, is_uri
    from emodistill.bulk.journal import ResumeError
    from emodistill.bulk.score import BulkOptions, score_files
    from emodistill.bundle import BundleError
    from emodistill.gpu import CudaUnavailable

    if args.workers < 0 or args.chunk_audio_s < 0:
        sys.exit("error: --workers and --chunk-audio-s cannot be negative")
    options = {} if args.max_audio_s is None else {"max_audio_s": args.max_audio_s}
    try:
        out = Path(args.out)
        if args.ray is None and is_uri(args.out):
            raise FormatError(f"{args.out}: an object-store output needs --ray")
        if args.ray is None:
            check_format(out)
        paths = expand_inputs(args.inputs)
        if args.ray is not None:
            return score_ray(args, paths)
        recognizer = emodistill.load(args.model, args.device, args.int8, **options)
        bulk = BulkOptions(args.workers, args.chunk_audio_s, args.resume, not args.quiet)
        summary = score_files(recognizer, paths, out, bulk)
    except (InputError, FormatError, ResumeError, BundleError) as err:
        sys.exit(f"error: {err}")
    except CudaUnavailable as err:
        sys.exit(f"error: device={args.device}, but CUDA is unavailable: {err}")
    except KeyboardInterrupt:
        sys.exit(f"interrupted: add --resume to the same command to go on from {args.out}")
    print(summary.line(out))
