"""User CSV -> manifest: validation with line numbers, labels read from the data."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import write_tone
from training.cli import main
from training.corpus.manifest import (
    BASE_COLUMNS,
    MANIFEST_COLUMNS,
    ManifestError,
    RatingOrigin,
    read_dimension_scale,
    read_labels,
    read_manifest,
    validate_user_csv,
    write_manifest,
)


def test_valid_csv_with_relative_paths(tmp_path: Path):
    for name in ("a", "b", "c"):
        write_tone(tmp_path / "clips" / f"{name}.wav", 0.25)
    csv = tmp_path / "corpus.csv"
    csv.write_text(
        "path,label,speaker,text\n"
        "clips/a.wav,calm,spk1,hello there\n"
        "clips/b.wav,fearful,spk2,\n"
        f"{tmp_path / 'clips' / 'c.wav'},calm,spk2,absolute path\n"
    )

    rows, labels = validate_user_csv(csv)

    assert labels == ["calm", "fearful"]  # from the data, sorted
    assert [r.utt_id for r in rows] == ["a", "b", "c"]
    assert rows[0].path == str((tmp_path / "clips" / "a.wav").resolve())
    assert rows[0].text == "hello there" and rows[1].text == "" and rows[0].session == ""
    assert rows[2].duration_s == pytest.approx(0.25, abs=1e-4)


def test_every_bad_row_is_named_by_its_line(tmp_path: Path):
    write_tone(tmp_path / "ok.wav")
    write_tone(tmp_path / "ok2.wav")
    (tmp_path / "junk.wav").write_bytes(b"not a wav")
    csv = tmp_path / "corpus.csv"
    csv.write_text(
        "path,label,speaker\n"
        "ok.wav,happy,s1\n"  # line 2: fine
        "gone.wav,happy,s1\n"  # line 3: missing file
        "ok2.wav,,s1\n"  # line 4: empty label
        "junk.wav,sad,s2\n"  # line 5: not audio
        "ok.wav,sad,s2\n"  # line 6: same utt_id as line 2
        "ok2.wav,sad\n"  # line 7: too few fields
    )

    with pytest.raises(ManifestError) as err:
        validate_user_csv(csv)

    message = str(err.value)
    assert "5 bad row(s)" in message
    assert "line 3: audio file not found" in message
    assert "line 4: empty 'label'" in message
    assert "line 5: not readable audio" in message
    assert "line 6: utt_id 'ok' repeats line 2" in message
    assert "line 7: " in message
    assert "line 2:" not in message


def test_bad_header_is_line_one(tmp_path: Path):
    csv = tmp_path / "c.csv"
    csv.write_text("file,emotion,speaker\nx.wav,a,b\n")
    with pytest.raises(ManifestError, match=r"line 1: .*missing \['path', 'label'\].*unknown"):
        validate_user_csv(csv)


def test_a_single_label_is_refused(tmp_path: Path):
    write_tone(tmp_path / "a.wav")
    csv = tmp_path / "c.csv"
    csv.write_text("path,label,speaker\na.wav,happy,s1\n")
    with pytest.raises(ManifestError, match="one label only"):
        validate_user_csv(csv)


def test_write_then_read_round_trips(tmp_path: Path):
    write_tone(tmp_path / "a.wav")
    write_tone(tmp_path / "b.wav")
    csv = tmp_path / "c.csv"
    csv.write_text("path,label,speaker,utt_id,session\na.wav,x,s1,u1,A\nb.wav,y,s2,u2,B\n")
    rows, labels = validate_user_csv(csv)
    out = write_manifest(rows, tmp_path / "m", labels)
    back = read_manifest(out)
    assert [r.utt_id for r in back] == ["u1", "u2"] and back[1].session == "B"
    assert back[0].duration_s == pytest.approx(rows[0].duration_s, abs=1e-4)
    assert read_labels(tmp_path / "m") == ["x", "y"]
    assert out.read_text().splitlines()[0] == ",".join(MANIFEST_COLUMNS)


def test_cli_prepare_manifest(tmp_path: Path, capsys):
    for i in range(4):
        write_tone(tmp_path / f"{i}.wav")
    csv = tmp_path / "c.csv"
    csv.write_text("path,label,speaker\n0.wav,a,s1\n1.wav,b,s2\n2.wav,a,s3\n3.wav,b,s3\n")
    main(["prepare", "manifest", "--csv", str(csv), "--out", str(tmp_path / "out")])
    printed = capsys.readouterr().out
    assert "4 utterances, 3 speakers" in printed and "3 leave-one-speaker-out folds" in printed
    assert not (tmp_path / "out" / "folds_session.json").exists()  # no session column


def test_cli_bad_csv_exits_with_the_errors(tmp_path: Path):
    csv = tmp_path / "c.csv"
    csv.write_text("path,label,speaker\nmissing.wav,a,s1\n")
    with pytest.raises(SystemExit, match="line 2: audio file not found"):
        main(["prepare", "manifest", "--csv", str(csv), "--out", str(tmp_path / "o")])


def test_a_manifest_without_the_optional_columns_still_reads(tmp_path: Path):
    """Prepared folders written before partitions and A/V/D existed stay usable."""
    write_tone(tmp_path / "a.wav")
    path = tmp_path / "manifest.csv"
    path.write_text(
        "utt_id,path,label,speaker,session,text,duration_s\n"
        f"a,{tmp_path / 'a.wav'},happy,s1,,hi,0.5000\n"
    )
    (row,) = read_manifest(path)
    assert (row.partition, row.arousal, row.valence, row.dominance) == ("", None, None, None)


def test_dimensions_beside_labels_or_alone_scaled_from_the_given_range(tmp_path: Path):
    for i in range(4):
        write_tone(tmp_path / f"{i}.wav")
    csv = tmp_path / "c.csv"
    csv.write_text(
        "path,label,speaker,arousal,valence,dominance\n"
        "0.wav,a,s1,1,7,4\n"  # both
        "1.wav,b,s2,,,\n"  # a label only
        "2.wav,,s3,2.5,5.5,7\n"  # dimensions only
        "3.wav,a,s3,7,1,1\n"
    )
    rows, labels = validate_user_csv(csv, dimension_range=(1.0, 7.0))
    assert labels == ["a", "b"]
    assert [r.dimensions for r in rows] == [
        pytest.approx((0.0, 1.0, 0.5)),
        None,
        pytest.approx((0.25, 0.75, 1.0)),
        pytest.approx((1.0, 0.0, 0.0)),
    ]
    assert rows[2].label == ""
    out = tmp_path / "m"
    write_manifest(rows, out, labels, RatingOrigin(source="c.csv 1-7"))
    back = read_manifest(out)
    assert [r.dimensions for r in back] == [r.dimensions for r in rows]
    scale = read_dimension_scale(out)
    assert scale is not None and scale.rated == 3 and scale.source == "c.csv 1-7"


def test_a_corpus_rated_only_in_dimensions_has_no_labels(tmp_path: Path):
    for i in range(2):
        write_tone(tmp_path / f"{i}.wav")
    csv = tmp_path / "c.csv"
    csv.write_text("path,speaker,arousal,valence,dominance\n0.wav,s1,0.1,0.2,0.3\n1.wav,s2,1,0,1\n")
    rows, labels = validate_user_csv(csv)
    assert labels == [] and rows[0].dimensions == pytest.approx((0.1, 0.2, 0.3))


def test_bad_dimensions_name_their_line(tmp_path: Path):
    for i in range(3):
        write_tone(tmp_path / f"{i}.wav")
    csv = tmp_path / "c.csv"
    csv.write_text(
        "path,label,speaker,arousal,valence,dominance\n"
        "0.wav,a,s1,0.5,,0.5\n"  # line 2: partial
        "1.wav,b,s2,1.5,0,0\n"  # line 3: outside [0, 1]
        "2.wav,a,s2,x,0,0\n"  # line 4: not a number
    )
    with pytest.raises(ManifestError) as caught:
        validate_user_csv(csv)
    message = str(caught.value)
    assert "line 2: give all of" in message
    assert "line 3: arousal 1.5 outside the range [0, 1]" in message
    assert "line 4: arousal 'x' is not a number" in message


def test_a_manifest_from_before_the_dimensions_still_reads(tmp_path: Path):
    write_tone(tmp_path / "a.wav")
    (tmp_path / "manifest.csv").write_text(
        ",".join(BASE_COLUMNS) + f"\nu1,{tmp_path / 'a.wav'},x,s1,S,hi,0.5000\n"
    )
    [row] = read_manifest(tmp_path)
    assert row.label == "x" and row.dimensions is None and row.duration_s == 0.5
