"""Corpus preparation: one function, `prepare_corpus`, behind a registry of corpus kinds.

A preparer turns one kind of source (a corpus's own folder, a user CSV, the synthetic corpus)
into `manifest.csv` and `labels.json` in the config's `prepared_dir`; `prepare_corpus` then
writes the folds files beside them. Corpora read from their folder (`CORPUS_READERS`) are read
whole, and transcribed where asked, before anything is written: a root that is not the corpus,
or an interrupted run, leaves the prepared folder as it was. Beside the manifest they leave
`prepare_report.json` (rows kept, dropped by reason) and, where the corpus rates arousal,
valence and dominance, `dimensions.json` (whose ratings, from what scale). The CLI's `prepare` and a
training run both call it, so a prepared folder looks the same whichever made it.
Knows nothing of features, models or runs.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from emodistill.bundle import DIMENSION_NAMES

from ..config import CorpusConfig, CorpusKind
from ..folds import PROTOCOLS, folds_path, write_all_folds
from ..folds import Protocol as FoldProtocol
from .acted import read_cremad, read_emodb, read_ravdess
from .esd import read_esd
from .folders import SpeakerPatternError, read_folders
from .iemocap import FOUR_CLASS_LABELS, RATING_ORIGIN, prepare_iemocap
from .manifest import (
    MANIFEST_FILE,
    ManifestError,
    RatingOrigin,
    Utterance,
    label_counts,
    read_labels,
    read_manifest,
    validate_user_csv,
    write_manifest,
)
from .meld import read_meld
from .msp_podcast import read_msp_podcast
from .reading import CorpusReading, NotTheCorpusError
from .synthetic import EspeakMissingError, build_corpus, read_meta

Log = Callable[[str], object]  # print, or a test's list.append
REPORT_FILE = "prepare_report.json"

# What a preparer raises for a bad source; the CLI turns these into one-line errors.
PREPARE_ERRORS: tuple[type[Exception], ...] = (
    NotTheCorpusError,
    ManifestError,
    SpeakerPatternError,
    EspeakMissingError,
    OSError,
)


class Preparer(Protocol):
    def __call__(
        self, config: CorpusConfig, progress: bool, log: Log
    ) -> Sequence[FoldProtocol] | None:
        """Write manifest.csv and labels.json into `config.prepared_dir`; log a summary.
        Returns the fold protocols that suit the corpus (None: whichever the rows allow)."""


CorpusReader = Callable[[CorpusConfig], CorpusReading]


def _root(config: CorpusConfig) -> Path:
    if config.root is None:  # CorpusConfig's validator makes this unreachable from YAML
        raise ValueError(f"corpus.kind={config.kind} needs corpus.root")
    return config.root.resolve()


CORPUS_READERS: dict[CorpusKind, CorpusReader] = {
    "emodb": lambda c: read_emodb(_root(c), c.classes),
    "ravdess": lambda c: read_ravdess(_root(c), c.classes),
    "cremad": lambda c: read_cremad(_root(c), c.classes),
    "msp-podcast": lambda c: read_msp_podcast(_root(c), c.classes),
    "esd": lambda c: read_esd(_root(c), c.classes, c.language),
    "meld": lambda c: read_meld(_root(c), c.classes),
    "folders": lambda c: read_folders(_root(c), c.classes, c.speaker_pattern),
}


def _transcribed(
    rows: list[Utterance], config: CorpusConfig, progress: bool, log: Log
) -> list[Utterance]:
    if config.transcribe is None:
        return rows
    from .transcribe import transcribe_rows  # transformers' pipeline: only when asked

    return transcribe_rows(rows, config.transcribe, progress=progress, log=log)


def write_prepared(
    out: Path,
    rows: list[Utterance],
    labels: Sequence[str],
    record: dict[str, object],
    ratings: RatingOrigin | None,
) -> None:
    """The prepared folder's files, written together once everything is read."""
    write_manifest(rows, out, labels, ratings)  # and dimensions.json where rows are rated
    (out / REPORT_FILE).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")


def _prepare_read(config: CorpusConfig, progress: bool, log: Log) -> Sequence[FoldProtocol]:
    reading = CORPUS_READERS[config.kind](config)
    log(reading.summary())
    if not reading.rows:
        raise NotTheCorpusError(
            f"{config.root}: no utterance kept ({sum(reading.dropped.values())} dropped); "
            "see the reasons above"
        )
    rows = _transcribed(reading.rows, config, progress, log)
    write_prepared(config.prepared_dir, rows, reading.labels, reading.record(), reading.dimensions)
    return reading.protocols


