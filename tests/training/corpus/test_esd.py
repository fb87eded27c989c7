"""ESD from a fixture tree: English speakers by default, transcripts per speaker."""

from __future__ import annotations

from pathlib import Path

from tests.training.corpus import trees
from training.corpus.manifest import read_manifest


def test_english_rows_texts_and_traps(tmp_path: Path):
    out = tmp_path / "out"
    rows = trees.prepare_tree("esd", trees.write_esd_tree(tmp_path), out)

    assert trees.by_id(rows) == trees.ESD_EXPECTED
    assert trees.dropped(out) == trees.ESD_DROPPED


def test_mandarin_speakers_when_asked_with_their_gb18030_transcript(tmp_path: Path):
    out = tmp_path / "out"
    root = trees.write_esd_tree(tmp_path)
    # One Mandarin speaker cannot make speaker folds: the preparation says so and goes on.
    trees.prepare_tree("esd", root, out, "--language", "mandarin")

    rows = read_manifest(out)
    assert {r.speaker for r in rows} == {"esd_0001"} and len(rows) == 4
    assert {r.text for r in rows} == {"今天天气很好。"}


def test_partition_folders_give_the_official_split_too(tmp_path: Path):
    root = tmp_path / "ESD"
    for speaker in ("0011", "0012", "0013"):
        for partition in ("train", "evaluation", "test"):
            trees.write_tone(root / speaker / "Happy" / partition / f"{speaker}_{partition}.wav")
            trees.write_tone(root / speaker / "Sad" / partition / f"{speaker}_s{partition}.wav")
    out = tmp_path / "out"
    rows = trees.prepare_tree("esd", root, out, official_by_speaker=False)

    assert len(rows) == 18
    assert {r.partition for r in rows} == {"train", "evaluation", "test"}
    assert (out / "folds_official.json").is_file() and (out / "folds_speaker.json").is_file()
