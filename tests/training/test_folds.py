"""Speaker-independent folds: every speaker tested once, validation from training speakers."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from training.corpus.manifest import Utterance
from training.folds import (
    FoldError,
    make_folds,
    manifest_digest,
    read_folds,
    split,
    write_folds,
)


def corpus(speakers: list[str], per_speaker: int = 3, sessions: bool = True) -> list[Utterance]:
    return [
        Utterance(f"{s}_{i}", f"/x/{s}_{i}.wav", "ab"[i % 2], s, s[:5] if sessions else "", "", 1.0)
        for s in speakers
        for i in range(per_speaker)
    ]


IEMOCAP_SPEAKERS = [f"Ses0{n}{g}" for n in range(1, 6) for g in "FM"]


def test_leave_one_speaker_out_on_iemocap_speakers():
    rows = corpus(list(reversed(IEMOCAP_SPEAKERS)))  # manifest order must not matter
    folds = make_folds(rows, "speaker")

    assert len(folds) == 10
    assert [f.test_speakers for f in folds] == [(s,) for s in IEMOCAP_SPEAKERS]
    assert folds[0].val_speakers == ("Ses01M",)  # the session partner of Ses01F
    assert folds[9].val_speakers == ("Ses01F",)  # rotation wraps around
    for fold in folds:
        parts = split(rows, fold)
        test, val, train = ({r.speaker for r in p} for p in (parts.test, parts.val, parts.train))
        assert not (test & val) and not (test & train) and not (val & train)
        assert len(parts.train) + len(parts.val) + len(parts.test) == len(rows)
        assert set(fold.train_speakers) == train and len(train) == 8


def test_leave_one_session_out():
    rows = corpus(IEMOCAP_SPEAKERS)
    folds = make_folds(rows, "session", n_val_speakers=1)
    assert len(folds) == 5
    assert folds[0].test_speakers == ("Ses01F", "Ses01M")
    assert folds[0].val_speakers == ("Ses02F",)
    assert folds[4].val_speakers == ("Ses01F",)
    assert all(len(f.train_speakers) == 7 for f in folds)


def test_folds_are_deterministic_and_tied_to_their_manifest(tmp_path):
    rows = corpus(IEMOCAP_SPEAKERS)
    assert make_folds(rows) == make_folds(list(rows))
    path = tmp_path / "folds.json"
    write_folds(rows, make_folds(rows), path)
    saved = json.loads(path.read_text())
    assert saved["manifest_sha256"] == manifest_digest(rows)
    assert saved["folds"][0]["counts"] == {"train": 24, "val": 3, "test": 3}


def test_read_folds_gives_back_what_was_written(tmp_path):
    rows = corpus(IEMOCAP_SPEAKERS)
    path = tmp_path / "folds.json"
    write_folds(rows, make_folds(rows, "session"), path)
    assert read_folds(rows, path, n_val_speakers=1) == make_folds(rows, "session")


def test_a_folds_file_made_for_another_manifest_is_refused(tmp_path):
    rows = corpus(IEMOCAP_SPEAKERS)
    path = tmp_path / "folds.json"
    write_folds(rows, make_folds(rows), path)
    relabelled = [replace(rows[0], label="b"), *rows[1:]]
    with pytest.raises(FoldError, match="made for another manifest"):
        read_folds(relabelled, path, n_val_speakers=1)
    with pytest.raises(FoldError, match="the config asks for 2"):
        read_folds(rows, path, n_val_speakers=2)
    with pytest.raises(FoldError, match="does not exist"):
        read_folds(rows, tmp_path / "missing.json", n_val_speakers=1)


def test_session_folds_need_sessions():
    with pytest.raises(FoldError, match="need a `session`"):
        make_folds(corpus(IEMOCAP_SPEAKERS, sessions=False), "session")


def test_too_few_speakers_is_an_error():
    with pytest.raises(FoldError, match="cannot spare"):
        make_folds(corpus(["a", "b"]), "speaker")
    with pytest.raises(FoldError, match="at least 2"):
        make_folds(corpus(["a"]), "speaker")


def test_speaker_groups_cut_sorted_speakers_into_at_most_ten_even_runs():
    speakers = [f"cremad_{1001 + i}" for i in range(23)]
    folds = make_folds(corpus(speakers, sessions=False), "speaker_groups")

    assert [len(f.test_speakers) for f in folds] == [3, 3, 3, 2, 2, 2, 2, 2, 2, 2]
    tested = [s for f in folds for s in f.test_speakers]
    assert tested == speakers  # each speaker tested exactly once, in order
    assert folds[0].val_speakers == ("cremad_1004",)  # the first speaker after the group


def test_speaker_folds_refuse_rows_without_a_speaker():
    rows = corpus(["a", "b", "c"], sessions=False)
    rows.append(replace(rows[0], utt_id="anon", speaker=""))
    with pytest.raises(FoldError, match="speaker is unknown"):
        make_folds(rows, "speaker")


def _partitioned(names: dict[str, str]) -> list[Utterance]:
    return [
        Utterance(utt, f"/x/{utt}.wav", "a", "", "", "", 1.0, partition=part)
        for utt, part in names.items()
    ]


def test_official_folds_one_per_test_partition_and_unknown_partitions_left_out():
    rows = _partitioned(
        {"u1": "Train", "u2": "Development", "u3": "Test1", "u4": "Test2", "u5": "Other"}
    )
    folds = make_folds(rows, "official")

    assert [f.test_partitions for f in folds] == [("Test1",), ("Test2",)]
    parts = split(rows, folds[1])
    assert [[r.utt_id for r in getattr(parts, p)] for p in ("train", "val", "test")] == [
        ["u1"],
        ["u2"],
        ["u4"],
    ]


def test_official_folds_need_train_dev_and_test():
    with pytest.raises(FoldError, match="none for \\['val'\\]"):
        make_folds(_partitioned({"u1": "train", "u2": "test"}), "official")


def test_official_folds_round_trip_through_the_folds_file(tmp_path):
    rows = _partitioned({"u1": "train", "u2": "dev", "u3": "test"})
    path = tmp_path / "folds_official.json"
    write_folds(rows, make_folds(rows, "official"), path)
    assert read_folds(rows, path, n_val_speakers=1) == make_folds(rows, "official")
