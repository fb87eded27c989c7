"""`python -m emodistill score INPUT... --model BUNDLE --out FILE`: score many files into one
table; see emodistill/bulk.py and README.md, "Bulk scoring".

Imports nothing heavy at the top: the decoding workers (spawned) import this module again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m emodistill", description=__doc__)
    commands = p.add_subparsers(dest="command", required=True)
    score = commands.add_parser(
        "score",
        help="score files, globs, directories and manifests into one table",
        description="One row per file and one per segment of long files, with the label and "
        "a probability per label; a file that cannot be scored is a row with its error.",
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
        type=Path,
        help="the output; its suffix names the format: .parquet, .csv or .jsonl",
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
        help="decoding processes (default: the cores); the model runs in the main process",
    )
    score.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="where the model runs (auto: a GPU if onnxruntime can use one)",
    )
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
    return p


def main() -> None:
    args = parser().parse_args()
    import emodistill
    from emodistill.bulk import BulkOptions, score_files
    from emodistill.bulk_formats import FormatError, check_format
    from emodistill.bulk_inputs import InputError, expand_inputs
    from emodistill.bulk_journal import ResumeError
    from emodistill.bundle import BundleError
    from emodistill.gpu import CudaUnavailable

    if args.workers < 0 or args.chunk_audio_s < 0:
        sys.exit("error: --workers and --chunk-audio-s cannot be negative")
    options = {} if args.max_audio_s is None else {"max_audio_s": args.max_audio_s}
    try:
        check_format(args.out)
        paths = expand_inputs(args.inputs)
        recognizer = emodistill.load(args.model, args.device, args.int8, **options)
        bulk = BulkOptions(args.workers, args.chunk_audio_s, args.resume, not args.quiet)
        summary = score_files(recognizer, paths, args.out, bulk)
    except (InputError, FormatError, ResumeError, BundleError) as err:
        sys.exit(f"error: {err}")
    except CudaUnavailable as err:
        sys.exit(f"error: device={args.device}, but CUDA is unavailable: {err}")
    except KeyboardInterrupt:
        sys.exit(f"interrupted: add --resume to the same command to go on from {args.out}")
    print(summary.line(args.out))


if __name__ == "__main__":  # spawned workers import this module as __mp_main__
    main()
