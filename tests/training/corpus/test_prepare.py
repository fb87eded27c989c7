"""Corpus preparation: one function behind a registry of kinds, writing manifest and folds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import pytest

from tests.conftest import write_tone
from training.config import CorpusConfig, CorpusKind
from training.corpus import prepare
from training.corpus.manifest import read_labels, read_manifest
from training.corpus.prepare import PREPARERS, prepare_corpus
from training.folds import FoldError, folds_path, read_folds


def user_csv(folder: Path) -> Path:
    """4 clips of 3 speakers, 2 labels, no session column."""
    for i in range(4):
        write_tone(folder / f"{i}.wav", 0.25)
    csv = folder / "corpus.csv"
    csv.write_text("path,label,speaker\n0.wav,a,s1\n1.wav,b,s2\n2.wav,a,s3\n3.wav,b,s3\n")
    return csv


def manifest_config(tmp_path: Path) -> CorpusConfig:
    return CorpusConfig(kind="manifest", csv=user_csv(tmp_path), prepared_dir=tmp_path / "out")


def test_every_corpus_kind_has_a_preparer():
    assert set(PREPARERS) == set(get_args(CorpusKind))


def test_prepare_writes_manifest_labels_and_folds(tmp_path: Path):
    config = manifest_config(tmp_path)
    lines: list[str] = []
    out = prepare_corpus(config, progress=False, log=lines.append)

    assert out == config.prepared_dir
    rows = read_manifest(out)
    assert len(rows) == 4 and read_labels(out) == ["a", "b"]
    folds = read_folds(rows, folds_path(out, "speaker"), n_val_speakers=1)
    assert [f.test_speakers for f in folds] == [("s1",), ("s2",), ("s3",)]
    assert not folds_path(out, "session").exists()  # no session column
    assert any(line.startswith("no session folds:") for line in lines)


def test_an_existing_manifest_is_kept_and_only_missing_folds_are_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    config = manifest_config(tmp_path)
    prepare_corpus(config, progress=False, log=lambda _: None)
    speaker_folds = folds_path(config.prepared_dir, "speaker")
    speaker_folds.unlink()

    def no_preparing(*_: object) -> None:
        raise AssertionError("an existing manifest was prepared again")

    monkeypatch.setitem(prepare.PREPARERS, "manifest", no_preparing)
    prepare_corpus(config, progress=False, log=lambda _: None)
    assert speaker_folds.is_file()


def test_a_stale_folds_file_is_left_for_read_folds_to_refuse(tmp_path: Path):
    config = manifest_config(tmp_path)
    prepare_corpus(config, progress=False, log=lambda _: None)
    path = folds_path(config.prepared_dir, "speaker")
    stale = json.loads(path.read_text())
    stale["manifest_sha256"] = "0" * 64
    path.write_text(json.dumps(stale))

    prepare_corpus(config, progress=False, log=lambda _: None)  # the manifest is kept
    with pytest.raises(FoldError, match="made for another manifest"):
        read_folds(read_manifest(config.prepared_dir), path, n_val_speakers=1)
    prepare_corpus(config, rebuild=True, progress=False, log=lambda _: None)
    assert read_folds(read_manifest(config.prepared_dir), path, n_val_speakers=1)


def test_kind_prepared_needs_a_manifest(tmp_path: Path):
    config = CorpusConfig(kind="prepared", prepared_dir=tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match=r"manifest\.csv does not exist"):
        prepare_corpus(config, progress=False, log=lambda _: None)
