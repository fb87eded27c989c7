"""Any bundle on any prepared corpus, through the runtime: exactly what the service would answer.

`evaluate_bundle` scores the rows of a prepared folder (a fold's test speakers or partition,
or every row) with `emodistill.load(bundle).predict_many` and writes into `out`:
  metrics.json           n, UA, WA, macro-F1, per-class recall, the confusion matrix and its
                         label order (the bundle's), and the labels the bundle does not know
  predictions.csv        one row per utterance: its label, the prediction, the probabilities
  confusion_matrix.png
Rows whose label the bundle cannot output are predicted and listed, but left out of the
scores (a 4-class model is not wrong about `fear`; it cannot say it): metrics.json counts
them per label. `cross_corpus_table` puts several bundles against several corpora.
Clips up to the runtime's window (10 s) are scored whole, as training scores its test clips, so
on a bundle's own fold the figures equal the run's; longer clips are scored as the service
scores them (speech segments, windows), which training does not do.

Knows nothing of training: it reads a bundle and a prepared folder, nothing else.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from tqdm import tqdm

from .corpus.manifest import Utterance, read_manifest
from .folds import FoldError, Protocol, folds_path, read_folds, split
from .metrics import confusion_matrix, macro_f1, per_class_recall, score
from .report import plot_confusion

if TYPE_CHECKING:
    from emodistill.recognizer import Recognizer

Partition = Literal["test", "all"]
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.csv"
CONFUSION_PNG = "confusion_matrix.png"
# Clips handed to the runtime at once: its own batching cuts them by length and audio budget.
CHUNK_CLIPS = 32


@dataclass(frozen=True)
class Selection:
    """Which rows are scored, and how to say so."""

    rows: list[Utterance]
    description: str  # e.g. "fold 0 test (speaker protocol): emodb_03"


def _saved_folds(rows: list[Utterance], prepared: Path, protocol: Protocol) -> list:
    path = folds_path(prepared, protocol)
    if not path.is_file():
        raise FoldError(f"{path} does not exist; prepare the corpus, or use --partition all")
    saved = json.loads(path.read_text())["folds"]
    n_val = next((len(f["val_speakers"]) for f in saved if f["val_speakers"]), 1)
    return read_folds(rows, path, n_val)


def select_rows(
    prepared: Path,
    partition: Partition,
    fold: int | None,
    protocol: Protocol | None,
    trained_on: Mapping[str, Any] | None = None,
) -> Selection:
    """The rows to score. `test` takes the fold and protocol given, else those the bundle was
    trained on (its `trained_on`), so a bundle is scored on the speakers it never heard."""
    rows = read_manifest(prepared)
    if partition == "all":
        return Selection(rows, "all rows")
    trained_on = trained_on or {}
    protocol = protocol or trained_on.get("protocol") or "speaker"
    fold = fold if fold is not None else trained_on.get("fold")
    if fold is None:
        raise FoldError("--partition test needs --fold K (the bundle does not say its fold)")
    folds = _saved_folds(rows, prepared, protocol)  # type: ignore[arg-type]
    if not 0 <= fold < len(folds):
        raise FoldError(f"fold {fold} does not exist; {protocol} folds are 0 … {len(folds) - 1}")
    chosen = folds[fold]
    held_out = chosen.test_speakers or chosen.test_partitions
    return Selection(
        split(rows, chosen).test,
        f"fold {fold} test ({protocol} protocol): {', '.join(held_out)}",
    )


def predict_rows(recognizer: Recognizer, rows: Sequence[Utterance], progress: bool) -> np.ndarray:
    """[N, C] probabilities in the bundle's label order, one row per utterance."""
    labels = list(recognizer.labels)
    out = np.zeros((len(rows), len(labels)), dtype=np.float64)
    bar = tqdm(total=len(rows), desc="evaluate", disable=not progress)
    for start in range(0, len(rows), CHUNK_CLIPS):
        chunk = rows[start : start + CHUNK_CLIPS]
        answers = recognizer.predict_many([r.path for r in chunk])
        for i, answer in enumerate(answers):
            probs = answer.probabilities
            out[start + i] = [probs[label] for label in labels]
        bar.update(len(chunk))
    bar.close()
    return out


