"""A bulk run's output file in the format its suffix names: `.parquet`, `.csv` or `.jsonl`.

Rows stream in and out (a batch of BATCH_ROWS at a time, for Parquet), so that an output of
millions of rows is never held whole. Floats round-trip exactly in every format (CSV and
JSON write Python's shortest repr); null is an empty CSV field, JSON null, Parquet null.
`write_rows` writes beside the target and renames it over, so the output is always a whole,
valid file: the previous one, or the new one.

Knows the columns' types (rows.TEXT_COLUMNS) but not what they mean. pyarrow is
imported only for Parquet.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import itertools
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from emodistill.bulk.rows import TEXT_COLUMNS, Row

FORMATS = (".parquet", ".csv", ".jsonl")
# Rows per Parquet row group and per conversion: about a megabyte of Python objects.
BATCH_ROWS = 4096


class FormatError(ValueError):
    """An output path whose format is unknown, or an existing output that cannot be read."""


def check_format(path: Path) -> None:
    if path.suffix.lower() not in FORMATS:
        raise FormatError(f"{path}: the output's suffix must be one of {', '.join(FORMATS)}")
    # pyarrow is the `bulk` extra: the service image has no use for it.
    if path.suffix.lower() == ".parquet" and importlib.util.find_spec("pyarrow") is None:
        raise FormatError(
            f"{path}: Parquet needs pyarrow (pip install 'emodistill[bulk]'), or write .csv/.jsonl"
        )


def partial_path(path: Path) -> Path:
    """Where `write_rows` writes before renaming over `path`."""
    return path.with_name(path.name + ".partial")


def arrow_schema(names: Sequence[str]) -> Any:
    """The output's Arrow types: text or float64 (pyarrow.Schema)."""
    import pyarrow as pa

    return pa.schema(
        [(name, pa.string() if name in TEXT_COLUMNS else pa.float64()) for name in names]
    )


def _write_parquet(f: Any, names: Sequence[str], rows: Iterator[Row]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = arrow_schema(names)
    with pq.ParquetWriter(f, schema) as writer:
        while batch := list(itertools.islice(rows, BATCH_ROWS)):
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))


def _write_csv(f: Any, names: Sequence[str], rows: Iterator[Row]) -> None:
    writer = csv.writer(f)
    writer.writerow(names)
    for row in rows:
        writer.writerow(["" if row[n] is None else row[n] for n in names])


def _write_jsonl(f: Any, names: Sequence[str], rows: Iterator[Row]) -> None:
    for row in rows:
        f.write(json.dumps({n: row[n] for n in names}) + "\n")


def write_rows(path: Path, names: Sequence[str], rows: Iterable[Row]) -> int:
    """Write `rows` (each with every column of `names`) to `path`; returns the row count."""
    check_format(path)
    count = 0

    def counted() -> Iterator[Row]:
        nonlocal count
        for row in rows:
            count += 1
            yield row

    partial = partial_path(path)
    suffix = path.suffix.lower()
    with partial.open("wb") as f:
        if suffix == ".parquet":
            _write_parquet(f, names, counted())
        else:
            text = io.TextIOWrapper(f, encoding="utf-8", newline="")
            (_write_csv if suffix == ".csv" else _write_jsonl)(text, names, counted())
            text.flush()
            text.detach()  # leaves `f` open for the fsync
        f.flush()
        os.fsync(f.fileno())  # the data on disk before the rename makes it the output
    os.replace(partial, path)  # atomic: a reader sees the old file or the new, never half
    return count


def _typed(name: str, text: str) -> str | float | None:
    if text == "":
        return None
    return text if name in TEXT_COLUMNS else float(text)


def output_columns(path: Path) -> list[str]:
    """The columns of an existing output, in order (an empty JSONL file has none)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return list(pq.read_schema(path).names)
        with path.open(newline="", encoding="utf-8") as f:
            if suffix == ".csv":
                return next(csv.reader(f), [])
            first = f.readline()
            return list(json.loads(first)) if first else []
    except (OSError, ValueError) as err:  # pyarrow's and json's errors are ValueErrors
        raise FormatError(f"cannot read the existing output {path}: {err}") from err


def read_rows(path: Path, names: Sequence[str] | None = None) -> Iterator[Row]:
    """The rows of an output `write_rows` wrote, typed; only the columns `names` if given."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(BATCH_ROWS, columns=names):
            yield from batch.to_pylist()
        return
    with path.open(newline="", encoding="utf-8") as f:
        lines: Iterable[dict[str, Any]]
        if suffix == ".csv":
            lines = ({k: _typed(k, v) for k, v in row.items()} for row in csv.DictReader(f))
        else:
            lines = (json.loads(line) for line in f)
        for row in lines:
            yield row if names is None else {n: row[n] for n in names}
