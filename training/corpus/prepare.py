"""Corpus preparation: one function, `prepare_corpus`, behind a registry of corpus kinds.

A preparer turns one kind of source (IEMOCAP's folder, a user CSV, the synthetic corpus) into
`manifest.csv` and `labels.json` in the config's `prepared_dir`; `prepare_corpus` then writes
the folds files beside them. The CLI's `prepare` and a training run both call it, so a
prepared folder looks the same whichever made it. Knows nothing of features, models or runs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from ..config import CorpusConfig, CorpusKind
from ..folds import PROTOCOLS, folds_path, write_all_folds
from .iemocap import DIMENSIONS_SOURCE, FOUR_CLASS_LABELS, NotIemocapError, prepare_iemocap
from .manifest import (
    MANIFEST_FILE,
    ManifestError,
    Utterance,
    label_counts,
    read_labels,
    read_manifest,
    validate_user_csv,
    write_manifest,
)
from .synthetic import EspeakMissingError, build_corpus, read_meta

Log = Callable[[str], object]  # print, or a test's list.append

# What a preparer raises for a bad source; the CLI turns these into one-line errors.
PREPARE_ERRORS: tuple[type[Exception], ...] = (
    NotIemocapError,
    ManifestError,
    EspeakMissingError,
    OSError,
)


class Preparer(Protocol):
    def __call__(self, config: CorpusConfig, progress: bool, log: Log) -> None:
        """Write manifest.csv and labels.json into `config.prepared_dir`; log a summary."""


def _per_class(rows: list[Utterance]) -> str:
    return "per class: " + ", ".join(f"{k} {v}" for k, v in label_counts(rows).items())


def _prepare_iemocap(config: CorpusConfig, progress: bool, log: Log) -> None:
    if config.root is None:  # CorpusConfig's validator makes this unreachable from YAML
        raise ValueError("corpus.kind=iemocap needs corpus.root")
    report = prepare_iemocap(config.root)
    log(report.summary())
    write_manifest(report.rows, config.prepared_dir, FOUR_CLASS_LABELS, DIMENSIONS_SOURCE)


def _prepare_manifest(config: CorpusConfig, progress: bool, log: Log) -> None:
    if config.csv is None:  # CorpusConfig's validator makes this unreachable from YAML
        raise ValueError("corpus.kind=manifest needs corpus.csv")
    rows, labels = validate_user_csv(config.csv, dimension_range=config.dimension_range)
    log(f"{len(rows)} utterances, {len({r.speaker for r in rows})} speakers")
    log(_per_class(rows))
    low, high = config.dimension_range
    source = f"{config.csv.name}'s arousal, valence, dominance columns, {low:g}-{high:g}"
    write_manifest(rows, config.prepared_dir, labels, source)


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
    "manifest": _prepare_manifest,
    "synthetic": _prepare_synthetic,
    "prepared": _already_prepared,
}


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
    if rewritten:
        PREPARERS[config.kind](config, progress, log)
    rows = read_manifest(out)
    if rewritten:
        log(f"wrote {manifest} ({len(rows)} rows; labels {read_labels(out)})")
    protocols = [p for p in PROTOCOLS if rewritten or not folds_path(out, p).is_file()]
    write_all_folds(rows, out, config.n_val_speakers, log, protocols)
    return out
