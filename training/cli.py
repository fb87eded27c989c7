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
from .demo import REAL_DEMO_CORPORA
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
        classes=getattr(args, "classes", 4),
        speaker_pattern=getattr(args, "speaker_pattern", None),
        language=getattr(args, "language", "english"),
        transcribe=getattr(args, "transcribe", None),
        synthetic=synthetic,
        n_val_speakers=args.n_val_speakers,
    )
    try:
        prepare_corpus(config, rebuild=True, progress=not getattr(args, "quiet", False))
    except PREPARE_ERRORS as err:
        sys.exit(f"error: {err}")


# prepare KIND: (help, what --root is). Each reads the corpus as its distribution unpacks.
CORPUS_COMMANDS = {
    "iemocap": ("IEMOCAP_full_release, 4-class protocol", "path to IEMOCAP_full_release"),
    "msp-podcast": (
        "MSP-Podcast: Audios/, Labels/labels_consensus.csv; official partitions",
        "the MSP-Podcast folder (holds Audios/ and Labels/)",
    ),
    "cremad": (
        "CREMA-D: AudioWAV/ (or AudioMP3/); 91 actors, 12 fixed sentences",
        "the CREMA-D folder (holds AudioWAV/ or AudioMP3/)",
    ),
    "ravdess": (
        "RAVDESS speech: Actor_NN/ folders; 24 actors, 2 fixed statements",
        "the folder holding Actor_01/ … Actor_24/",
    ),
    "emodb": ("EmoDB (Berlin): wav/; 10 speakers, 10 German sentences", "the folder holding wav/"),
    "esd": (
        "ESD: NNNN/<Emotion>/ per speaker with its transcript",
        "the folder holding 0001/ … 0020/",
    ),
    "meld": (
        "MELD: *_sent_emo.csv and dia*_utt*.mp4 clips; official train/dev/test",
        "MELD.Raw (holds the CSVs and the clip folders)",
    ),
    "folders": (
        "any tree root/<label>/<file>: the folder is the label",
        "the folder holding one folder per label",
    ),
}
DEFAULT_ASR_MODEL = "openai/whisper-small"


def _classes(value: str) -> int | str:
    if value not in ("4", "all"):
        raise argparse.ArgumentTypeError("choose 4 or all")
    return 4 if value == "4" else "all"


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


def cmd_evaluate(args: argparse.Namespace) -> None:
    from emodistill.bundle import BundleError

    from .evaluate import evaluate_bundle

    try:
        metrics = evaluate_bundle(
            args.model,
            args.corpus,
            args.out,
            args.partition,
            args.fold,
            args.protocol,
            args.device,
            not args.quiet,
        )
    except (BundleError, FoldError, OSError) as err:
        sys.exit(f"error: {err}")
    if "ua" in metrics:
        print(
            f"{metrics['rows']}: n {metrics['n']}, UA {100 * metrics['ua']:.2f} %, "
            f"WA {100 * metrics['wa']:.2f} %, macro-F1 {100 * metrics['macro_f1']:.2f} %"
        )
        if metrics["unknown_labels"]:
            print(f"labels the model cannot output (not scored): {metrics['unknown_labels']}")
    if dims := metrics.get("dimensions"):
        ccc = ", ".join(f"{name} {value:.3f}" for name, value in dims["ccc"].items())
        print(f"{metrics['rows']}: CCC over {dims['n']} rated rows: {ccc}")
    plot = ", confusion_matrix.png" if "ua" in metrics else ""
    print(f"wrote {args.out}/metrics.json, predictions.csv{plot}")


def cmd_cross_corpus(args: argparse.Namespace) -> None:
    from emodistill.bundle import BundleError

    from .evaluate import cross_corpus_table

    try:
        path = cross_corpus_table(
            args.models, args.corpora, args.out, args.partition, args.device, not args.quiet
        )
    except (BundleError, FoldError, OSError) as err:
        sys.exit(f"error: {err}")
    print(path.read_text())


