"""The manifest: one CSV row per utterance, the single input of every later stage.

Columns are `MANIFEST_COLUMNS`; `path` is absolute. Next to it, `labels.json` holds the
label set in the order the model's outputs will use: written once here, read by training,
export and the service (through the model's config). An utterance may carry a category
(`label`), dimensional ratings (`arousal`, `valence`, `dominance`, scaled into
`DIMENSION_SCALE`; an empty cell: not rated), or both. `partition` is a corpus's official
partition name (MSP-Podcast's `Train`, MELD's `dev`; "" where it has none). When any row is
rated, `dimensions.json` (`DimensionScale`) says whose ratings they were and from what scale.
Manifests written before the last four columns (`BASE_COLUMNS` only) still read.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from emodistill.audio import duration_s
from emodistill.bundle import DIMENSION_NAMES, DIMENSION_SCALE

MANIFEST_FILE = "manifest.csv"
LABELS_FILE = "labels.json"
DIMENSIONS_FILE = "dimensions.json"
USER_REQUIRED_COLUMNS = ("path", "speaker")
USER_OPTIONAL_COLUMNS = ("label", "text", "utt_id", "session", *DIMENSION_NAMES)


@dataclass(frozen=True)
class Utterance:
    utt_id: str
    path: str
    label: str  # "" when the utterance has dimensional ratings only
    speaker: str
    session: str
    text: str
    duration_s: float
    partition: str = ""  # the corpus's official partition; "" where it has none
    arousal: float | None = None  # in DIMENSION_SCALE; None: not rated
    valence: float | None = None
    dominance: float | None = None

    @property
    def dimensions(self) -> tuple[float, float, float] | None:
        """(arousal, valence, dominance) in DIMENSION_NAMES' order, or None if not rated."""
        values = (self.arousal, self.valence, self.dominance)
        return None if any(v is None for v in values) else values  # type: ignore[return-value]


MANIFEST_COLUMNS = tuple(f.name for f in fields(Utterance))
BASE_COLUMNS = MANIFEST_COLUMNS[:7]  # what every manifest has; the rest may be absent


class ManifestError(ValueError):
    """A manifest or user CSV is invalid; the message lists every problem found."""


def write_manifest(
    rows: Sequence[Utterance],
    out_dir: Path,
    labels: Sequence[str],
    ratings: RatingOrigin | None = None,
) -> Path:
    """Write `out_dir/manifest.csv` and `out_dir/labels.json`; returns the manifest path.

    When any row is rated, `ratings` (whose ratings, from what scale) is written with the
    names, scale and count to `dimensions.json`; a stale one is removed otherwise."""
    out_dir.mkdir(parents=True, exist_ok=True)
    missing = sorted({r.label for r in rows if r.label} - set(labels))
    if missing:
        raise ManifestError(f"labels {missing} occur in rows but not in the label set {labels}")
    path = out_dir / MANIFEST_FILE
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        for row in rows:
            record = asdict(row)
            record["duration_s"] = f"{row.duration_s:.4f}"
            for name in DIMENSION_NAMES:
                record[name] = "" if record[name] is None else f"{record[name]:.4f}"
            writer.writerow(record)
    (out_dir / LABELS_FILE).write_text(json.dumps({"labels": list(labels)}, indent=2) + "\n")
    rated = [r for r in rows if r.dimensions is not None]
    (out_dir / DIMENSIONS_FILE).unlink(missing_ok=True)
    if rated:
        if ratings is None:
            raise ManifestError("rows carry dimensions, but nothing says whose ratings they are")
        scale = DimensionScale(**ratings.model_dump(), rated=len(rated))
        (out_dir / DIMENSIONS_FILE).write_text(scale.model_dump_json(indent=2) + "\n")
    return path


class RatingOrigin(BaseModel):
    """Whose arousal/valence/dominance a preparer's rows carry, and from what scale."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    source: str = Field(description="Whose ratings, and the scale they were scaled from.")
    original_scale: tuple[float, float] | None = Field(
        None, description="The corpus's own rating range (IEMOCAP 1-5); None: not ratings."
    )
    columns: dict[str, str] = Field(
        default_factory=dict, description="Dimension -> where the corpus's files hold it."
    )


class DimensionScale(RatingOrigin):
    """dimensions.json: what the prepared folder's ratings are (read by training's record)."""

    names: tuple[str, ...] = DIMENSION_NAMES
    scale: tuple[float, float] = DIMENSION_SCALE
    rated: int = Field(description="Rows with ratings.")


def read_dimension_scale(manifest_dir: Path) -> DimensionScale | None:
    """The prepared folder's dimensions.json, or None when no row is rated."""
    path = manifest_dir / DIMENSIONS_FILE
    return DimensionScale.model_validate_json(path.read_text()) if path.is_file() else None


def to_unit(rating: float, scale: tuple[float, float]) -> float:
    """A rating on scale (low, high) -> DIMENSION_SCALE, clipped (a few ratings sit just
    outside their corpus's scale)."""
    low, high = scale
    lo, hi = DIMENSION_SCALE
    return lo + (hi - lo) * min(max((rating - low) / (high - low), 0.0), 1.0)


