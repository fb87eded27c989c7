"""MELD from a fixture tree: CSV rows with MP4 clips, audio through our decoder."""

from __future__ import annotations

from pathlib import Path

import pytest

from emodistill.audio import load_audio
from tests.training.corpus import trees
from training.folds import folds_path, read_folds, split


def test_rows_splits_and_traps(tmp_path: Path):
    out = tmp_path / "out"
    rows = trees.prepare_tree("meld", trees.write_meld_tree(tmp_path), out)

    assert {r.utt_id: (r.label, r.speaker, r.text, r.partition) for r in rows} == (
        trees.MELD_EXPECTED
    )
    assert trees.dropped(out) == trees.MELD_DROPPED
    assert all(r.path.endswith(".mp4") for r in rows)
    assert rows[0].duration_s == pytest.approx(trees.CLIP_S, abs=0.1)  # AAC pads a frame
    assert len(load_audio(rows[0].path)) > 0


def test_the_official_split_is_the_protocol(tmp_path: Path):
    out = tmp_path / "out"
    rows = trees.prepare_tree("meld", trees.write_meld_tree(tmp_path), out)

    assert not folds_path(out, "speaker").exists()
    (fold,) = read_folds(rows, folds_path(out, "official"), n_val_speakers=1)
    parts = split(rows, fold)
    assert (len(parts.train), len(parts.val), len(parts.test)) == (4, 1, 1)
