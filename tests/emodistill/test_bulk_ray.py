"""Bulk scoring on Ray Data (emodistill/bulk/ray.py) on a real local Ray cluster that this
module starts and stops: its rows are the embedded scorer's, error rows included; a run
killed with SIGKILL and resumed ends with each file once; file:// URIs go through pyarrow's
filesystems, the code s3:// and gs:// take (no object store can be reached here)."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from emodistill.bulk.formats import arrow_schema, read_rows
from emodistill.bulk.inputs import InputError, expand_inputs
from emodistill.bulk.ray import RayOptions, score_files_ray
from emodistill.bulk.rows import columns
from emodistill.bulk.score import BulkOptions, score_files
from tests.conftest import write_tone
from tests.emodistill import test_bulk
from tests.emodistill.test_bulk import PROBABILITY_TOLERANCE, by_file, processes_with

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow

# Fixtures of the embedded scorer's tests: the model, its corpus (clips of several lengths,
# rates and formats, one with segments, a truncated WAV, a text file) and its rows.
rec = test_bulk.rec
corpus = test_bulk.corpus
scored = test_bulk.scored
# In the environment of every process of the test cluster: none may outlive the module.
MARKER_VARIABLE = "EMODISTILL_TEST_RAY"
QUIET = RayOptions(device="cpu", progress=False)


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A local Ray of 2 CPUs, started in this process; its address for other drivers."""
    marker = f"ray-{os.getpid()}-{time.monotonic_ns()}"
    # Short: Ray's sockets live below it, and a socket's path has at most 107 bytes.
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    os.environ[MARKER_VARIABLE] = marker  # the cluster's processes, and theirs, inherit it
    try:
        ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp, logging_level=logging.ERROR)
    finally:
        del os.environ[MARKER_VARIABLE]  # not the drivers and pools the tests start
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        deadline = time.monotonic() + 10.0
        while processes_with(marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        shutil.rmtree(temp, ignore_errors=True)
        assert processes_with(marker) == [], "Ray processes outlived the test cluster"


def read_dataset(folder: Path | str) -> list[dict]:
    return pq.read_table(str(folder)).to_pylist()


def assert_same_rows(got: list[dict], expected: list[dict]) -> None:
    """The same files, each with the same rows in the same order (file row first); text and
    times exactly, probabilities within the tolerance (files shared other batches)."""
    got_files, expected_files = by_file(got), by_file(expected)
    assert sorted(got_files) == sorted(expected_files)
    runs = [r["path"] for i, r in enumerate(got) if i == 0 or got[i - 1]["path"] != r["path"]]
    assert len(runs) == len(got_files)  # each file's rows together
    for path, rows in expected_files.items():
        assert len(got_files[path]) == len(rows), path
        for row, want in zip(got_files[path], rows, strict=True):
            assert list(row) == list(want)
            for name, value in want.items():
                if name.startswith("p_") and value is not None:
                    assert abs(row[name] - value) <= PROBABILITY_TOLERANCE, (path, name)
                else:
                    assert row[name] == value, (path, name)


def test_rows_are_the_embedded_scorers(cluster, bundle, rec, corpus, scored, tmp_path):
    out = tmp_path / "ray.parquet"
    paths = [str(p) for p in corpus.values()]
    # Two actors, four files a scoring call: batches other than the embedded run's.
    options = RayOptions(actors=2, batch_files=4, device="cpu", progress=False)
    summary = score_files_ray(paths, str(bundle), str(out), options)
    assert (summary.files, summary.errors, summary.skipped) == (len(paths), 2, 0)
    assert summary.audio_s == pytest.approx(0.5 + 1.3 + 2.0 + 3.7 + 6.1 + 3.0 + 2.2 + 23.0)
    assert summary.rows == len(scored)
    rows = read_dataset(out)
    assert_same_rows(rows, scored)
    schema = arrow_schema(columns(rec.labels))
    for part in out.iterdir():
        assert pq.read_schema(part).equals(schema)
    again = score_files_ray(paths, str(bundle), str(out), RayOptions(resume=True, progress=False))
    assert (again.files, again.skipped, again.rows) == (0, len(paths), len(scored))


def test_file_uris_in_and_out(cluster, bundle, rec, corpus, scored, tmp_path):
    folder = corpus["flac44k"].parent  # sub/: clip.flac, clip.ogg, deeper/long.wav
    manifest = tmp_path / "lists" / "manifest.csv"
    manifest.parent.mkdir()
    manifest.write_text(f"path\n../gone.wav\n{corpus['text']}\n")
    paths = expand_inputs([f"file://{folder}/", f"file://{manifest}"])
    expected = [f"file://{corpus[n]}" for n in ("flac44k", "ogg", "long")]
    assert paths == [*expected, f"file://{tmp_path}/gone.wav", str(corpus["text"])]
    out = f"file://{tmp_path}/out.parquet"
    summary = score_files_ray(paths, str(bundle), out, QUIET)
    assert (summary.files, summary.errors) == (5, 2)
    ray_rows = read_dataset(tmp_path / "out.parquet")
    # The embedded scorer reads URIs through the same function.
    score_files(rec, paths, tmp_path / "embedded.jsonl", BulkOptions(workers=1, progress=False))
    assert_same_rows(ray_rows, list(read_rows(tmp_path / "embedded.jsonl")))
    rows = by_file(ray_rows)
    assert rows.pop(f"file://{tmp_path}/gone.wav")[0]["error"] == "no such file"
    for path, group in by_file(scored).items():
        uri = path if path == str(corpus["text"]) else f"file://{path}"
        if uri in rows:
            assert_same_rows([{**r, "path": path} for r in rows.pop(uri)], group)
    assert rows == {}
    for bad in ("http://example.org/a.wav", f"file://{folder}/*.ogg", f"file://{tmp_path}/no"):
        with pytest.raises(InputError):
            expand_inputs([bad])


def readable(part: Path) -> bool:
    try:
        pq.read_metadata(part)
        return True
    except (OSError, ValueError):  # no footer yet: being written, or cut short
        return False


def settled(folder: Path, quiet_s: float = 0.5, limit_s: float = 10.0) -> None:
    """Wait until nothing in `folder` has changed for `quiet_s`."""
    deadline = time.monotonic() + limit_s
    state = None
    while time.monotonic() < deadline:
        now = sorted((p.name, p.stat().st_size) for p in folder.iterdir())
        if now == state:
            return
        state = now
        time.sleep(quiet_s)
    pytest.fail(f"{folder} still changes {limit_s} s after its writer was killed")


def run_until_parts(command: list[str], folder: Path, parts: int) -> bool:
    """Run the CLI; SIGKILL it once `folder` holds `parts` whole parts. False if it finished
    first."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while process.poll() is None:
        if sum(map(readable, folder.glob("*.parquet"))) >= parts:
            process.send_signal(signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.01)
    assert process.returncode == 0, process.stderr.read() if process.stderr else ""
    return False


def test_a_killed_run_resumed_scores_each_file_once(cluster, bundle, rec, tmp_path):
    folder = tmp_path / "clips"
    paths = [str(write_tone(folder / f"c{i:02d}.wav", 1.0 + 0.02 * i)) for i in range(40)]
    out = tmp_path / "out.parquet"
    command = [sys.executable, "-m", "emodistill", "score", str(folder), "--model", str(bundle)]
    # One file a scoring call, so parts are written while the test watches.
    command += ["--out", str(out), "--ray", cluster, "--ray-batch-files", "1", "--device", "cpu"]
    for _ in range(3):  # the run may outpace the watcher; start again then
        if run_until_parts([*command, "--quiet"], out, 2):
            break
    else:
        pytest.fail("the run always finished before it could be killed")
    settled(out)  # the killed job's tasks end with it, a moment later
    whole = [part for part in sorted(out.glob("*.parquet")) if readable(part)]
    # A part cut short as a kill cuts one: it cannot be read, and its files are scored again.
    torn, *kept = whole
    torn.write_bytes(torn.read_bytes()[: torn.stat().st_size // 2])
    kept_files = sum(pq.read_metadata(part).num_rows for part in kept)  # a row a file here
    done = subprocess.run([*command, "--resume"], capture_output=True, text=True, check=True)
    assert f"{len(paths) - kept_files} files (0 errors, {kept_files} already done)" in done.stdout
    assert kept_files < len(paths) and torn not in out.iterdir()
    rows = read_dataset(out)
    assert Counter(r["path"] for r in rows) == Counter(paths)  # one row each: no segments
    uninterrupted = tmp_path / "uninterrupted.parquet"
    score_files(rec, paths, uninterrupted, BulkOptions(workers=1, progress=False))
    assert_same_rows(rows, list(read_rows(uninterrupted)))


def test_the_command_line_refuses_what_ray_cannot_do(bundle, corpus, tmp_path, monkeypatch):
    from emodistill.__main__ import main

    clip = str(corpus["short0"])
    base = ["python -m emodistill", "score", clip, "--model", str(bundle), "--ray", "--quiet"]
    for extra, says in [
        (["--out", str(tmp_path / "a.csv")], "Parquet folder"),
        (["--out", str(tmp_path / "a.parquet"), "--workers", "2"], "without --ray"),
        (["--out", str(tmp_path / "file.parquet")], "is a file"),
    ]:
        (tmp_path / "file.parquet").write_bytes(b"")
        monkeypatch.setattr(sys, "argv", [*base, *extra])
        with pytest.raises(SystemExit, match=says):
            main()
    monkeypatch.setattr(sys, "argv", [*base[:5], "--out", "s3://bucket/out.parquet"])
    with pytest.raises(SystemExit, match="needs --ray"):
        main()