def _optional_float(text: str | None) -> float | None:
    return None if text is None or text == "" else float(text)


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
    return Utterance(
        utt_id=record["utt_id"],
        path=record["path"],
        label=record["label"],
        speaker=record["speaker"],
        session=record["session"],
        text=record["text"],
        duration_s=float(record["duration_s"]),
        partition=record.get("partition") or "",
        **{name: _optional_float(record.get(name)) for name in DIMENSION_NAMES},
    )


def read_labels(manifest_dir: Path) -> list[str]:
    """The label order saved beside a manifest."""
    return list(json.loads((manifest_dir / LABELS_FILE).read_text())["labels"])


def label_counts(rows: Iterable[Utterance]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.label] = counts.get(r.label, 0) + 1
    return dict(sorted(counts.items()))


def validate_user_csv(
    csv_path: Path,
    max_errors: int = 50,
    dimension_range: tuple[float, float] = DIMENSION_SCALE,
) -> tuple[list[Utterance], list[str]]:
    """Validate a user CSV (`path,speaker[,label,text,utt_id,session,arousal,valence,
    dominance]`) into manifest rows.

    Each row needs a label, all three dimensions, or both (the columns `label` or the three
    dimensions must be there). Dimensions are given on `dimension_range` and scaled into
    DIMENSION_SCALE. Relative paths are taken from the CSV's folder. Every audio file's
    header is read. Returns (rows, labels) with labels sorted: the label set comes from the
    data ([] for a corpus rated only in dimensions). Raises ManifestError listing each bad
    row by its line number in the file.
    """
    errors: list[str] = []
    rows: list[Utterance] = []
    seen_ids: dict[str, int] = {}
    with csv_path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in ("path", "label", "speaker") if c not in header]
        if "label" in missing and set(DIMENSION_NAMES) <= set(header):
            missing.remove("label")  # rated in dimensions only
        unknown = [c for c in header if c not in USER_REQUIRED_COLUMNS + USER_OPTIONAL_COLUMNS]
        if missing or unknown:
            raise ManifestError(
                f"{csv_path}: line 1: header {header} must hold {list(USER_REQUIRED_COLUMNS)} "
                f"and `label` or {list(DIMENSION_NAMES)} or both, and may hold "
                f"{[c for c in USER_OPTIONAL_COLUMNS if c not in DIMENSION_NAMES]}"
                + (f"; missing {missing}" if missing else "")
                + (f"; unknown {unknown}" if unknown else "")
            )
        reader.fieldnames = header
        for line_no, record in enumerate(reader, start=2):
            row, problem = _user_row(record, csv_path.parent, seen_ids, line_no, dimension_range)
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
    labels = sorted({r.label for r in rows if r.label})
    if len(labels) == 1 or (not labels and not any(r.dimensions for r in rows)):
        raise ManifestError(
            f"{csv_path}: one label only ({labels}); a classifier needs two or more"
        )
    return rows, labels


def _user_dimensions(
    value: dict[str, str], dimension_range: tuple[float, float]
) -> tuple[dict[str, float | None], str | None]:
    """The row's arousal, valence and dominance scaled into DIMENSION_SCALE (all or none)."""
    given = {name: value.get(name, "") for name in DIMENSION_NAMES}
    if not any(given.values()):
        return dict.fromkeys(DIMENSION_NAMES), None
    if not all(given.values()):
        return {}, f"give all of {list(DIMENSION_NAMES)} or none"
    low, high = dimension_range
    out: dict[str, float | None] = {}
    for name, text in given.items():
        try:
            number = float(text)
        except ValueError:
            return {}, f"{name} {text!r} is not a number"
        if not low <= number <= high:
            return {}, f"{name} {number:g} outside the range [{low:g}, {high:g}]"
        out[name] = to_unit(number, dimension_range)
    return out, None


def _user_row(
    record: dict[str, str | None],
    base: Path,
    seen_ids: dict[str, int],
    line_no: int,
    dimension_range: tuple[float, float] = DIMENSION_SCALE,
) -> tuple[Utterance | None, str | None]:
    if None in record.values() or None in record:
        return None, "wrong number of fields"
    value = {k: (v or "").strip() for k, v in record.items() if k is not None}
    for column in USER_REQUIRED_COLUMNS:
        if not value[column]:
            return None, f"empty {column!r}"
    dimensions, problem = _user_dimensions(value, dimension_range)
    if problem:
        return None, problem
    if not value.get("label") and dimensions["arousal"] is None:
        return None, "empty 'label' and no dimensions"
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
        label=value.get("label", ""),
        speaker=value["speaker"],
        session=value.get("session", ""),
        text=value.get("text", ""),
        duration_s=seconds,
        arousal=dimensions["arousal"],
        valence=dimensions["valence"],
        dominance=dimensions["dominance"],
    )
    return row, None
