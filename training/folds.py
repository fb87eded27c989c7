"""Speaker-independent folds, derived deterministically from a manifest.

Two protocols: leave-one-speaker-out (`speaker`, 10 folds on IEMOCAP) and
leave-one-session-out (`session`, 5 folds). Validation is always whole speakers taken
from the training side, so early stopping never sees the test speaker: the first
`n_val_speakers` speakers that follow the test group in sorted order. On IEMOCAP
(speakers sort as Ses01F, Ses01M, ...) fold 0 tests on Ses01F and validates on Ses01M.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from .corpus.manifest import Utterance

Protocol = Literal["speaker", "session"]
PROTOCOLS: tuple[Protocol, ...] = ("speaker", "session")


@dataclass(frozen=True)
class Fold:
    index: int
    test_speakers: tuple[str, ...]
    val_speakers: tuple[str, ...]
    train_speakers: tuple[str, ...]


@dataclass(frozen=True)
class FoldSplit:
    train: list[Utterance]
    val: list[Utterance]
    test: list[Utterance]


class FoldError(ValueError):
    """The manifest cannot be split by the requested protocol."""


def _groups(rows: Sequence[Utterance], protocol: Protocol) -> list[tuple[str, ...]]:
    """Sorted test groups: one speaker each, or the speakers of one session."""
    speakers = sorted({r.speaker for r in rows})
    if protocol == "speaker":
        return [(s,) for s in speakers]
    if any(not r.session for r in rows):
        raise FoldError("session folds need a `session` for every row; this manifest lacks some")
    by_session: dict[str, set[str]] = {}
    for r in rows:
        by_session.setdefault(r.session, set()).add(r.speaker)
    shared = [s for s in speakers if sum(s in members for members in by_session.values()) > 1]
    if shared:
        raise FoldError(f"speakers {shared} appear in more than one session")
    return [tuple(sorted(by_session[s])) for s in sorted(by_session)]


def make_folds(
    rows: Sequence[Utterance], protocol: Protocol = "speaker", n_val_speakers: int = 1
) -> list[Fold]:
    """One fold per test group; validation speakers follow the test group in sorted order."""
    if protocol not in PROTOCOLS:
        raise FoldError(f"unknown protocol {protocol!r}; choose from {PROTOCOLS}")
    groups = _groups(rows, protocol)
    if len(groups) < 2:
        raise FoldError(f"{protocol} folds need at least 2 {protocol}s, found {len(groups)}")
    folds = []
    for i, test in enumerate(groups):
        # Speakers in rotation order after the test group, wrapping around.
        after = [s for g in groups[i + 1 :] + groups[:i] for s in g]
        if len(after) <= n_val_speakers:
            raise FoldError(
                f"fold {i}: {len(after)} training speakers cannot spare {n_val_speakers} "
                "for validation"
            )
        val = tuple(after[:n_val_speakers])
        train = tuple(sorted(after[n_val_speakers:]))
        folds.append(Fold(i, test, val, train))
    return folds


def split(rows: Sequence[Utterance], fold: Fold) -> FoldSplit:
    """Rows of one fold, each in the manifest's order."""
    test, val = set(fold.test_speakers), set(fold.val_speakers)
    return FoldSplit(
        train=[r for r in rows if r.speaker not in test and r.speaker not in val],
        val=[r for r in rows if r.speaker in val],
        test=[r for r in rows if r.speaker in test],
    )


def manifest_digest(rows: Sequence[Utterance]) -> str:
    """sha256 over (utt_id, label, speaker) rows: ties a folds file to its manifest."""
    h = hashlib.sha256()
    for r in rows:
        h.update(f"{r.utt_id}\t{r.label}\t{r.speaker}\n".encode())
    return h.hexdigest()


def folds_path(prepared_dir: Path, protocol: Protocol) -> Path:
    """Where `prepare` keeps the folds of `protocol`, beside the manifest."""
    return prepared_dir / f"folds_{protocol}.json"


def write_folds(rows: Sequence[Utterance], folds: Sequence[Fold], path: Path) -> None:
    """Save folds with per-split counts, for people to read and runs to check."""
    records = []
    for fold in folds:
        parts = split(rows, fold)
        counts = {name: len(getattr(parts, name)) for name in ("train", "val", "test")}
        records.append({**asdict(fold), "counts": counts})
    payload = {"manifest_sha256": manifest_digest(rows), "folds": records}
    path.write_text(json.dumps(payload, indent=2) + "\n")


def write_all_folds(
    rows: Sequence[Utterance],
    prepared_dir: Path,
    n_val_speakers: int,
    log: Callable[[str], object] = print,
    protocols: Sequence[Protocol] = PROTOCOLS,
) -> None:
    """The folds file of each of `protocols` the rows allow; says which it wrote and why not."""
    for protocol in protocols:
        try:
            folds = make_folds(rows, protocol, n_val_speakers)
        except FoldError as err:
            log(f"no {protocol} folds: {err}")
            continue
        path = folds_path(prepared_dir, protocol)
        write_folds(rows, folds, path)
        log(f"{len(folds)} leave-one-{protocol}-out folds -> {path}")


def read_folds(rows: Sequence[Utterance], path: Path, n_val_speakers: int) -> list[Fold]:
    """The folds saved in `path`, refused unless made from these rows with `n_val_speakers`."""
    if not path.is_file():
        raise FoldError(f"{path} does not exist; `python -m training prepare` writes it")
    payload = json.loads(path.read_text())
    saved, actual = payload.get("manifest_sha256"), manifest_digest(rows)
    if saved != actual:
        raise FoldError(
            f"{path} was made for another manifest (manifest_sha256 {saved}, this manifest "
            f"{actual}); prepare the corpus again, or delete the file to have it rewritten"
        )
    folds = [
        Fold(
            index=int(r["index"]),
            test_speakers=tuple(r["test_speakers"]),
            val_speakers=tuple(r["val_speakers"]),
            train_speakers=tuple(r["train_speakers"]),
        )
        for r in payload["folds"]
    ]
    made_with = sorted({len(f.val_speakers) for f in folds})
    if made_with != [n_val_speakers]:
        raise FoldError(
            f"{path} holds {made_with} validation speakers per fold, the config asks for "
            f"{n_val_speakers}; delete the file to have it rewritten"
        )
    return folds
