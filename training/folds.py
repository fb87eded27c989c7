"""Speaker-independent folds and official partitions, derived deterministically from a manifest.

Four protocols:
  speaker         leave one speaker out (10 folds on IEMOCAP)
  session         leave one session out (5 folds on IEMOCAP)
  speaker_groups  leave N speakers out: the sorted speakers cut into at most
                  `MAX_SPEAKER_GROUPS` contiguous groups (CREMA-D's 91 actors: 10 folds of 9-10)
  official        a corpus's own partitions (MSP-Podcast, MELD): train on its train
                  partition, validate on its development one, one fold per test partition.
In the speaker protocols validation is always whole speakers taken from the training side, so
early stopping never sees the test speaker: the first `n_val_speakers` speakers that follow
the test group in sorted order. On IEMOCAP (speakers sort as Ses01F, Ses01M, ...) fold 0 tests
on Ses01F and validates on Ses01M.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from .corpus.manifest import Utterance

Protocol = Literal["speaker", "session", "speaker_groups", "official"]
PROTOCOLS: tuple[Protocol, ...] = ("speaker", "session", "speaker_groups", "official")
# Folds of `speaker_groups`: the 10 of IEMOCAP's and the paper's protocol, where speakers allow.
MAX_SPEAKER_GROUPS = 10
PartitionRole = Literal["train", "val", "test"]
PARTS: tuple[PartitionRole, ...] = ("train", "val", "test")
# How the corpora name their partitions (MSP-Podcast Train/Development/Test1, MELD
# train/dev/test, ESD train/evaluation/test); anything starting with "test" is a test set.
_PARTITION_ROLES: dict[str, PartitionRole] = {
    "train": "train",
    "training": "train",
    "development": "val",
    "dev": "val",
    "validation": "val",
    "val": "val",
    "evaluation": "val",
}


@dataclass(frozen=True)
class Fold:
    index: int
    test_speakers: tuple[str, ...]
    val_speakers: tuple[str, ...]
    train_speakers: tuple[str, ...]
    # Official partitions: rows whose speaker is in none of the sets above go by these
    # (all of them in an `official` fold, whose speaker sets are empty).
    test_partitions: tuple[str, ...] = ()
    val_partitions: tuple[str, ...] = ()
    train_partitions: tuple[str, ...] = ()


@dataclass(frozen=True)
class FoldSplit:
    train: list[Utterance]
    val: list[Utterance]
    test: list[Utterance]


class FoldError(ValueError):
    """The manifest cannot be split by the requested protocol."""


def partition_role(partition: str) -> PartitionRole | None:
    """`Development` -> val, `Test2` -> test; None for a name no protocol uses."""
    name = partition.lower()
    if name.startswith("test"):
        return "test"
    return _PARTITION_ROLES.get(name)


def _groups(rows: Sequence[Utterance], protocol: Protocol) -> list[tuple[str, ...]]:
    """Sorted test groups: one speaker each, a run of speakers, or the speakers of a session."""
    if any(not r.speaker for r in rows):
        raise FoldError(
            f"{protocol} folds need a speaker for every row; this manifest has rows whose "
            "speaker is unknown (use the official partitions)"
        )
    speakers = sorted({r.speaker for r in rows})
    if protocol == "speaker":
        return [(s,) for s in speakers]
    if protocol == "speaker_groups":
        n_groups = min(MAX_SPEAKER_GROUPS, len(speakers))
        # Contiguous runs, sizes differing by at most one: the first `extra` get one more.
        size, extra = divmod(len(speakers), max(n_groups, 1))
        groups, start = [], 0
        for g in range(n_groups):
            end = start + size + (g < extra)
            groups.append(tuple(speakers[start:end]))
            start = end
        return groups
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
    if protocol == "official":
        return _official_folds(rows)
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


def _official_folds(rows: Sequence[Utterance]) -> list[Fold]:
    """Train on the train partitions, validate on the development ones, one fold per test."""
    by_role: dict[PartitionRole, list[str]] = {"train": [], "val": [], "test": []}
    for partition in sorted({r.partition for r in rows if r.partition}):
        role = partition_role(partition)
        if role is not None:
            by_role[role].append(partition)
    missing = [role for role, names in by_role.items() if not names]
    if missing:
        raise FoldError(
            f"official partitions need train, development and test partitions; found "
            f"{ {k: v for k, v in by_role.items() if v} }, none for {missing}"
        )
    train, val = tuple(by_role["train"]), tuple(by_role["val"])
    return [
        Fold(i, (), (), (), test_partitions=(t,), val_partitions=val, train_partitions=train)
        for i, t in enumerate(by_role["test"])
    ]


def _role_of(row: Utterance, fold: Fold) -> PartitionRole | None:
    for role in ("test", "val", "train"):
        if row.speaker and row.speaker in getattr(fold, f"{role}_speakers"):
            return role  # type: ignore[return-value]
    for role in ("test", "val", "train"):
        if row.partition and row.partition in getattr(fold, f"{role}_partitions"):
            return role  # type: ignore[return-value]
    return None


def split(rows: Sequence[Utterance], fold: Fold) -> FoldSplit:
    """Rows of one fold, each in the manifest's order. In a speaker fold every speaker that is
    not tested or validated on trains; where the fold names partitions, a row that no set names
    (a partition no protocol uses) is left out."""
    if not (fold.test_partitions or fold.val_partitions or fold.train_partitions):
        test, val = set(fold.test_speakers), set(fold.val_speakers)
        return FoldSplit(
            train=[r for r in rows if r.speaker not in test and r.speaker not in val],
            val=[r for r in rows if r.speaker in val],
            test=[r for r in rows if r.speaker in test],
        )
    roles = [_role_of(r, fold) for r in rows]
    return FoldSplit(
        *([r for r, role in zip(rows, roles, strict=True) if role == want] for want in PARTS)
    )


def manifest_digest(rows: Sequence[Utterance]) -> str:
    """sha256 over (utt_id, label, speaker) rows: ties a folds file to its manifest."""
    h = hashlib.sha256()
    for r in rows:
        # The partition only where there is one, so digests of older manifests still match.
        partition = f"\t{r.partition}" if r.partition else ""
        h.update(f"{r.utt_id}\t{r.label}\t{r.speaker}{partition}\n".encode())
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
        log(f"{len(folds)} {_DESCRIPTION[protocol]} folds -> {path}")


_DESCRIPTION: dict[Protocol, str] = {
    "speaker": "leave-one-speaker-out",
    "session": "leave-one-session-out",
    "speaker_groups": "leave-speakers-out",
    "official": "official-partition",
}


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
            test_partitions=tuple(r.get("test_partitions", ())),
            val_partitions=tuple(r.get("val_partitions", ())),
            train_partitions=tuple(r.get("train_partitions", ())),
        )
        for r in payload["folds"]
    ]
    made_with = sorted({len(f.val_speakers) for f in folds if not f.val_partitions})
    if made_with and made_with != [n_val_speakers]:
        raise FoldError(
            f"{path} holds {made_with} validation speakers per fold, the config asks for "
            f"{n_val_speakers}; delete the file to have it rewritten"
        )
    return folds
