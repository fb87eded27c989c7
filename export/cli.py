"""Export's jobs: checkpoint -> bundle; `verify` a bundle; write a `triton` repository.

emodistill export --checkpoint models/demo/checkpoint --out models/demo/bundle
emodistill verify models/demo/bundle [--checkpoint DIR]
emodistill triton models/demo/bundle --out triton_repo

(`python -m export [export|verify|triton] ...` runs the same; `export` is its default.)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from emodistill.bundle import BundleError

from .bundle_writer import CheckpointError, ExportOptions, ParityError, export_bundle, verify_bundle


def _add_bundle(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "export", aliases=["bundle"], help="a trained student -> a verified ONNX bundle"
    )
    p.add_argument("--checkpoint", type=Path, required=True, help="the student's HF folder")
    p.add_argument("--out", type=Path, required=True, help="bundle folder (replaced)")
    p.add_argument("--name", default="emodistill", help="model name served and reported")
    p.add_argument("--version", default="1", help="model version served and reported")
    p.add_argument("--labels", default=None, help="expected labels in order, comma-separated")
    p.add_argument("--no-int8", action="store_true", help="skip the int8 CPU model")
    p.add_argument("--agreement-clips", type=int, default=200, help="clips for fp16/int8 vs fp32")
    p.set_defaults(run=_export)


def _export(args: argparse.Namespace) -> None:
    options = ExportOptions(
        name=args.name,
        version=args.version,
        int8=not args.no_int8,
        agreement_clips=args.agreement_clips,
    )
    labels = args.labels.split(",") if args.labels else None
    try:
        metadata = export_bundle(args.checkpoint, args.out, options, labels)
    except (CheckpointError, ParityError) as err:
        sys.exit(f"error: {err}")
    print(f"bundle: {args.out} ({', '.join(sorted(metadata.files))})")
    print(json.dumps(metadata.parity, indent=2))


def _add_verify(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("verify", help="check a bundle's files and parity figures")
    p.add_argument("bundle", type=Path)
    p.add_argument("--checkpoint", type=Path, default=None, help="also compare with PyTorch")
    p.set_defaults(run=_verify)


def _verify(args: argparse.Namespace) -> None:
    try:
        figures, problems = verify_bundle(args.bundle, args.checkpoint)
    except (BundleError, CheckpointError) as err:
        sys.exit(f"error: {err}")
    if figures:
        print(json.dumps(figures, indent=2))
    if problems:
        sys.exit("verification failed:\n  " + "\n  ".join(problems))
    print(f"{args.bundle}: every sha256 matches and every figure is within its limit")


def _add_triton(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("triton", help="write a Triton model repository from a bundle")
    p.add_argument("bundle", type=Path)
    p.add_argument("--out", type=Path, required=True, help="model repository folder")
    p.add_argument("--cpu", action="store_true", help="fp32 on CPU instances instead of fp16 GPU")
    p.add_argument("--max-batch-size", type=int, default=32)
    p.set_defaults(run=_triton)


def _triton(args: argparse.Namespace) -> None:
    from .triton import write_triton_repository

    try:
        model_dir = write_triton_repository(
            args.bundle, args.out, gpu=not args.cpu, max_batch_size=args.max_batch_size
        )
    except BundleError as err:
        sys.exit(f"error: {err}")
    print(f"Triton model: {model_dir}")


def build_parser(prog: str = "python -m export") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for add in (_add_bundle, _add_verify, _add_triton):
        add(commands)
    return parser


COMMANDS = ("export", "bundle", "verify", "triton")


def main(argv: list[str] | None = None, prog: str = "python -m export") -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] not in (["-h"], ["--help"]) and (not argv or argv[0] not in COMMANDS):
        argv = ["export", *argv]  # `python -m export --checkpoint ...`, as before
    args = build_parser(prog).parse_args(argv)
    args.run(args)