def compute_metrics(
    rows: Sequence[Utterance], probs: np.ndarray, labels: Sequence[str]
) -> dict[str, Any]:
    """Scores over the rows whose label the bundle knows; the others counted by label."""
    known = [i for i, r in enumerate(rows) if r.label in labels]
    y_true = [list(labels).index(rows[i].label) for i in known]
    y_pred = [int(probs[i].argmax()) for i in known]
    cm = confusion_matrix(y_true, y_pred, len(labels))
    scores = score(y_true, y_pred, labels)
    recall = per_class_recall(cm)
    return {
        "n": len(known),
        "ua": scores.ua,
        "wa": scores.wa,
        "macro_f1": macro_f1(cm),
        "per_class_recall": dict(zip(labels, recall, strict=True)),
        "confusion": scores.confusion,
        "labels": list(labels),
        "unknown_labels": dict(
            sorted(Counter(r.label for r in rows if r.label not in labels).items())
        ),
    }


def write_predictions(
    path: Path, rows: Sequence[Utterance], probs: np.ndarray, labels: Sequence[str]
) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["utt_id", "speaker", "label", "predicted", *(f"p_{x}" for x in labels)])
        for row, p in zip(rows, probs, strict=True):
            predicted = labels[int(p.argmax())]
            writer.writerow(
                [row.utt_id, row.speaker, row.label, predicted, *(f"{x:.5f}" for x in p)]
            )


def evaluate_bundle(
    bundle: Path,
    prepared: Path,
    out: Path,
    partition: Partition = "test",
    fold: int | None = None,
    protocol: Protocol | None = None,
    device: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Score `bundle` on the selected rows of `prepared`; write the three files; return metrics."""
    import emodistill

    recognizer = emodistill.load(bundle, device=device)
    trained_on = recognizer.backend.metadata.trained_on
    selection = select_rows(
        prepared, partition, fold, protocol, trained_on.model_dump() if trained_on else None
    )
    if not selection.rows:
        raise FoldError(f"{prepared}: no rows in {selection.description}")
    labels = list(recognizer.labels)
    if not any(r.label in labels for r in selection.rows):
        found = sorted({r.label for r in selection.rows})
        raise FoldError(f"no row has a label the model can output: rows {found}, model {labels}")
    probs = predict_rows(recognizer, selection.rows, progress)
    metrics = {
        "bundle": str(bundle),
        "corpus": str(prepared),
        "rows": selection.description,
        **compute_metrics(selection.rows, probs, labels),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    write_predictions(out / PREDICTIONS_FILE, selection.rows, probs, labels)
    title = f"{Path(bundle).name} on {Path(prepared).name} ({selection.description})"
    plot_confusion(metrics["confusion"], labels, title[:80], out / CONFUSION_PNG)
    return metrics


def cross_corpus_table(
    bundles: Sequence[Path],
    corpora: Sequence[Path],
    out: Path,
    partition: Partition = "all",
    device: str = "auto",
    progress: bool = True,
) -> Path:
    """Every bundle on every corpus -> `out/cross_corpus.md` (UA in %, n beside it), with each
    evaluation's files in `out/<bundle>__<corpus>/`."""
    header = "| bundle \\ corpus | " + " | ".join(c.name for c in corpora) + " |"
    lines = ["# Cross-corpus UA (%)", "", header, "|---" * (len(corpora) + 1) + "|"]
    for bundle in bundles:
        cells = []
        for corpus in corpora:
            metrics = evaluate_bundle(
                bundle,
                corpus,
                out / f"{bundle.name}__{corpus.name}",
                partition,
                None,
                None,
                device,
                progress,
            )
            cells.append(f"{100 * metrics['ua']:.2f} (n={metrics['n']})")
        lines.append(f"| {bundle.name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Rows: {partition}. UA is the mean recall over the classes present in each corpus "
        "that the bundle can output; rows of other labels are counted in each metrics.json.",
    ]
    path = out / "cross_corpus.md"
    out.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path
