"""The supervisor's children die with it, however it ends, and its run directory goes with
it or at the next start (service/children.py), over real processes and signals."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bench.service_load import process_tree
from service.children import remove_stale_run_dirs
from tests.service.test_processes import _free_port, simulated, starting, wait_for

pytestmark = pytest.mark.slow


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead: it waits only for its (gone) parent's reaping.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def _refused(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_children_die_with_a_killed_supervisor_and_free_the_port(bundle, tmp_path):
    env = {"TMPDIR": str(tmp_path)}
    port = _free_port()
    with starting(simulated(bundle, 1, "--workers", "2"), env, port) as first:
        wait_for(first.ready, 60)
        children = process_tree(first.process.pid)[1:]
        assert len(children) >= 3  # two workers and the model process
        first.process.kill()  # kill -9: no handler, no cleanup
        first.process.wait()
        wait_for(lambda: not any(_alive(pid) for pid in children), 10)
        assert _refused(port)  # nothing serves on, or holds, the port
    left = list(tmp_path.glob("emodistill-*"))
    assert len(left) == 1  # its run directory: nobody could remove it
    assert remove_stale_run_dirs(tmp_path) == left  # as the next supervisor does at start
    # (test_processes' start-up test sees a supervisor do it.)


def test_only_dead_owners_run_dirs_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"emodistill-{dead.pid}-abc"
    live = tmp_path / f"emodistill-{os.getpid()}-abc"
    other = tmp_path / "emodistill-bench-abc"
    for path in (stale, live, other):
        path.mkdir()
        (path / "model.sock").write_text("")
    assert remove_stale_run_dirs(tmp_path) == [stale]
    assert live.exists() and other.exists() and not stale.exists()