def _per_class(rows: list[Utterance]) -> str:
    if not any(r.label for r in rows):
        return "no categories: rated in arousal, valence and dominance only"
    return "per class: " + ", ".join(f"{k} {v}" for k, v in label_counts(rows).items())


def _prepare_iemocap(config: CorpusConfig, progress: bool, log: Log) -> None:
    if config.classes != 4:
        raise ManifestError("prepare iemocap reads the field's 4-class protocol only")
    report = prepare_iemocap(_root(config))
    log(report.summary())
    dropped = {
        f"label code {code} outside the 4 classes": n for code, n in report.skipped_labels.items()
    }
    dropped["audio file missing"] = len(report.missing_wavs)
    dropped["macOS '._' file"] = report.ignored_resource_forks
    record = {
        "corpus": "IEMOCAP",
        "classes": 4,
        "kept": len(report.rows),
        "dropped": {k: v for k, v in sorted(dropped.items()) if v},
        "dropped_items": {"audio file missing": report.missing_wavs},
    }
    write_prepared(config.prepared_dir, report.rows, FOUR_CLASS_LABELS, record, RATING_ORIGIN)


def _prepare_manifest(config: CorpusConfig, progress: bool, log: Log) -> None:
    if config.csv is None:  # CorpusConfig's validator makes this unreachable from YAML
        raise ValueError("corpus.kind=manifest needs corpus.csv")
    rows, labels = validate_user_csv(config.csv, dimension_range=config.dimension_range)
    log(f"{len(rows)} utterances, {len({r.speaker for r in rows})} speakers")
    log(_per_class(rows))
    low, high = config.dimension_range
    ratings = RatingOrigin(
        source=f"{config.csv.name}'s arousal, valence, dominance columns, {low:g}-{high:g}",
        original_scale=config.dimension_range,
        columns={name: name for name in DIMENSION_NAMES},
    )
    write_manifest(_transcribed(rows, config, progress, log), config.prepared_dir, labels, ratings)


def _prepare_synthetic(config: CorpusConfig, progress: bool, log: Log) -> None:
    out = config.prepared_dir
    rows = build_corpus(config.synthetic, out, progress)
    audio_s = sum(r.duration_s for r in rows)
    modes = Counter(m["mode"] for m in read_meta(out).values())
    log(f"synthetic corpus: {len(rows)} utterances, {audio_s / 60:.1f} audio-minutes")
    log(_per_class(rows))
    log("label carried by: " + ", ".join(f"{k} {v}" for k, v in sorted(modes.items())))


def _already_prepared(config: CorpusConfig, progress: bool, log: Log) -> None:
    manifest = config.prepared_dir / MANIFEST_FILE
    if not manifest.is_file():
        raise FileNotFoundError(f"corpus.kind=prepared but {manifest} does not exist")


PREPARERS: dict[CorpusKind, Preparer] = {
    "iemocap": _prepare_iemocap,
    **dict.fromkeys(CORPUS_READERS, _prepare_read),
    "manifest": _prepare_manifest,
    "synthetic": _prepare_synthetic,
    "prepared": _already_prepared,
}


def _suited_protocols(out: Path) -> Sequence[FoldProtocol]:
    """The protocols an earlier preparation found suitable (prepare_report.json), else all."""
    report = out / REPORT_FILE
    if report.is_file():
        saved = json.loads(report.read_text()).get("protocols")
        if saved:
            return [p for p in PROTOCOLS if p in saved]
    return PROTOCOLS


def prepare_corpus(
    config: CorpusConfig, rebuild: bool = False, progress: bool = True, log: Log = print
) -> Path:
    """Make `config.prepared_dir` hold a manifest, its labels and its folds; returns that folder.

    An existing manifest is kept unless `rebuild`. Whenever the manifest is (re)written, every
    folds file is too; otherwise only missing folds files are written, so a stale one is left
    for `read_folds` to refuse rather than silently replaced.
    """
    out = config.prepared_dir
    manifest = out / MANIFEST_FILE
    rewritten = rebuild or not manifest.is_file()
    suited: Sequence[FoldProtocol] | None = None
    if rewritten:
        suited = PREPARERS[config.kind](config, progress, log)
    rows = read_manifest(out)
    if rewritten:
        log(f"wrote {manifest} ({len(rows)} rows; labels {read_labels(out)})")
    candidates = suited if suited is not None else _suited_protocols(out)
    protocols = [p for p in candidates if rewritten or not folds_path(out, p).is_file()]
    if rewritten:
        for stale in set(PROTOCOLS) - set(candidates):
            folds_path(out, stale).unlink(missing_ok=True)
    write_all_folds(rows, out, config.n_val_speakers, log, protocols)
    return out