def cmd_demo(args: argparse.Namespace) -> None:
    from .corpus.prepare import PREPARE_ERRORS
    from .demo import demo

    if (args.corpus is None) != (args.root is None):
        sys.exit("error: --corpus and --root go together (e.g. --corpus cremad --root DIR)")
    try:
        demo(args.out, args.device, not args.quiet, args.corpus, args.root)
    except PREPARE_ERRORS as err:
        sys.exit(f"error: {err}")


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

    def add_classes(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--classes",
            type=_classes,
            default=4,
            help="4: neutral, angry, sad, happy (the paper's); all: every label the corpus has",
        )

    def add_transcribe(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--transcribe",
            nargs="?",
            const=DEFAULT_ASR_MODEL,
            default=None,
            metavar="MODEL",
            help="write the text of rows without one with this ASR model (transformers; "
            f"default {DEFAULT_ASR_MODEL}); cached by audio hash and model, resumable",
        )
        p.add_argument("--quiet", action="store_true", help="no progress bar")

    def add_out(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", type=Path, required=True, help="folder for manifest.csv etc.")
        p.add_argument(
            "--n-val-speakers",
            type=int,
            default=1,
            help="training speakers held out per fold for validation (early stopping)",
        )

    for kind, (help_text, root_help) in CORPUS_COMMANDS.items():
        p = corpora.add_parser(kind, help=help_text)
        p.add_argument("--root", type=Path, required=True, help=root_help)
        add_out(p)
        if kind != "iemocap":
            add_classes(p)
        if kind == "folders":
            p.add_argument(
                "--speaker-pattern",
                default=None,
                help=r"regex whose first group is the speaker in a file name, e.g. '^(\d+)_'",
            )
            add_transcribe(p)
        if kind == "esd":
            p.add_argument(
                "--language",
                choices=("english", "mandarin", "both"),
                default="english",
                help="speakers 0011-0020 (English), 0001-0010 (Mandarin) or both",
            )
        p.set_defaults(func=cmd_prepare)

    p = corpora.add_parser("manifest", help="any corpus, from a CSV: path,label,speaker[,text]")
    p.add_argument(
        "--csv", type=Path, required=True, help="your CSV; relative paths from its folder"
    )
    add_out(p)
    add_transcribe(p)
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

    p = commands.add_parser("evaluate", help="a bundle on a prepared corpus, through the runtime")
    p.add_argument("--model", type=Path, required=True, help="bundle folder (bundle.json)")
    p.add_argument("--corpus", type=Path, required=True, help="prepared folder (manifest.csv)")
    p.add_argument(
        "--partition",
        choices=("test", "all"),
        default="test",
        help="test: the fold's held-out speakers or partition; all: every row",
    )
    p.add_argument("--fold", type=int, default=None, help="default: the bundle's own fold")
    p.add_argument(
        "--protocol", choices=PROTOCOLS, default=None, help="default: the bundle's own protocol"
    )
    p.add_argument("--out", type=Path, required=True, help="folder for metrics.json etc.")
    add_device_flag(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_evaluate)

    p = commands.add_parser("cross-corpus", help="bundles x corpora -> UA as a Markdown table")
    p.add_argument("--models", type=Path, nargs="+", required=True, help="bundle folders")
    p.add_argument("--corpora", type=Path, nargs="+", required=True, help="prepared folders")
    p.add_argument("--partition", choices=("test", "all"), default="all")
    p.add_argument("--out", type=Path, required=True, help="folder for the table and each run")
    add_device_flag(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_cross_corpus)

    p = commands.add_parser("demo", help="synthetic (or a real) corpus -> tiny student")
    p.add_argument("--out", type=Path, default=Path("models/demo"), help="demo folder")
    p.add_argument(
        "--corpus",
        choices=REAL_DEMO_CORPORA,
        default=None,
        help="train on this freely downloadable corpus instead of the synthetic one",
    )
    p.add_argument("--root", type=Path, default=None, help="the corpus's folder (with --corpus)")
    add_device_flag(p, "teachers and student train")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m training") -> None:
    args = build_parser(prog).parse_args(argv)
    args.func(args)
