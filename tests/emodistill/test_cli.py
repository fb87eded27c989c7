"""`emodistill COMMAND`: every job answers --help under its own name; the old entries still work."""

from __future__ import annotations

import subprocess
import sys

import pytest

from emodistill.cli import JOBS, main


def test_the_command_lists_every_job(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for name in JOBS:
        assert f"\n    {name}" in out


@pytest.mark.parametrize("name", sorted(JOBS))
def test_each_job_has_help_under_its_own_name(name, capsys, monkeypatch):
    monkeypatch.chdir(__import__("pathlib").Path(__file__).parents[2])  # bench/ runs from here
    with pytest.raises(SystemExit) as done:
        main([name, "--help"])
    assert done.value.code == 0
    usage = capsys.readouterr().out
    assert usage.startswith(f"usage: emodistill {name}")


def test_device_means_the_same_everywhere(capsys):
    for name in ("serve", "score", "train", "demo"):
        with pytest.raises(SystemExit):
            main([name, "--device", "gpu0"])
        err = capsys.readouterr().err
        assert "invalid choice: 'gpu0' (choose from 'auto', 'cpu', 'cuda')" in err


def test_an_unknown_job_is_one_line_naming_the_choices(capsys):
    with pytest.raises(SystemExit) as done:
        main(["nope"])
    assert done.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("module", ["service", "training", "export", "emodistill"])
def test_the_python_m_entries_still_answer(module):
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: ")
