"""The manifest: one CSV row per utterance, the single input of every later stage.

Columns are `MANIFEST_COLUMNS`; `path` is absolute. The last four are optional (a manifest
written before them, with `BASE_COLUMNS` only, still reads): `partition`, a corpus's official
partition name (MSP-Podcast's `Train`, MELD's `dev`), and arousal, valence and dominance scaled
to [0, 1] where a corpus rates them (the original scale is in `dimensions.json`). Next to it,
`labels.json` holds the label set in the order the model's outputs will use: written once
here, read by training, export and the service (through the model's config).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from emodistill.audio import duration_s

MANIFEST_FILE = "manifest.csv"
LABELS_FILE = "labels.json"
USER_REQUIRED_COLUMNS = ("path", "label", "speaker")
USER_OPTIONAL_COLUMNS = ("text", "utt_id", "session")


@dataclass(frozen=True)
class Utterance:
    utt_id: str
    path: str
    label: str
    speaker: str
    session: str
    text: str
    duration_s: float
    partition: str = ""  # the corpus's official partition; "" where it has none
    arousal: float | None = None  # in [0, 1]; None where the corpus does not rate it
    valence: float | None = None
    dominance: float | None = None


MANIFEST_COLUMNS = tuple(f.name for f in fields(Utterance))
BASE_COLUMNS = MANIFEST_COLUMNS[:7]  # what every manifest has; the rest may be absent
DIMENSIONS = ("arousal", "valence", "dominance")


class ManifestError(ValueError):
    """A manifest or user CSV is invalid; the message lists every problem found."""


def write_manifest(rows: Sequence[Utterance], out_dir: Path, labels: Sequence[str]) -> Path:
    """Write `out_dir/manifest.csv` and `out_dir/labels.json`; returns the manifest path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    missing = sorted({r.label for r in rows} - set(labels))
    if missing:
        raise ManifestError(f"labels {missing} occur in rows but not in the label set {labels}")
    path = out_dir / MANIFEST_FILE
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        for row in rows:
            record = asdict(row)
            record["duration_s"] = f"{row.duration_s:.4f}"
            for name in DIMENSIONS:
                value = record[name]
                record[name] = "" if value is None else f"{value:.4f}"
            writer.writerow(record)
    (out_dir / LABELS_FILE).write_text(json.dumps({"labels": list(labels)}, indent=2) + "\n")
    return path


def read_manifest(path: Path) -> list[Utterance]:
    """Read a manifest written by `write_manifest` (a directory or the CSV itself)."""
    path = path / MANIFEST_FILE if path.is_dir() else path
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) not in (MANIFEST_COLUMNS, BASE_COLUMNS):
            raise ManifestError(
                f"{path}: columns {reader.fieldnames} are not the manifest's {MANIFEST_COLUMNS}; "
                "write it with `python -m training prepare ...`"
            )
        return [_row(r) for r in reader]


def _row(record: dict[str, str]) -> Utterance:
    def dimension(name: str) -> float | None:
        value = record.get(name) or ""
        return float(value) if value else None

    return Utterance(
        utt_id=record["utt_id"],
        path=record["path"],
        label=record["label"],
        speaker=record["speaker"],
        session=record["session"],
        text=record["text"],
        duration_s=float(record["duration_s"]),
        partition=record.get("partition") or "",
        arousal=dimension("arousal"),
        valence=dimension("valence"),
        dominance=dimension("dominance"),
    )


def read_labels(manifest_dir: Path) -> list[str]:
    """The label order saved beside a manifest."""
    return list(json.loads((manifest_dir / LABELS_FILE).read_text())["labels"])


def label_counts(rows: Iterable[Utterance]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.label] = counts.get(r.label, 0) + 1
    return dict(sorted(counts.items()))


def validate_user_csv(csv_path: Path, max_errors: int = 50) -> tuple[list[Utterance], list[str]]:
    """Validate a user CSV (`path,label,speaker[,text,utt_id,session]`) into manifest rows.

    Relative paths are taken from the CSV's folder. Every audio file's header is read.
    Returns (rows, labels) with labels sorted: the label set comes from the data.
    Raises ManifestError listing each bad row by its line number in the file.
    """
    errors: list[str] = []
    rows: list[Utterance] = []
    seen_ids: dict[str, int] = {}
    with csv_path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in USER_REQUIRED_COLUMNS if c not in header]
        unknown = [c for c in header if c not in USER_REQUIRED_COLUMNS + USER_OPTIONAL_COLUMNS]
        if missing or unknown:
            raise ManifestError(
                f"{csv_path}: line 1: header {header} must hold {list(USER_REQUIRED_COLUMNS)} "
                f"and may hold {list(USER_OPTIONAL_COLUMNS)}"
                + (f"; missing {missing}" if missing else "")
                + (f"; unknown {unknown}" if unknown else "")
            )
        reader.fieldnames = header
        for line_no, record in enumerate(reader, start=2):
            row, problem = _user_row(record, csv_path.parent, seen_ids, line_no)
            if problem:
                errors.append(f"line {line_no}: {problem}")
                if len(errors) >= max_errors:
                    errors.append("... (stopped after this many errors)")
                    break
            elif row is not None:
                rows.append(row)
    if errors:
        raise ManifestError(f"{csv_path}: {len(errors)} bad row(s)\n  " + "\n  ".join(errors))
    if not rows:
        raise ManifestError(f"{csv_path}: no rows")
    labels = sorted({r.label for r in rows})
    if len(labels) < 2:
        raise ManifestError(
            f"{csv_path}: one label only ({labels}); a classifier needs two or more"
        )
    return rows, labels


def _user_row(
    record: dict[str, str | None], base: Path, seen_ids: dict[str, int], line_no: int
) -> tuple[Utterance | None, str | None]:
    if None in record.values() or None in record:
        return None, "wrong number of fields"
    value = {k: (v or "").strip() for k, v in record.items() if k is not None}
    for column in USER_REQUIRED_COLUMNS:
        if not value[column]:
            return None, f"empty {column!r}"
    audio = Path(value["path"])
    audio = (audio if audio.is_absolute() else base / audio).resolve()
    if not audio.is_file():
        return None, f"audio file not found: {audio}"
    try:
        seconds = duration_s(audio)
    except Exception as err:  # soundfile raises several types for unreadable files
        return None, f"not readable audio ({audio.name}): {err}"
    if seconds <= 0:
        return None, f"audio has no samples: {audio}"
    utt_id = value.get("utt_id") or audio.stem
    if utt_id in seen_ids:
        return (
            None,
            f"utt_id {utt_id!r} repeats line {seen_ids[utt_id]} (add a unique utt_id column)",
        )
    seen_ids[utt_id] = line_no
    row = Utterance(
        utt_id=utt_id,
        path=str(audio),
        label=value["label"],
        speaker=value["speaker"],
        session=value.get("session", ""),
        text=value.get("text", ""),
        duration_s=seconds,
    )
    return row, None
