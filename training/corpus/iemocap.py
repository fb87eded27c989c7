"""IEMOCAP -> manifest, by the field's 4-class protocol (neutral, angry, sad, happy + excited).

Reads `SessionN/dialog/EmoEvaluation/*.txt` (top level only) for labels and the consensus
ratings `[V, A, D]` (valence, activation = arousal, dominance; 1-5, scaled to [0, 1]),
`SessionN/dialog/transcriptions/*.txt` for text and `SessionN/sentences/wav/<dialog>/` for
audio. Knows nothing of folds or features.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from emodistill.audio import duration_s

from .manifest import RatingOrigin, Utterance, to_unit
from .reading import FOUR_CLASSES, NotTheCorpusError

# Label order of the model's outputs for IEMOCAP (and the synthetic corpus that mirrors it).
FOUR_CLASS_LABELS = FOUR_CLASSES
# Excited is merged into happy, as the field's 4-class protocol does.
LABEL_MAP = {"neu": "neutral", "ang": "angry", "sad": "sad", "hap": "happy", "exc": "happy"}
SESSIONS = tuple(f"Session{i}" for i in range(1, 6))
# The summary line's [V, A, D]: annotators' mean ratings on 1-5, valence first.
RATING_SCALE = (1.0, 5.0)
RATING_ORIGIN = RatingOrigin(
    source="IEMOCAP consensus ratings [V, A, D] (EmoEvaluation summary lines), 1-5",
    original_scale=RATING_SCALE,
    columns={"valence": "[V, A, D][0]", "arousal": "[V, A, D][1]", "dominance": "[V, A, D][2]"},
)

# `[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]`
_SUMMARY_LINE = re.compile(
    r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\t(Ses\d\d[FM]\S*)\t(\w+)\t"
    r"\[\s*([\d.]+),\s*([\d.]+),\s*([\d.]+)\s*\]"
)
# `Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.`
_TRANSCRIPT_LINE = re.compile(r"^(Ses\d\d[FM]\S*_[FM]\d+)\s+\[[^\]]*\]:\s?(.*)$")


class NotIemocapError(NotTheCorpusError):
    """The folder given as IEMOCAP's root does not have IEMOCAP's layout."""


@dataclass
class IemocapReport:
    """What preparation kept and skipped, for the printed summary."""

    rows: list[Utterance] = field(default_factory=list)
    sessions_found: list[str] = field(default_factory=list)
    skipped_labels: Counter[str] = field(default_factory=Counter)
    missing_wavs: list[str] = field(default_factory=list)
    unlabelled_transcript_ids: int = 0
    missing_transcripts: list[str] = field(default_factory=list)
    ignored_resource_forks: int = 0

    def summary(self) -> str:
        lines = [f"IEMOCAP 4-class: {len(self.rows)} utterances from {self.sessions_found}"]
        by_class = Counter(r.label for r in self.rows)
        lines.append("per class:   " + _fmt({k: by_class[k] for k in FOUR_CLASS_LABELS}))
        lines.append("per session: " + _fmt(Counter(r.session for r in self.rows)))
        lines.append("per speaker: " + _fmt(Counter(r.speaker for r in self.rows)))
        lines.append("skipped:")
        lines.append(f"  labels outside the 4 classes: {_fmt(self.skipped_labels) or 'none'}")
        lines.append(f"  labelled but wav missing: {len(self.missing_wavs)}")
        lines.extend(f"    {u}" for u in self.missing_wavs[:20])
        if len(self.missing_wavs) > 20:
            lines.append(f"    ... and {len(self.missing_wavs) - 20} more")
        lines.append(f"  transcript ids never labelled: {self.unlabelled_transcript_ids}")
        lines.append(f"  kept without transcript text: {len(self.missing_transcripts)}")
        lines.append(f"  macOS '._*' files ignored: {self.ignored_resource_forks}")
        return "\n".join(lines)


def _fmt(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def speaker_of(utt_id: str) -> str:
    """`Ses01F_impro01_M000` -> `Ses01M`: session prefix + gender letter of the LAST id part.

    The dialog prefix names the actor the dialog was recorded for, not the one speaking.
    """
    return utt_id[:5] + utt_id.rsplit("_", 1)[-1][0]


def dialog_of(utt_id: str) -> str:
    """`Ses01F_script01_1_F012` -> `Ses01F_script01_1`."""
    return utt_id.rsplit("_", 1)[0]


def _text_files(folder: Path, report: IemocapReport) -> list[Path]:
    """The `.txt` files at the top of `folder`, without macOS resource forks."""
    files = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("._"):
            report.ignored_resource_forks += 1
        elif path.is_file() and path.suffix == ".txt":
            files.append(path)
    return files


def _read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


def check_root(root: Path) -> list[Path]:
    """The session folders under `root`; NotIemocapError if it is not IEMOCAP_full_release."""
    sessions = [
        root / s
        for s in SESSIONS
        if (root / s / "dialog" / "EmoEvaluation").is_dir() and (root / s / "sentences").is_dir()
    ]
    if not sessions:
        raise NotIemocapError(
            f"{root} is not an IEMOCAP_full_release folder: expected Session1 … Session5, each "
            "with dialog/EmoEvaluation/<dialog>.txt (labels), dialog/transcriptions/<dialog>.txt "
            "and sentences/wav/<dialog>/<utterance>.wav"
        )
    return sessions


@dataclass(frozen=True)
class Evaluation:
    """One summary line: the category code and the [V, A, D] ratings (1-5)."""

    code: str
    valence: float
    arousal: float
    dominance: float


def read_labels(session_dir: Path, report: IemocapReport) -> dict[str, Evaluation]:
    """utt_id -> its evaluation, from the summary lines of the top-level EmoEvaluation files."""
    labels: dict[str, Evaluation] = {}
    for path in _text_files(session_dir / "dialog" / "EmoEvaluation", report):
        for line in _read_lines(path):
            match = _SUMMARY_LINE.match(line)
            if match:
                v, a, d = (float(x) for x in match.group(3, 4, 5))
                labels[match.group(1)] = Evaluation(match.group(2), v, a, d)
    return labels


def read_transcripts(session_dir: Path, report: IemocapReport) -> dict[str, str]:
    """utt_id -> transcript text."""
    folder = session_dir / "dialog" / "transcriptions"
    texts: dict[str, str] = {}
    if not folder.is_dir():
        return texts
    for path in _text_files(folder, report):
        for line in _read_lines(path):
            match = _TRANSCRIPT_LINE.match(line.strip())
            if match:
                texts[match.group(1)] = match.group(2).strip()
    return texts


def prepare_iemocap(root: Path) -> IemocapReport:
    """Walk an IEMOCAP_full_release folder -> manifest rows (4 classes) and what was skipped."""
    root = root.resolve()
    report = IemocapReport()
    for session_dir in check_root(root):
        report.sessions_found.append(session_dir.name)
        codes = read_labels(session_dir, report)
        texts = read_transcripts(session_dir, report)
        report.unlabelled_transcript_ids += len(texts.keys() - codes.keys())
        wav_dir = session_dir / "sentences" / "wav"
        for utt_id, evaluation in sorted(codes.items()):
            label = LABEL_MAP.get(evaluation.code)
            if label is None:
                report.skipped_labels[evaluation.code] += 1
                continue
            wav = wav_dir / dialog_of(utt_id) / f"{utt_id}.wav"
            if not wav.is_file():
                report.missing_wavs.append(utt_id)
                continue
            if utt_id not in texts:
                report.missing_transcripts.append(utt_id)
            report.rows.append(
                Utterance(
                    utt_id=utt_id,
                    path=str(wav),
                    label=label,
                    speaker=speaker_of(utt_id),
                    session=utt_id[:5],
                    text=texts.get(utt_id, ""),
                    duration_s=duration_s(wav),
                    arousal=to_unit(evaluation.arousal, RATING_SCALE),
                    valence=to_unit(evaluation.valence, RATING_SCALE),
                    dominance=to_unit(evaluation.dominance, RATING_SCALE),
                )
            )
    return report
