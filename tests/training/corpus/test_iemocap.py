"""IEMOCAP -> manifest on a corpus-shaped tree holding every trap of the protocol."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import IEMOCAP_EXPECTED, IEMOCAP_TURNS, iemocap_vad
from training.cli import main
from training.corpus.iemocap import (
    NotIemocapError,
    dialog_of,
    prepare_iemocap,
    speaker_of,
)
from training.corpus.manifest import read_dimension_scale, read_labels, read_manifest


def expected_duration_s(utt_id: str) -> float:
    for dialogs in IEMOCAP_TURNS.values():
        for turns in dialogs.values():
            for i, turn in enumerate(turns):
                if turn[0] == utt_id:
                    return 0.5 + 0.1 * i
    raise KeyError(utt_id)


def test_speaker_comes_from_the_last_id_part():
    assert speaker_of("Ses01F_impro01_M000") == "Ses01M"
    assert speaker_of("Ses05M_script02_2_F017") == "Ses05F"
    assert dialog_of("Ses01F_script01_1_F012") == "Ses01F_script01_1"


def test_manifest_row_by_row(iemocap_root: Path):
    report = prepare_iemocap(iemocap_root)

    rows = {r.utt_id: r for r in report.rows}
    assert sorted(rows) == sorted(IEMOCAP_EXPECTED)
    for utt_id, (label, speaker, session, text) in IEMOCAP_EXPECTED.items():
        row = rows[utt_id]
        assert (row.label, row.speaker, row.session, row.text) == (label, speaker, session, text)
        assert Path(row.path).is_absolute() and Path(row.path).is_file()
        assert Path(row.path).name == f"{utt_id}.wav"
        assert row.duration_s == pytest.approx(expected_duration_s(utt_id), abs=1e-3)


def expected_ratings(utt_id: str) -> tuple[float, float, float]:
    """(arousal, valence, dominance) in [0, 1] from the fixture's [V, A, D] on 1-5."""
    for session, dialogs in IEMOCAP_TURNS.items():
        for turns in dialogs.values():
            for i, turn in enumerate(turns):
                if turn[0] == utt_id:
                    v, a, d = iemocap_vad(i, int(session[-1]))
                    return ((a - 1) / 4, (v - 1) / 4, (d - 1) / 4)
    raise KeyError(utt_id)


def test_each_row_carries_its_own_ratings_scaled_to_0_1(iemocap_root: Path, tmp_path: Path):
    rows = {r.utt_id: r for r in prepare_iemocap(iemocap_root).rows}
    seen = set()
    for utt_id, row in rows.items():
        assert row.dimensions == pytest.approx(expected_ratings(utt_id), abs=1e-9)
        assert all(0.0 <= x <= 1.0 for x in row.dimensions)
        seen.add(row.dimensions)
    assert len(seen) == len(rows)  # distinct per utterance: nothing read from the wrong line
    # The sub-folder's summary-shaped line (5, 5, 5) is never read.
    assert (1.0, 1.0, 1.0) not in seen

    out = tmp_path / "prepared"
    main(["prepare", "iemocap", "--root", str(iemocap_root), "--out", str(out)])
    back = {r.utt_id: r.dimensions for r in read_manifest(out)}
    for utt_id, values in back.items():
        assert values == pytest.approx(expected_ratings(utt_id), abs=1e-4)  # 4 decimals
    scale = read_dimension_scale(out)
    assert scale is not None and scale.rated == 6 and scale.scale == (0.0, 1.0)
    assert "IEMOCAP" in scale.source and "1-5" in scale.source


def test_what_was_skipped_is_reported(iemocap_root: Path):
    report = prepare_iemocap(iemocap_root)

    assert dict(report.skipped_labels) == {"fru": 1, "xxx": 1}
    assert report.missing_wavs == ["Ses01F_impro01_F003"]
    assert report.missing_transcripts == ["Ses01F_impro01_M002"]
    # One never-labelled id per dialog; F003 is labelled (its wav is what is missing).
    assert report.unlabelled_transcript_ids == 2
    # Two '._' text files per dialog (EmoEvaluation, transcriptions) are met while listing.
    assert report.ignored_resource_forks == 4
    assert report.sessions_found == ["Session1", "Session2"]
    summary = report.summary()
    for needle in ("6 utterances", "fru 1", "xxx 1", "Ses01F_impro01_F003", "Ses02F 1"):
        assert needle in summary


def test_not_iemocap_is_one_clear_error(tmp_path: Path):
    (tmp_path / "wav").mkdir()
    with pytest.raises(NotIemocapError, match=r"expected Session1 … Session5.*EmoEvaluation"):
        prepare_iemocap(tmp_path)


def test_cli_writes_manifest_labels_folds_and_summary(iemocap_root, tmp_path, capsys):
    out = tmp_path / "prepared"
    main(["prepare", "iemocap", "--root", str(iemocap_root), "--out", str(out)])

    printed = capsys.readouterr().out
    assert "per class:   angry 1, happy 2, neutral 1, sad 2" in printed
    rows = read_manifest(out)
    assert len(rows) == 6
    assert read_labels(out) == ["neutral", "angry", "sad", "happy"]
    assert (out / "folds_speaker.json").is_file() and (out / "folds_session.json").is_file()


def test_cli_rejects_a_root_that_is_not_iemocap(tmp_path):
    with pytest.raises(SystemExit, match="is not an IEMOCAP_full_release folder"):
        main(["prepare", "iemocap", "--root", str(tmp_path), "--out", str(tmp_path / "o")])


def test_valence_arousal_dominance_from_the_summary_line_scaled_to_unit(iemocap_root, tmp_path):
    out = tmp_path / "prepared"
    main(["prepare", "iemocap", "--root", str(iemocap_root), "--out", str(out)])

    rows = {r.utt_id: r for r in read_manifest(out)}
    for session, dialogs in IEMOCAP_TURNS.items():
        for turns in dialogs.values():
            for i, (utt, *_) in enumerate(turns):
                if utt in rows:
                    v, a, d = iemocap_vad(i, int(session[-1]))  # valence first on the line, 1-5
                    row = rows[utt]
                    assert (row.valence, row.arousal, row.dominance) == pytest.approx(
                        ((v - 1) / 4, (a - 1) / 4, (d - 1) / 4), abs=1e-4
                    )
    assert json.loads((out / "dimensions.json").read_text())["original_scale"] == [1.0, 5.0]
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["kept"] == 6 and report["dropped"] == {
        "audio file missing": 1,
        "label code fru outside the 4 classes": 1,
        "label code xxx outside the 4 classes": 1,
        "macOS '._' file": 4,
    }
