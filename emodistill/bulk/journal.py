"""What makes a bulk run resumable after it was killed at any moment (SIGKILL included).

Parquet cannot be appended to, and a Parquet file that was never closed is unreadable; so no
run writes its output until the end. While it runs, it appends to a journal beside the
output, `<output>.journal`: JSON lines, the first a header (the columns, and whether the
output that existed at the start is part of this run's result), then one line per scored
file holding all its rows. One file's rows are one line, written with its chunk in one
`write`: a file is in the journal whole or, cut short by a kill, as a last line without its
newline, which `recover` cuts off (that file is scored again). What `write` handed to the
kernel survives the death of the process, so no fsync per chunk is needed; after a power
cut the tail may be lost or garbled, and is cut off in the same way.

At the end, `fold` writes the output from the old output (if it counts) and the journal's
files not already in it, renames it over the old one, then deletes the journal. Killed
before the rename, the old output and the journal are intact; killed after it and before
the deletion, the journal's files are all in the new output, and the next fold skips them.
Either way the next `--resume` ends with each file once. Knows nothing of audio or models.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from emodistill.bulk.formats import output_columns, read_rows, write_rows
from emodistill.bulk.rows import FILE, KIND, PATH, Row

JOURNAL_SUFFIX = ".journal"
_JOURNAL_VERSION = 1


class ResumeError(ValueError):
    """An output or journal that this run cannot continue (written for other labels)."""


@dataclass
class JournalState:
    """What a journal says: whether the output at its start counts, the files it holds."""

    keep_output: bool
    done: set[str] = field(default_factory=set)


def check_columns(where: Path | str, found: Sequence[str], names: Sequence[str]) -> None:
    if list(found) != list(names):
        raise ResumeError(
            f"{where} has the columns {list(found)}, this model's output has {list(names)}: "
            "was it written with another bundle? Write to a new output, or drop --resume"
        )


class Journal:
    """`<output>.journal`; see the module doc."""

    def __init__(self, output: Path) -> None:
        self.output = output
        self.path = output.with_name(output.name + JOURNAL_SUFFIX)

    def start(self, names: Sequence[str], keep_output: bool) -> None:
        """A new journal (any old one is discarded)."""
        header = {"journal": _JOURNAL_VERSION, "columns": list(names), "keep_output": keep_output}
        with self.path.open("w", encoding="utf-8") as f:
            f.write(json.dumps(header) + "\n")

    def recover(self, names: Sequence[str]) -> JournalState | None:
        """The journal's state, its torn tail cut off; None if there is none (or no header)."""
        state, end = None, 0
        try:
            f = self.path.open("rb")
        except FileNotFoundError:
            return None
        with f:
            for line in f:
                try:
                    if not line.endswith(b"\n"):
                        break  # torn: the run was killed while writing this line
                    entry = json.loads(line)
                except ValueError:
                    break  # garbled (a power cut): this file and any later are done again
                if state is None:
                    check_columns(self.path, entry["columns"], names)
                    state = JournalState(keep_output=bool(entry["keep_output"]))
                else:
                    state.done.add(entry[0][PATH])
                end += len(line)
        if state is None:
            return None
        os.truncate(self.path, end)
        return state

    def append(self, groups: Sequence[list[Row]]) -> None:
        """Each file's rows (the file row first) as one line, all in one write."""
        text = "".join(json.dumps(group) + "\n" for group in groups)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(text)

    def groups(self) -> Iterator[list[Row]]:
        with self.path.open(encoding="utf-8") as f:
            next(f)  # the header
            for line in f:
                yield json.loads(line)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def output_done(output: Path, names: Sequence[str]) -> set[str]:
    """The files an existing output holds (those with a file row); empty if there is none."""
    if not output.exists():
        return set()
    check_columns(output, output_columns(output), names)
    return {r[PATH] for r in read_rows(output, [PATH, KIND]) if r[KIND] == FILE}


def prepare(output: Path, names: Sequence[str], resume: bool) -> tuple[Journal, set[str]]:
    """The journal for this run and the files already done (none unless `resume`)."""
    journal = Journal(output)
    state = journal.recover(names) if resume else None
    if state is None:
        journal.start(names, keep_output=resume)
        state = JournalState(keep_output=resume)
    done = output_done(output, names) if state.keep_output else set()
    return journal, done | state.done


def fold(journal: Journal, names: Sequence[str]) -> int:
    """Write the output (old output if it counts, then the journal's new files), delete the
    journal; returns the output's row count."""
    state = journal.recover(names)
    assert state is not None, "fold needs the journal that prepare started"
    seen: set[str] = set()

    def kept() -> Iterator[Row]:
        if state.keep_output and journal.output.exists():
            for row in read_rows(journal.output):
                seen.add(row[PATH])
                yield row

    def added() -> Iterator[Row]:
        for group in journal.groups():
            if group[0][PATH] not in seen:
                seen.add(group[0][PATH])
                yield from group

    def rows() -> Iterator[Row]:
        yield from kept()
        yield from added()

    count = write_rows(journal.output, names, rows())
    journal.remove()
    return count
