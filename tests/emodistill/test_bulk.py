"""Bulk scoring answers what `Recognizer.predict` answers, file by file; bad files are rows;
every format round-trips; `--resume` after SIGKILL ends with each file once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import emodistill
from emodistill.bulk import decode as bulk_decode
from emodistill.bulk import score as bulk_score
from emodistill.bulk.formats import FORMATS, output_columns, read_rows, write_rows
from emodistill.bulk.inputs import InputError, expand_inputs
from emodistill.bulk.journal import Journal, ResumeError, prepare
from emodistill.bulk.rows import columns
from emodistill.bulk.score import BulkOptions, score_files
from emodistill.errors import AudioError
from tests.conftest import tone, write_tone

# Rows of a file are batched with other files' windows here, alone in `predict`: the
# batch-invariant graph agrees to float32 rounding, far inside this.
PROBABILITY_TOLERANCE = 1e-6
QUIET = BulkOptions(workers=2, progress=False)


def write_clip(path: Path, seconds: float, rate_hz: int = 16_000, freq_hz: float = 440.0) -> Path:
    """A tone with a little noise, so that clips differ in more than their length."""
    rng = np.random.default_rng(int(seconds * 1000 + freq_hz))
    samples = tone(seconds, rate_hz, freq_hz) + 0.05 * rng.standard_normal(int(seconds * rate_hz))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), samples.astype(np.float32), rate_hz)
    return path


@pytest.fixture(scope="module")
def rec(bundle):
    return emodistill.load(bundle, device="cpu")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    """Clips of several lengths, rates and formats (one long enough for segments), a
    truncated WAV and a text file."""
    root = tmp_path_factory.mktemp("corpus")
    files = {
        f"short{i}": write_clip(root / f"short{i}.wav", s, freq_hz=f)
        for i, (s, f) in enumerate([(0.5, 200), (1.3, 300), (2.0, 250), (3.7, 400), (6.1, 350)])
    }
    files["flac44k"] = write_clip(root / "sub" / "clip.flac", 3.0, rate_hz=44_100)
    files["ogg"] = write_clip(root / "sub" / "clip.ogg", 2.2, freq_hz=500)
    files["long"] = write_clip(root / "sub" / "deeper" / "long.wav", 23.0, freq_hz=260)
    whole = files["short3"].read_bytes()
    (root / "truncated.wav").write_bytes(whole[: len(whole) // 3])
    files["truncated"] = root / "truncated.wav"
    (root / "notes.txt").write_text("not audio at all\n")
    files["text"] = root / "notes.txt"
    return files


@pytest.fixture(scope="module")
def scored(rec, corpus, tmp_path_factory) -> list[dict]:
    """The corpus scored into JSONL, in chunks of ~8 s so that files share batches."""
    out = tmp_path_factory.mktemp("scored") / "out.jsonl"
    paths = [str(p) for p in corpus.values()]
    options = BulkOptions(workers=2, chunk_audio_s=8.0, progress=False)
    summary = score_files(rec, paths, out, options)
    assert (summary.files, summary.errors, summary.skipped) == (len(paths), 2, 0)
    assert summary.audio_s == pytest.approx(0.5 + 1.3 + 2.0 + 3.7 + 6.1 + 3.0 + 2.2 + 23.0)
    assert not Journal(out).path.exists()
    return list(read_rows(out))


def by_file(rows: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["path"], []).append(row)
    return groups


def assert_close(row: dict, answer: dict, labels: list[str]) -> None:
    assert row["label"] == answer["label"]
    diff = max(abs(row[f"p_{k}"] - answer["probabilities"][k]) for k in labels)
    assert diff <= PROBABILITY_TOLERANCE


def test_rows_are_what_predict_answers_for_each_file(rec, corpus, scored):
    groups = by_file(scored)
    assert list(groups) == [str(p) for p in corpus.values()]  # input order, each once
    for name, path in corpus.items():
        file_row, *segments = groups[str(path)]
        assert file_row["kind"] == "file"
        if name in ("truncated", "text"):
            with pytest.raises(AudioError) as err:
                rec.predict(path)
            assert file_row["error"] == str(err.value) and segments == []
            assert {k for k, v in file_row.items() if v is not None} == {"path", "kind", "error"}
            continue
        answer = rec.predict(path).model_dump()
        assert file_row["error"] is None
        assert (file_row["start_s"], file_row["end_s"]) == (0.0, answer["duration_s"])
        assert file_row["duration_s"] == answer["duration_s"]
        assert file_row["speech_s"] == answer.get("speech_s")
        assert_close(file_row, answer, rec.labels)
        expected = answer.get("segments") or []
        assert len(segments) == len(expected) and (name == "long") == bool(expected)
        for row, segment in zip(segments, expected, strict=True):
            assert row["kind"] == "segment" and row["duration_s"] is None
            assert (row["start_s"], row["end_s"]) == (segment["start_s"], segment["end_s"])
            assert_close(row, segment, rec.labels)


class _NoProcesses:
    def __init__(self, *args, **kwargs):
        raise AssertionError("a short run spawned decoding processes")


@pytest.mark.parametrize("max_files", [64, 3])
def test_a_short_run_decodes_in_this_process_with_the_same_rows(
    rec, corpus, scored, tmp_path, monkeypatch, max_files
):
    """workers=0 (the default): a run of at most IN_PROCESS_MAX_FILES files decodes in threads,
    spawning nothing (the processes' start cost more than such a run), with the rows that the
    worker processes gave; a longer run still decodes in processes."""
    monkeypatch.setattr(bulk_score, "IN_PROCESS_MAX_FILES", max_files)
    paths = [str(p) for p in corpus.values()]
    spawned = []
    if max_files >= len(paths):
        monkeypatch.setattr(bulk_decode, "ProcessPoolExecutor", _NoProcesses)
    else:
        real = bulk_decode.ProcessPoolExecutor

        def counted(*args, **kwargs):
            spawned.append(args)
            return real(*args, **kwargs)

        monkeypatch.setattr(bulk_decode, "ProcessPoolExecutor", counted)
    out = tmp_path / "out.jsonl"
    options = BulkOptions(chunk_audio_s=8.0, progress=False)
    assert score_files(rec, paths, out, options).errors == 2
    assert list(read_rows(out)) == scored  # the same chunks, so the same batches: exactly
    assert bool(spawned) == (max_files < len(paths))


@pytest.mark.parametrize("suffix", FORMATS)
def test_each_format_round_trips_exactly(rec, scored, tmp_path, suffix):
    out = tmp_path / f"out{suffix}"
    names = columns(rec.labels)
    assert write_rows(out, names, iter(scored)) == len(scored)
    assert output_columns(out) == names
    assert list(read_rows(out)) == scored  # floats, nulls and text exactly
    assert not (tmp_path / f"out{suffix}.partial").exists()


def test_too_long_files_are_error_rows(bundle, corpus, tmp_path):
    rec = emodistill.load(bundle, device="cpu", max_audio_s=10.0)
    paths = [str(corpus["short1"]), str(corpus["long"])]
    score_files(rec, paths, tmp_path / "out.csv", QUIET)
    rows = list(read_rows(tmp_path / "out.csv"))
    assert [r["error"] is None for r in rows] == [True, False]
    assert rows[1]["error"].startswith("audio is 23.00 s long")


def test_globs_directories_and_manifests(corpus, tmp_path, monkeypatch):
    root = corpus["short0"].parent
    monkeypatch.chdir(root)
    assert expand_inputs(["sub/**/*.wav"]) == [os.path.join("sub", "deeper", "long.wav")]
    assert expand_inputs(["sub"]) == [
        os.path.join("sub", "clip.flac"),
        os.path.join("sub", "clip.ogg"),
        os.path.join("sub", "deeper", "long.wav"),
    ]
    assert expand_inputs(["short1.wav", "short*.wav", "./short1.wav"]) == [
        f"short{i}.wav" for i in (1, 0, 2, 3, 4)
    ]  # the order given, each file once
    manifest = tmp_path / "lists" / "manifest.csv"
    manifest.parent.mkdir()
    rows = ["path,label", f"{root / 'short2.wav'},x", "../gone.wav,y", "sub/clip.ogg,z"]
    manifest.write_text("\n".join(rows) + "\n")
    (manifest.parent / "sub").mkdir()
    assert expand_inputs([str(manifest)]) == [
        str(root / "short2.wav"),  # absolute: as written
        str(tmp_path / "gone.wav"),  # missing: kept, it becomes an error row
        str(manifest.parent / "sub" / "clip.ogg"),  # relative to the manifest
    ]
    (tmp_path / "bad.csv").write_text("file\nshort1.wav\n")
    for bad in ("nothing*.wav", "missing.wav", str(tmp_path / "bad.csv")):
        with pytest.raises(InputError):
            expand_inputs([bad])


def test_a_torn_journal_is_cut_and_its_last_file_scored_again(rec, corpus, tmp_path):
    out = tmp_path / "out.parquet"
    names = columns(rec.labels)
    paths = [str(corpus[n]) for n in ("short0", "short1", "short2")]
    journal, _ = prepare(out, names, resume=False)
    first = [{**dict.fromkeys(names), "path": paths[0], "kind": "file", "error": "x"}]
    journal.append([first])
    whole = journal.path.stat().st_size
    with journal.path.open("a") as f:
        f.write(json.dumps([{"path": paths[1]}])[:-5])  # killed in the middle of a line
    assert prepare(out, names, resume=True)[1] == {paths[0]}
    assert journal.path.stat().st_size == whole
    summary = score_files(rec, paths, out, BulkOptions(workers=1, resume=True, progress=False))
    assert (summary.files, summary.skipped) == (2, 1)
    assert Counter(r["path"] for r in read_rows(out) if r["kind"] == "file") == Counter(paths)
    with pytest.raises(ResumeError):  # the output of another label set is not continued
        prepare(out, ["path", "kind", "label", "p_other", "error"], resume=True)


def test_resume_after_the_output_was_written_but_the_journal_not_yet_deleted(
    rec, corpus, tmp_path, monkeypatch
):
    out = tmp_path / "out.csv"
    paths = [str(corpus[n]) for n in ("short0", "long", "text")]
    with monkeypatch.context() as m:
        m.setattr(Journal, "remove", lambda self: None)  # killed just after the rename
        score_files(rec, paths[:2], out, QUIET)
    assert Journal(out).path.exists()
    summary = score_files(rec, paths, out, BulkOptions(workers=1, resume=True, progress=False))
    assert (summary.files, summary.skipped, summary.errors) == (1, 2, 1)
    rows = list(read_rows(out))
    assert Counter(r["path"] for r in rows if r["kind"] == "file") == Counter(paths)
    assert sum(r["kind"] == "segment" for r in rows) == 4  # the long file's, once


def journal_files(journal: Path) -> int:
    """Files the journal holds whole (lines after the header)."""
    try:
        return max(0, journal.read_bytes().count(b"\n") - 1)
    except FileNotFoundError:
        return 0


def processes_with(marker: str) -> list[int]:
    """Processes whose environment holds `marker` (Linux's /proc)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker.encode() in environ.read_bytes():
                found.append(int(environ.parent.name))
        except OSError:  # gone, or not ours
            continue
    return found


def run_until_killed(command: list[str], journal: Path, after_files: int, marker: str) -> bool:
    """Run the CLI; SIGKILL it once the journal holds `after_files` more files. False if it
    finished first."""
    start_files = journal_files(journal)
    env = {**os.environ, "EMODISTILL_TEST_RUN": marker}  # its workers inherit it
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    while process.poll() is None:
        if journal_files(journal) >= start_files + after_files:
            process.send_signal(signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.002)
    assert process.returncode == 0, process.stderr.read() if process.stderr else ""
    return False


def test_resume_after_sigkill_scores_each_file_once(bundle, rec, tmp_path):
    folder = tmp_path / "clips"
    paths = [str(write_tone(folder / f"c{i:02d}.wav", 1.0 + 0.02 * i)) for i in range(40)]
    out = tmp_path / "out.parquet"
    command = [sys.executable, "-m", "emodistill", "score", str(folder), "--model", str(bundle)]
    # One file per chunk, so the journal grows file by file while the test watches it.
    command += ["--out", str(out), "--workers", "1", "--chunk-audio-s", "1", "--device", "cpu"]
    marker = f"bulk-kill-{os.getpid()}-{time.monotonic_ns()}"
    for _ in range(3):  # the run may outpace the watcher; start again then
        out.unlink(missing_ok=True)
        if run_until_killed([*command, "--quiet"], Journal(out).path, 5, marker):
            break
    else:
        pytest.fail("the run always finished before it could be killed")
    if Path("/proc/self/environ").exists():  # the killed run's workers leave with it
        deadline = time.monotonic() + 5.0
        while processes_with(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert processes_with(marker) == []
    run_until_killed([*command, "--quiet", "--resume"], Journal(out).path, 5, marker)
    done = subprocess.run(
        [*command, "--quiet", "--resume"], capture_output=True, text=True, check=True
    )
    assert "files/s" in done.stdout and "audio-s/s" in done.stdout and "%|" not in done.stderr
    rows = list(read_rows(out))
    assert Counter(r["path"] for r in rows) == Counter(paths)  # one row each: no segments
    uninterrupted = tmp_path / "uninterrupted.parquet"
    options = BulkOptions(workers=1, chunk_audio_s=1.0, progress=False)
    score_files(rec, paths, uninterrupted, options)
    assert sorted(rows, key=lambda r: r["path"]) == list(read_rows(uninterrupted))
    assert not Journal(out).path.exists()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_bundle_with_dimensions_gets_their_columns(bundle_with_dimensions, corpus, tmp_path, fmt):
    """arousal, valence, dominance after the probabilities, per file and per segment, equal to
    the Python API's answer; a bundle without them has no such columns (the other tests)."""
    with_dims = emodistill.load(bundle_with_dimensions, device="cpu")
    names = ["arousal", "valence", "dominance"]
    assert with_dims.dimensions == names
    out = tmp_path / f"out.{fmt}"
    paths = [str(corpus["short1"]), str(corpus["long"]), str(corpus["text"])]
    score_files(with_dims, paths, out, BulkOptions(progress=False))
    assert output_columns(out) == columns(with_dims.labels, names)
    assert output_columns(out)[-4:] == [*names, "error"]
    groups = by_file(list(read_rows(out)))
    for path in paths[:2]:
        file_row, *segments = groups[path]
        answer = with_dims.predict(path).model_dump()
        for name in names:
            assert file_row[name] == pytest.approx(answer["dimensions"][name], abs=1e-5)
        for row, seg in zip(segments, answer["segments"] or [], strict=True):
            assert row["arousal"] == pytest.approx(seg["dimensions"]["arousal"], abs=1e-5)
    assert len(groups[paths[1]]) > 1  # the long file has its segments
    error_row = groups[paths[2]][0]
    assert error_row["error"] and all(error_row[n] is None for n in names)


def test_a_bundle_without_dimensions_has_no_such_columns(rec):
    assert rec.dimensions == [] and "arousal" not in columns(rec.labels, rec.dimensions)


def test_a_dimensions_only_bundle_has_no_category_columns(dimensions_only_bundle, corpus, tmp_path):
    rec = emodistill.load(dimensions_only_bundle, device="cpu")
    out = tmp_path / "out.csv"
    paths = [str(corpus["short1"]), str(corpus["text"])]
    score_files(rec, paths, out, BulkOptions(progress=False))
    names = ["arousal", "valence", "dominance"]
    assert output_columns(out) == [
        "path", "kind", "start_s", "end_s", "duration_s", "speech_s", *names, "error"
    ]  # fmt: skip
    groups = by_file(list(read_rows(out)))
    answer = rec.predict(paths[0])
    assert answer.dimensions is not None
    for name in names:
        assert groups[paths[0]][0][name] == pytest.approx(
            getattr(answer.dimensions, name), abs=1e-5
        )
    assert groups[paths[1]][0]["error"]
