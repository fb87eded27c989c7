"""`python -m training ...`: thin command-line front of the training stages.

Each sub-command parses flags, calls one library function and prints what it did.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from emodistill.cli import add_device_flag

from .corpus.manifest import read_manifest
from .folds import PROTOCOLS, FoldError, make_folds, split

if TYPE_CHECKING:
    from .config import RunConfig


def cmd_prepare(args: argparse.Namespace) -> None:
    """Every `prepare <kind>`: the flags become a CorpusConfig, as a run config's corpus is."""
    from .config import CorpusConfig
    from .corpus.prepare import PREPARE_ERRORS, prepare_corpus
    from .corpus.synthetic import SyntheticConfig

    synthetic = SyntheticConfig()
    if args.corpus == "synthetic":
        synthetic = SyntheticConfig(
            seed=args.seed,
            sessions=args.sessions,
            utterances_per_speaker=args.utterances_per_speaker,
            workers=args.workers,
        )
    config = CorpusConfig(
        kind=args.corpus,
        prepared_dir=args.out,
        root=getattr(args, "root", None),
        csv=getattr(args, "csv", None),
        synthetic=synthetic,
        n_val_speakers=args.n_val_speakers,
    )
    try:
        prepare_corpus(config, rebuild=True, progress=not getattr(args, "quiet", False))
    except PREPARE_ERRORS as err:
        sys.exit(f"error: {err}")


def cmd_folds(args: argparse.Namespace) -> None:
    rows = read_manifest(args.manifest)
    try:
        folds = make_folds(rows, args.protocol, args.n_val_speakers)
    except FoldError as err:
        sys.exit(f"error: {err}")
    print(f"{'fold':>4}  {'test':<16} {'val':<16} {'train':>6} {'val':>5} {'test':>5}")
    for fold in folds:
        parts = split(rows, fold)
        print(
            f"{fold.index:>4}  {','.join(fold.test_speakers):<16} "
            f"{','.join(fold.val_speakers):<16} {len(parts.train):>6} {len(parts.val):>5} "
            f"{len(parts.test):>5}"
        )


def cmd_features(args: argparse.Namespace) -> None:
    from .features import FEATURE_VERSION, EgemapsCache, extract_all

    rows = read_manifest(args.manifest)
    cache = EgemapsCache(args.cache)
    stats = extract_all([r.path for r in rows], cache, workers=args.workers)
    print(f"{FEATURE_VERSION} cache: {cache.root}")
    print(stats)


def _run_config(args: argparse.Namespace) -> RunConfig:
    from .config import load_config

    overrides = {"out_dir": str(args.out)} if getattr(args, "out", None) else None
    try:
        return load_config(args.config, overrides)
    except (ValueError, OSError) as err:
        sys.exit(f"error: {args.config}: {err}")


def cmd_run(args: argparse.Namespace) -> None:
    from .run import run_folds

    run_folds(_run_config(args), args.folds, args.resume, args.device, not args.quiet)


def cmd_ablate(args: argparse.Namespace) -> None:
    from .ablation import VARIANTS, ablate

    variants = args.variants.split(",") if args.variants else list(VARIANTS)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        sys.exit(f"error: unknown variants {unknown}; choose from {list(VARIANTS)}")
    ablate(_run_config(args), args.folds, variants, args.device, not args.quiet)


def cmd_sweep_tau(args: argparse.Namespace) -> None:
    from .ablation import sweep_tau

    taus = [float(t) for t in args.taus.split(",")]
    sweep_tau(_run_config(args), args.folds, taus, args.device, not args.quiet)


def cmd_demo(args: argparse.Namespace) -> None:
    from .demo import demo

    demo(args.out, args.device, not args.quiet)


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, required=True, help="YAML run config (training/configs/)")
    p.add_argument("--folds", default=None, help="'all' or a list like 0,3 (default: the config's)")
    p.add_argument("--out", type=Path, default=None, help="runs folder (default: the config's)")
    add_device_flag(p, "teachers and student train")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser(prog: str = "python -m training") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    prepare = commands.add_parser("prepare", help="turn a corpus into manifest.csv + folds")
    corpora = prepare.add_subparsers(dest="corpus", required=True)

    def add_out(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", type=Path, required=True, help="folder for manifest.csv etc.")
        p.add_argument(
            "--n-val-speakers",
            type=int,
            default=1,
            help="training speakers held out per fold for validation (early stopping)",
        )

    p = corpora.add_parser("iemocap", help="IEMOCAP_full_release, 4-class protocol")
    p.add_argument("--root", type=Path, required=True, help="path to IEMOCAP_full_release")
    add_out(p)
    p.set_defaults(func=cmd_prepare)

    p = corpora.add_parser("manifest", help="any corpus, from a CSV: path,label,speaker[,text]")
    p.add_argument(
        "--csv", type=Path, required=True, help="your CSV; relative paths from its folder"
    )
    add_out(p)
    p.set_defaults(func=cmd_prepare)

    p = corpora.add_parser("synthetic", help="speak the demo corpus with espeak-ng")
    add_out(p)
    p.add_argument("--seed", type=int, default=0, help="same seed, same corpus")
    p.add_argument("--sessions", type=int, default=5, help="2 speakers per session")
    p.add_argument("--utterances-per-speaker", type=int, default=48, help="balanced over labels")
    p.add_argument("--workers", type=int, default=4, help="espeak-ng processes at once")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_prepare)

    p = commands.add_parser("folds", help="print the folds of a manifest")
    p.add_argument("--manifest", type=Path, required=True, help="manifest folder or CSV")
    p.add_argument("--protocol", choices=PROTOCOLS, default="speaker")
    p.add_argument("--n-val-speakers", type=int, default=1)
    p.set_defaults(func=cmd_folds)

    p = commands.add_parser("features", help="extract eGeMAPS LLDs into the cache; print the rate")
    p.add_argument("--manifest", type=Path, required=True, help="manifest folder or CSV")
    p.add_argument("--cache", type=Path, default=None, help="default: ~/.cache/emodistill/egemaps")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.set_defaults(func=cmd_features)

    p = commands.add_parser(
        "train", aliases=["run"], help="teachers + student for each fold; report.md"
    )
    _add_run_flags(p)
    p.add_argument("--resume", action="store_true", help="continue a killed run from its state")
    p.set_defaults(func=cmd_run)

    p = commands.add_parser("ablate", help="the poster's Table 2 variants; ablation.md")
    _add_run_flags(p)
    p.add_argument(
        "--variants",
        default=None,
        help="comma list (default: every variant: the six students of Table 2 and no_dimensions)",
    )
    p.set_defaults(func=cmd_ablate)

    p = commands.add_parser("sweep-tau", help="the poster's Fig. 2: UA against τ_P and τ_L")
    _add_run_flags(p)
    p.add_argument("--taus", default="0.25,0.5,1,2,4,8", help="temperatures to try")
    p.set_defaults(func=cmd_sweep_tau)

    p = commands.add_parser("demo", help="synthetic corpus -> teachers -> tiny student")
    p.add_argument("--out", type=Path, default=Path("models/demo"), help="demo folder")
    add_device_flag(p, "teachers and student train")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m training") -> None:
    args = build_parser(prog).parse_args(argv)
    args.func(args)
