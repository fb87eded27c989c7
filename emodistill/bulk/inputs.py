"""Which files a bulk run scores: the command line's paths, globs, directories and manifests,
expanded in the order given, each file once.

- a file: itself, audio or not (the decoder decides; a bad one becomes an error row);
- a glob (`*`, `?`, `[...]`; `**` crosses folders, as in `glob.glob(recursive=True)`): its
  matching files, sorted; quote it so that the shell leaves it to us;
- a directory: every file below it, sorted, hidden ones included;
- a `.csv` file: a manifest, whose `path` column names the files; a relative path is relative
  to the manifest's folder. A listed file that is missing is kept: it becomes an error row,
  so one stale line does not stop a long run;
- a URI (`s3://bucket/key`, `gs://...`, `file:///...`), read through pyarrow's filesystems
  (the `bulk` extra): an object, every object below a prefix (sorted), or a manifest `.csv`
  (its relative paths relative to its prefix). No globs: object stores have no folders to
  walk cheaply, and a prefix or a manifest says the same.

A command-line argument that names nothing, and a glob or directory with no file, raise
InputError before any work: they are typos, and the run has not started yet.
Each file is named by its path as the run opens it (`os.path.normpath`, relative where the
argument was; a URI with its path normalised the same way); that string is its identity in
the output and for `--resume`, and `read_input` reads it. Knows nothing of audio, models or
output formats.
"""

from __future__ import annotations

import csv
import functools
import glob
import io
import os
import posixpath
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO
from urllib.parse import SplitResult, urlsplit

if TYPE_CHECKING:
    from pyarrow.fs import FileSystem

MANIFEST_SUFFIX = ".csv"
MANIFEST_PATH_COLUMN = "path"
_GLOB_CHARACTERS = frozenset("*?[")
# pyarrow's filesystems that a URI may name: S3, Google Cloud Storage, and the local one.
URI_SCHEMES = ("s3", "gs", "gcs", "file")


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


def is_uri(path: str) -> bool:
    return "://" in path


@functools.cache
def _filesystem(root: str) -> FileSystem:
    """One filesystem per bucket and process: an S3 client resolves its region once."""
    from pyarrow.fs import FileSystem

    try:
        return FileSystem.from_uri(root)[0]
    except (OSError, ValueError) as err:  # unreachable, unknown: pyarrow's errors
        raise InputError(f"cannot open {root}: {err}") from err


def _split(uri: str) -> SplitResult:
    parts = urlsplit(uri)
    if parts.scheme not in URI_SCHEMES:
        raise InputError(f"{uri}: URIs must start with one of {', '.join(URI_SCHEMES)}://")
    return parts


def locate(uri: str) -> tuple[FileSystem, str]:
    """The filesystem of a URI or local path, and the path there (absolute; an object
    store's starts with the bucket)."""
    if not is_uri(uri):
        return _filesystem("file:///"), os.path.abspath(uri)
    parts = _split(uri)
    query = f"?{parts.query}" if parts.query else ""  # e.g. ?region=...: the client's options
    filesystem = _filesystem(f"{parts.scheme}://{parts.netloc}/{query}")
    return filesystem, (parts.netloc if parts.scheme != "file" else "") + parts.path


def _uri(like: SplitResult, path: str) -> str:
    """A path of `like`'s filesystem as a URI (the scheme and options of `like`)."""
    path = posixpath.normpath(path)
    query = f"?{like.query}" if like.query else ""
    return f"{like.scheme}://{path}{query}"  # file:// + /abs/path: three slashes


def read_input(path: str) -> bytes:
    """The bytes of an input file, local or a URI; OSError (FileNotFoundError) as `open`."""
    if not is_uri(path):
        return Path(path).read_bytes()
    filesystem, inner = locate(path)
    with filesystem.open_input_file(inner) as f:
        return bytes(f.read())


def _manifest_values(f: TextIO, manifest: str) -> list[str]:
    reader = csv.DictReader(f)
    if MANIFEST_PATH_COLUMN not in (reader.fieldnames or []):
        raise InputError(
            f"manifest {manifest} has no {MANIFEST_PATH_COLUMN!r} column "
            f"(its header: {reader.fieldnames})"
        )
    values = []
    for row in reader:
        if not (value := (row[MANIFEST_PATH_COLUMN] or "").strip()):
            raise InputError(f"manifest {manifest} line {reader.line_num}: empty path")
        values.append(value)
    return values


def manifest_paths(manifest: Path | str) -> list[str]:
    """The files a manifest CSV lists (its `path` column), relative ones joined to its folder."""
    where = str(manifest)
    try:
        text = read_input(where).decode("utf-8-sig")  # -sig: Excel writes a BOM
        values = _manifest_values(io.StringIO(text, newline=""), where)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InputError(f"cannot read manifest {manifest}: {err}") from err
    if not is_uri(where):
        return [os.path.join(os.path.dirname(where), v) for v in values]  # an absolute one wins
    parts = _split(where)
    folder = posixpath.dirname(locate(where)[1])
    return [
        v if is_uri(v) or os.path.isabs(v) else _uri(parts, posixpath.join(folder, v))
        for v in values
    ]


def _expand_uri(argument: str) -> list[str]:
    from pyarrow.fs import FileSelector, FileType

    parts = _split(argument)
    if _is_glob(parts.path):
        raise InputError(f"{argument}: no globs in URIs; name a prefix or a manifest")
    filesystem, path = locate(argument)
    try:
        info = filesystem.get_file_info(path.rstrip("/") or path)
        if info.type == FileType.File:
            is_manifest = path.lower().endswith(MANIFEST_SUFFIX)
            return manifest_paths(argument) if is_manifest else [_uri(parts, path)]
        if info.type != FileType.Directory:
            raise InputError(f"no such object or prefix: {argument}")
        below = filesystem.get_file_info(FileSelector(info.path, recursive=True))
    except OSError as err:
        raise InputError(f"cannot list {argument}: {err}") from err
    if not (found := sorted(f.path for f in below if f.type == FileType.File)):
        raise InputError(f"prefix {argument} holds no object")
    return [_uri(parts, p) for p in found]


def _expand_one(argument: str) -> list[str]:
    if is_uri(argument):
        return _expand_uri(argument)
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
    found = (p for argument in arguments for p in _expand_one(argument))
    return _unique(p if is_uri(p) else os.path.normpath(p) for p in found)
