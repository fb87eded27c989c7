"""Any labelled folder tree: labels from folder names, speakers from a regex."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.training.corpus import trees
from training.corpus.reading import canonical_label


def test_labels_by_synonym_speakers_by_pattern_and_traps(tmp_path: Path):
    out = tmp_path / "out"
    root = trees.write_folders_tree(tmp_path)
    rows = trees.prepare_tree("folders", root, out, "--speaker-pattern", trees.FOLDERS_PATTERN)

    kept = {k: v for k, v in trees.FOLDERS_FILES.items() if v is not None}
    assert {r.utt_id: r.label for r in rows} == {
        f"my-corpus_{Path(k).with_suffix('').as_posix()}": v for k, v in kept.items()
    }
    assert {r.speaker for r in rows} == {"my-corpus_spk01", "my-corpus_spk02", "my-corpus_spk03"}
    assert trees.dropped(out) == trees.FOLDERS_DROPPED


def test_all_classes_keeps_unknown_folders_as_labels(tmp_path: Path):
    out = tmp_path / "out"
    root = trees.write_folders_tree(tmp_path)
    rows = trees.prepare_tree(
        "folders", root, out, "--speaker-pattern", trees.FOLDERS_PATTERN, "--classes", "all"
    )
    assert {r.label for r in rows} == {"angry", "happy", "neutral", "sad", "calm", "notes"}


def test_without_a_speaker_pattern_the_error_says_why(tmp_path: Path):
    root = trees.write_folders_tree(tmp_path)
    with pytest.raises(SystemExit, match="speaker-independent folds need a speaker"):
        trees.prepare_tree("folders", root, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("Angry", "angry"),
        ("anger", "angry"),
        ("ANG", "angry"),
        ("Happiness", "happy"),
        ("joy", "happy"),
        ("fearful", "fear"),
        ("Surprised", "surprise"),
        ("notes", None),
    ],
)
def test_common_spellings(name: str, label: str | None):
    assert canonical_label(name) == label
