"""MSP-Podcast from a fixture tree: official partitions, X and O never kept, A/V/D scaled."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.training.corpus import trees
from training.corpus.manifest import read_manifest
from training.folds import folds_path, read_folds, split


def test_rows_partitions_and_traps(tmp_path: Path):
    out = tmp_path / "out"
    rows = trees.prepare_tree("msp-podcast", trees.write_msp_podcast_tree(tmp_path), out)

    assert {r.utt_id: (r.label, r.speaker, r.text, r.partition) for r in rows} == (
        trees.MSP_EXPECTED
    )
    assert trees.dropped(out) == trees.MSP_DROPPED


def test_official_partitions_are_the_only_folds(tmp_path: Path):
    out = tmp_path / "out"
    rows = trees.prepare_tree("msp-podcast", trees.write_msp_podcast_tree(tmp_path), out)

    assert [
        p for p in ("speaker", "speaker_groups", "session") if folds_path(out, p).exists()
    ] == []
    folds = read_folds(rows, folds_path(out, "official"), n_val_speakers=1)
    assert [f.test_partitions for f in folds] == [("Test1",), ("Test2",), ("Test3",)]
    parts = split(rows, folds[2])
    assert {r.partition for r in parts.train} == {"Train"}
    assert {r.partition for r in parts.val} == {"Development"}
    assert [r.utt_id for r in parts.test] == ["msp_MSP-PODCAST_0006_0001"]


def test_arousal_valence_dominance_scaled_to_unit_with_the_scale_recorded(tmp_path: Path):
    out = tmp_path / "out"
    trees.prepare_tree("msp-podcast", trees.write_msp_podcast_tree(tmp_path), out)

    angry = next(r for r in read_manifest(out) if r.utt_id == "msp_MSP-PODCAST_0001_0010")
    # EmoAct 6.5, EmoVal 2.0, EmoDom 5.5 on 1-7
    assert angry.arousal == pytest.approx(5.5 / 6, abs=1e-4)
    assert angry.valence == pytest.approx(1.0 / 6, abs=1e-4)
    assert angry.dominance == pytest.approx(4.5 / 6, abs=1e-4)
    scale = json.loads((out / "dimensions.json").read_text())
    assert scale["original_scale"] == [1.0, 7.0]


def test_a_root_without_the_labels_table_is_one_line(tmp_path: Path):
    (tmp_path / "Audios").mkdir()
    with pytest.raises(SystemExit, match=r"expected Audios/<FileName>\.wav and Labels/"):
        trees.prepare_tree("msp-podcast", tmp_path, tmp_path / "out")
