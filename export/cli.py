"""`python -m export`: checkpoint -> bundle; `verify` a bundle; write a `triton` repository.

python -m export --checkpoint models/demo/checkpoint --out models/demo/bundle
python -m export verify models/demo/bundle [--checkpoint DIR]
python -m export triton models/demo/bundle --out triton_repo
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from emodistill.bundle import BundleError

from .bundle_writer import CheckpointError, ExportOptions, ParityError, export_bundle, verify_bundle


def _export(argv: list[str]) -> None:
    p = argparse.ArgumentParser(
        prog="python -m export",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", type=Path, required=True, help="the student's HF folder")
    p.add_argument("--out", type=Path, required=True, help="bundle folder (replaced)")
    p.add_argument("--name", default="emodistill", help="model name served and reported")
    p.add_argument("--version", default="1", help="model version served and reported")
    p.add_argument("--labels", default=None, help="expected labels in order, comma-separated")
    p.add_argument("--no-int8", action="store_true", help="skip the int8 CPU model")
    p.add_argument("--agreement-clips", type=int, default=200, help="clips for fp16/int8 vs fp32")
    args = p.parse_args(argv)
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


def _verify(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m export verify")
    p.add_argument("bundle", type=Path)
    p.add_argument("--checkpoint", type=Path, default=None, help="also compare with PyTorch")
    args = p.parse_args(argv)
    try:
        figures, problems = verify_bundle(args.bundle, args.checkpoint)
    except (BundleError, CheckpointError) as err:
        sys.exit(f"error: {err}")
    if figures:
        print(json.dumps(figures, indent=2))
    if problems:
        sys.exit("verification failed:\n  " + "\n  ".join(problems))
    print(f"{args.bundle}: every sha256 matches and every figure is within its limit")


def _triton(argv: list[str]) -> None:
    from .triton import write_triton_repository

    p = argparse.ArgumentParser(prog="python -m export triton")
    p.add_argument("bundle", type=Path)
    p.add_argument("--out", type=Path, required=True, help="model repository folder")
    p.add_argument("--cpu", action="store_true", help="fp32 on CPU instances instead of fp16 GPU")
    p.add_argument("--max-batch-size", type=int, default=32)
    args = p.parse_args(argv)
    try:
        model_dir = write_triton_repository(
            args.bundle, args.out, gpu=not args.cpu, max_batch_size=args.max_batch_size
        )
    except BundleError as err:
        sys.exit(f"error: {err}")
    print(f"Triton model: {model_dir}")


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"verify": _verify, "triton": _triton}
    if argv and argv[0] in commands:
        commands[argv[0]](argv[1:])
    else:
        _export(argv)
