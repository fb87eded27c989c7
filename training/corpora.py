"""The rows, labels and folds a run trains on: one prepared corpus, or several combined.

With one corpus (`corpus` alone) the rows and folds are the prepared folder's, untouched.
With several (`corpus` plus `more_corpora`), each keeps its own folds (its own protocol: speaker
groups for CREMA-D, official partitions for MSP-Podcast) and they are combined: combined fold
k takes fold k of each corpus (k modulo that corpus's fold count, so a corpus with fewer folds
is tested again on its first ones). Utterance ids and partitions are prefixed `name/` and
speakers `name_` (unless a preparer already namespaced them so), so no id or speaker of one
corpus can meet another's; every combined fold is checked to hold no speaker in two of train,
validation and test. All corpora must share one label set: the model has one output layer.

The corpus names go to `corpora.json` in the run folder, for the report's per-corpus figures.
Knows nothing of models, features or training.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from .config import CorpusConfig, RunConfig
from .corpus.manifest import Utterance, read_labels, read_manifest
from .folds import PARTS, Fold, FoldError, folds_path, read_folds, split

CORPORA_FILE = "corpora.json"


@dataclass(frozen=True)
class TrainingData:
    rows: list[Utterance]
    labels: list[str]
    folds: list[Fold]
    names: list[str]  # the corpora, in the config's order


def corpus_name(config: CorpusConfig) -> str:
    return config.name or config.prepared_dir.name


def all_corpora(run: RunConfig) -> list[CorpusConfig]:
    return [run.corpus, *run.more_corpora]


def _read(config: CorpusConfig) -> tuple[list[Utterance], list[str], list[Fold]]:
    prepared = config.prepared_dir
    rows = read_manifest(prepared)
    folds = read_folds(rows, folds_path(prepared, config.protocol), config.n_val_speakers)
    return rows, read_labels(prepared), folds


def _namespaced_speaker(name: str, speaker: str) -> str:
    if not speaker or speaker.startswith(f"{name}_"):
        return speaker
    return f"{name}_{speaker}"


def _renamed_rows(name: str, rows: list[Utterance]) -> list[Utterance]:
    return [
        replace(
            r,
            utt_id=f"{name}/{r.utt_id}",
            speaker=_namespaced_speaker(name, r.speaker),
            partition=f"{name}/{r.partition}" if r.partition else "",
        )
        for r in rows
    ]


def _renamed_fold(name: str, rows: list[Utterance], fold: Fold) -> Fold:
    def spk(speakers: Iterable[str]) -> tuple[str, ...]:
        return tuple(_namespaced_speaker(name, s) for s in speakers)

    def part(partitions: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(f"{name}/{p}" for p in partitions)

    train = fold.train_speakers
    if not (fold.test_partitions or fold.val_partitions or fold.train_partitions):
        # A speaker fold trains on every speaker it does not test or validate on; a combined
        # fold that also names partitions trains only on what it names, so name them all.
        held = set(fold.test_speakers) | set(fold.val_speakers)
        train = tuple(sorted({r.speaker for r in rows} - held))
    return Fold(
        fold.index,
        test_speakers=spk(fold.test_speakers),
        val_speakers=spk(fold.val_speakers),
        train_speakers=spk(train),
        test_partitions=part(fold.test_partitions),
        val_partitions=part(fold.val_partitions),
        train_partitions=part(fold.train_partitions),
    )


def _union(index: int, folds: list[Fold]) -> Fold:
    def every(field: str) -> tuple[str, ...]:
        return tuple(x for f in folds for x in getattr(f, field))

    return Fold(
        index,
        test_speakers=every("test_speakers"),
        val_speakers=every("val_speakers"),
        train_speakers=every("train_speakers"),
        test_partitions=every("test_partitions"),
        val_partitions=every("val_partitions"),
        train_partitions=every("train_partitions"),
    )


def combine(
    corpora: list[tuple[str, list[Utterance], list[Fold]]],
) -> tuple[list[Utterance], list[Fold]]:
    """Namespaced rows of every corpus, and the combined folds (see the module docstring)."""
    rows: list[Utterance] = []
    per_corpus: list[list[Fold]] = []
    for name, corpus_rows, folds in corpora:
        rows += _renamed_rows(name, corpus_rows)
        per_corpus.append([_renamed_fold(name, corpus_rows, f) for f in folds])
    n_folds = max(len(folds) for folds in per_corpus)
    combined = [_union(k, [folds[k % len(folds)] for folds in per_corpus]) for k in range(n_folds)]
    for fold in combined:
        check_speaker_independent(rows, fold)
    return rows, combined


def check_speaker_independent(rows: list[Utterance], fold: Fold) -> None:
    """No speaker of a speaker-fold corpus in two of train, val and test. (Rows placed by
    official partitions follow their corpus's own protocol: MELD's characters recur.)"""
    parts = split(rows, fold)
    by_speaker = {*fold.test_speakers, *fold.val_speakers, *fold.train_speakers}
    seen: dict[str, str] = {}
    for role in PARTS:
        for r in getattr(parts, role):
            if r.speaker in by_speaker and seen.setdefault(r.speaker, role) != role:
                raise FoldError(
                    f"combined fold {fold.index}: speaker {r.speaker} is in both "
                    f"{seen[r.speaker]} and {role}"
                )


def load_training_data(run: RunConfig) -> TrainingData:
    """The run's rows, labels and folds (its corpora already prepared)."""
    configs = all_corpora(run)
    if len(configs) == 1:
        rows, labels, folds = _read(configs[0])
        return TrainingData(rows, labels, folds, [corpus_name(configs[0])])
    names = [corpus_name(c) for c in configs]
    if len(set(names)) != len(names):
        raise ValueError(f"corpus names {names} repeat; give each corpus a distinct `name`")
    read = [_read(c) for c in configs]
    label_sets = {name: labels for name, (_, labels, _) in zip(names, read, strict=True)}
    if len({tuple(v) for v in label_sets.values()}) > 1:
        raise ValueError(
            f"the corpora's label sets differ: {label_sets}; prepare each with --classes 4 "
            "(or give them one label set) to train one model on them"
        )
    rows, folds = combine([(name, r, f) for name, (r, _, f) in zip(names, read, strict=True)])
    return TrainingData(rows, read[0][1], folds, names)


def write_corpora_file(run_dir: Path, data: TrainingData) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CORPORA_FILE).write_text(json.dumps({"corpora": data.names}, indent=2) + "\n")


def read_corpora_file(run_dir: Path) -> list[str]:
    path = run_dir / CORPORA_FILE
    return list(json.loads(path.read_text())["corpora"]) if path.is_file() else []
