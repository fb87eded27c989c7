"""EmoDB, RAVDESS and CREMA-D from fixture trees shaped like their distributions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.training.corpus import trees
from training.corpus.acted import CREMAD_SENTENCES, EMODB_SENTENCES, RAVDESS_STATEMENTS
from training.corpus.manifest import read_labels
from training.folds import folds_path, read_folds


def test_emodb_rows_labels_speakers_texts_and_traps(tmp_path: Path):
    out = tmp_path / "out"
    rows = trees.prepare_tree("emodb", trees.write_emodb_tree(tmp_path), out)

    assert trees.by_id(rows) == trees.EMODB_EXPECTED
    assert trees.dropped(out) == trees.EMODB_DROPPED
    assert read_labels(out) == ["neutral", "angry", "sad", "happy"]
    # Four speakers: leave-one-out and speaker groups coincide, both written.
    folds = read_folds(rows, folds_path(out, "speaker_groups"), 1)
    assert [f.test_speakers for f in folds] == [(f"emodb_{s}",) for s in trees.EMODB_SPEAKERS]
    assert not folds_path(out, "official").exists()


def test_emodb_all_classes_keeps_fear_and_boredom(tmp_path: Path):
    out = tmp_path / "out"
    rows = trees.prepare_tree("emodb", trees.write_emodb_tree(tmp_path), out, "--classes", "all")

    assert read_labels(out) == ["neutral", "angry", "sad", "happy", "fear", "boredom"]
    assert len(rows) == len(trees.EMODB_EXPECTED) + 8
    assert trees.dropped(out) == {
        k: v for k, v in trees.EMODB_DROPPED.items() if "outside" not in k
    }


def test_ravdess_reads_speech_only_from_the_nested_actor_folders(tmp_path: Path):
    out = tmp_path / "out"
    rows = trees.prepare_tree("ravdess", trees.write_ravdess_tree(tmp_path), out)

    assert trees.by_id(rows) == trees.RAVDESS_EXPECTED
    assert trees.dropped(out) == trees.RAVDESS_DROPPED


@pytest.mark.parametrize("folder", ["AudioWAV", "AudioMP3"])
def test_cremad_rows_and_traps_in_either_audio_folder(tmp_path: Path, folder: str):
    out = tmp_path / "out"
    rows = trees.prepare_tree("cremad", trees.write_cremad_tree(tmp_path, folder), out)

    suffix = ".wav" if folder == "AudioWAV" else ".mp3"
    assert trees.by_id(rows) == trees.CREMAD_EXPECTED
    assert all(r.path.endswith(suffix) for r in rows)
    assert trees.dropped(out) == trees.CREMAD_DROPPED
    report = json.loads((out / "prepare_report.json").read_text())
    assert sorted(report["dropped_items"]["audio unreadable"]) == [
        f"{folder}/1005_ITH_NEU_XX{suffix}",
        f"{folder}/1076_MTI_SAD_XX{suffix}",
    ]
    assert any("git lfs pull" in note for note in report["notes"])


def test_fixed_sentence_tables_are_complete():
    assert len(EMODB_SENTENCES) == 10 and len(RAVDESS_STATEMENTS) == 2
    assert len(CREMAD_SENTENCES) == 12


@pytest.mark.parametrize("kind", ["emodb", "ravdess", "cremad"])
def test_a_root_that_is_not_the_corpus_is_one_line_and_writes_nothing(tmp_path: Path, kind: str):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        trees.prepare_tree(kind, tmp_path, out)
    message = str(exit_info.value)
    assert message.startswith("error: ") and "expected" in message and "\n" not in message
    assert not out.exists()
