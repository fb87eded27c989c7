"""Which files a bulk run scores: the command line's paths, globs, directories and manifests,
expanded in the order given, each file once.

- a file: itself, audio or not (the decoder decides; a bad one becomes an error row);
- a glob (`*`, `?`, `[...]`; `**` crosses folders, as in `glob.glob(recursive=True)`): its
  matching files, sorted; quote it so that the shell leaves it to us;
- a directory: every file below it, sorted, hidden ones included;
- a `.csv` file: a manifest, whose `path` column names the files; a relative path is relative
  to the manifest's folder. A listed file that is missing is kept: it becomes an error row,
  so one stale line does not stop a long run.

A command-line argument that names nothing, and a glob or directory with no file, raise
InputError before any work: they are typos, and the run has not started yet.
Each file is named by its path as the run opens it (`os.path.normpath`, relative where the
argument was); that string is its identity in the output and for `--resume`.
Knows nothing of audio, models or output formats.
"""

from __future__ import annotations

import csv
import glob
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

MANIFEST_SUFFIX = ".csv"
MANIFEST_PATH_COLUMN = "path"
_GLOB_CHARACTERS = frozenset("*?[")


class InputError(ValueError):
    """An input argument that names no file, or a manifest that cannot be read."""


def _is_glob(argument: str) -> bool:
    return not _GLOB_CHARACTERS.isdisjoint(argument)


def _files_below(directory: str) -> list[str]:
    found = []
    for folder, subfolders, files in os.walk(directory):
        subfolders.sort()  # os.walk descends in this list's order
        found += [os.path.join(folder, name) for name in sorted(files)]
    return found


def manifest_paths(manifest: Path) -> list[str]:
    """The files a manifest CSV lists (its `path` column), relative ones joined to its folder."""
    try:
        with manifest.open(newline="", encoding="utf-8-sig") as f:  # -sig: Excel writes a BOM
            reader = csv.DictReader(f)
            if MANIFEST_PATH_COLUMN not in (reader.fieldnames or []):
                raise InputError(
                    f"manifest {manifest} has no {MANIFEST_PATH_COLUMN!r} column "
                    f"(its header: {reader.fieldnames})"
                )
            paths = []
            for row in reader:
                value = (row[MANIFEST_PATH_COLUMN] or "").strip()
                if not value:
                    raise InputError(f"manifest {manifest} line {reader.line_num}: empty path")
                paths.append(os.path.join(manifest.parent, value))  # an absolute value wins
            return paths
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InputError(f"cannot read manifest {manifest}: {err}") from err


def _expand_one(argument: str) -> list[str]:
    if os.path.isdir(argument):
        if not (found := _files_below(argument)):
            raise InputError(f"directory {argument} holds no file")
        return found
    if os.path.isfile(argument):
        if argument.lower().endswith(MANIFEST_SUFFIX):
            return manifest_paths(Path(argument))
        return [argument]
    if _is_glob(argument):
        matches = sorted(glob.glob(argument, recursive=True))
        if not (found := [m for m in matches if os.path.isfile(m)]):
            raise InputError(f"glob {argument!r} matches no file")
        return found
    raise InputError(f"no such file or directory: {argument}")


def _unique(paths: Iterator[str]) -> list[str]:
    return list(dict.fromkeys(paths))  # dicts keep the first occurrence's order


def expand_inputs(arguments: Sequence[str]) -> list[str]:
    """Every file the arguments name, in order, each once; see the module doc."""
    return _unique(os.path.normpath(p) for argument in arguments for p in _expand_one(argument))
