"""`emodistill COMMAND ...`: one command for every job, each a subcommand with its own --help.

    emodistill serve --model models/demo/bundle          # the HTTP service (service/)
    emodistill score calls/ --model B --out scores.parquet   # bulk scoring (emodistill/bulk/)
    emodistill listen call.wav --url ws://localhost:8000/stream  # a live stream's events
    emodistill prepare emodb --root EmoDB --out data/emodb  # a corpus -> manifest + folds
    emodistill train --config training/configs/demo.yaml    # teachers + student per fold
    emodistill export --checkpoint C --out B                 # the student -> a verified bundle

Each stage keeps its own parser (argparse everywhere) and its own `python -m` entry
(`python -m service`, `python -m training`, `python -m export`, `python -m emodistill score`);
this module only names the jobs and hands the rest of the command line to the stage, which
is imported only when its job runs (the runtime stays free of torch). Flags that mean the
same thing are spelled the same in every stage: `--device {auto,cpu,cuda}`, `--model`
(a bundle), `--out`, `--quiet`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DEVICES = ("auto", "cpu", "cuda")


def add_device_flag(parser: argparse.ArgumentParser, what: str = "the model runs") -> None:
    """`--device {auto,cpu,cuda}`, the same in every stage."""
    parser.add_argument(
        "--device",
        default="auto",
        choices=DEVICES,
        help=f"where {what} (auto: a GPU when one can be used, else the CPU)",
    )


@dataclass(frozen=True)
class Job:
    module: str  # whose `main(argv, prog)` runs the job
    first: tuple[str, ...]  # words put before the rest of the command line
    summary: str


JOBS: dict[str, Job] = {
    "serve": Job("service.cli", (), "serve a bundle over HTTP (flags or EMODISTILL_ variables)"),
    "score": Job("emodistill.bulk.cli", (), "score files, folders and manifests into one table"),
    "listen": Job("emodistill.listen", (), "stream a file or standard input; print the events"),
    "prepare": Job("training.cli", ("prepare",), "turn a corpus into manifest.csv + folds"),
    "folds": Job("training.cli", ("folds",), "print the folds of a prepared corpus"),
    "features": Job("training.cli", ("features",), "extract eGeMAPS descriptors into the cache"),
    "train": Job("training.cli", ("train",), "teachers + student for each fold, and the report"),
    "ablate": Job("training.cli", ("ablate",), "the paper's ablation variants"),
    "sweep-tau": Job("training.cli", ("sweep-tau",), "UA against the teachers' temperatures"),
    "evaluate": Job("training.cli", ("evaluate",), "a bundle on a prepared corpus: UA, WA, F1"),
    "cross-corpus": Job("training.cli", ("cross-corpus",), "bundles x corpora -> a UA table"),
    "demo": Job("training.cli", ("demo",), "a corpus -> teachers -> tiny student (CPU)"),
    "export": Job("export.cli", ("export",), "a trained student -> a verified ONNX bundle"),
    "verify": Job("export.cli", ("verify",), "check a bundle's files and parity figures"),
    "triton": Job("export.cli", ("triton",), "write a Triton model repository from a bundle"),
    "bench": Job("bench.__main__", (), "the benchmarks (from a checkout): docs/benchmarks.md"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emodistill",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="job", required=True, metavar="COMMAND")
    for name, job in JOBS.items():
        # The job's own parser reads the rest, --help included.
        commands.add_parser(name, help=job.summary, add_help=False)
    return parser


def _runner(job: Job) -> Callable[[list[str], str], None]:
    if job.module.startswith("bench.") and Path("bench/__main__.py").is_file():
        sys.path.insert(0, os.getcwd())  # bench/ is scripts in a checkout, not installed
    try:
        module = importlib.import_module(job.module)
    except ModuleNotFoundError as err:
        if job.module.startswith("bench."):
            sys.exit(
                "error: the benchmarks run from the repository's root (bench/ is not installed)"
            )
        sys.exit(f"error: this job needs {err.name!r}: install the extra that has it")
    run: Callable[[list[str], str], None] = module.main
    return run


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] not in JOBS:
        parser.parse_args(argv)  # --help, or an unknown command: argparse says which
        return
    name, rest = argv[0], argv[1:]
    job = JOBS[name]
    # A stage with subcommands names them itself ("emodistill prepare ..."); one without is
    # the whole job ("emodistill serve ...").
    _runner(job)([*job.first, *rest], "emodistill" if job.first else f"emodistill {name}")
