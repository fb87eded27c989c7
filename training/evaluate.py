"""Any bundle on any prepared corpus, through the runtime: exactly what the service would answer.

`evaluate_bundle` scores the rows of a prepared folder (a fold's test speakers or partition,
or every row) with `emodistill.load(bundle).predict_many` and writes into `out`:
  metrics.json           n, UA, WA, macro-F1, per-class recall, the confusion matrix and its
                         label order (the bundle's), and the labels the bundle does not know;
                         for a bundle with dimensions on a corpus with ratings, `dimensions`:
                         the CCC per dimension over the rated rows, and how many there were
  predictions.csv        one row per utterance: its label, the prediction, the probabilities,
                         then its ratings and the predicted dimensions
  confusion_matrix.png   (a bundle with categories)
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
from .metrics import (
    concordance_per_dimension,
    confusion_matrix,
    macro_f1,
    per_class_recall,
    score,
)
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


@dataclass(frozen=True)
class Predicted:
    """The runtime's answers, one row per utterance: `probabilities` [N, C] in the bundle's
    label order (C = 0 for a dimensions-only bundle), `dimensions` [N, D] in its dimension
    order (D = 0 for a bundle without them)."""

    probabilities: np.ndarray
    dimensions: np.ndarray


def predict_rows(recognizer: Recognizer, rows: Sequence[Utterance], progress: bool) -> Predicted:
    """Every row through `predict_many`, in chunks; see `Predicted`."""
    labels, names = list(recognizer.labels), list(recognizer.dimensions)
    probs = np.zeros((len(rows), len(labels)), dtype=np.float64)
    dims = np.zeros((len(rows), len(names)), dtype=np.float64)
    bar = tqdm(total=len(rows), desc="evaluate", disable=not progress)
    for start in range(0, len(rows), CHUNK_CLIPS):
        chunk = rows[start : start + CHUNK_CLIPS]
        answers = recognizer.predict_many([r.path for r in chunk])
        for i, answer in enumerate(answers):
            if labels and answer.probabilities is not None:
                probs[start + i] = [answer.probabilities[label] for label in labels]
            if names and answer.dimensions is not None:
                dims[start + i] = [getattr(answer.dimensions, name) for name in names]
        bar.update(len(chunk))
    bar.close()
    return Predicted(probs, dims)


def ratings(rows: Sequence[Utterance], names: Sequence[str]) -> np.ndarray:
    """[N, D] each row's ratings in `names`' order (the bundle's), NaN for an unrated row.
    Rows carry them in DIMENSION_NAMES' order; both are scaled to DIMENSION_SCALE."""
    from emodistill.bundle import DIMENSION_NAMES

    order = [DIMENSION_NAMES.index(name) for name in names]
    unrated = (np.nan,) * len(DIMENSION_NAMES)
    values = np.array([r.dimensions or unrated for r in rows], dtype=np.float64)
    return values.reshape(len(rows), len(DIMENSION_NAMES))[:, order]


def dimension_metrics(
    rows: Sequence[Utterance], predicted: np.ndarray, names: Sequence[str]
) -> dict[str, Any] | None:
    """CCC per dimension over the rated rows; None when no row is rated or the bundle has
    no dimensions."""
    targets = ratings(rows, names)
    rated = int((~np.isnan(targets).any(axis=1)).sum()) if names else 0
    if rated == 0:
        return None
    ccc = concordance_per_dimension(predicted, targets, names)
    return {"n": rated, "ccc": ccc, "mean_ccc": float(np.mean(list(ccc.values())))}


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
    path: Path,
    rows: Sequence[Utterance],
    predicted: Predicted,
    labels: Sequence[str],
    names: Sequence[str] = (),
) -> None:
    """One row per utterance; `<dimension>_rated` is its rating (empty when unrated)."""
    targets = ratings(rows, names)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        head = ["utt_id", "speaker", "label"]
        if labels:
            head += ["predicted", *(f"p_{x}" for x in labels)]
        head += [f"{x}_rated" for x in names] + list(names)
        writer.writerow(head)
        for i, row in enumerate(rows):
            line = [row.utt_id, row.speaker, row.label]
            if labels:
                p = predicted.probabilities[i]
                line += [labels[int(p.argmax())], *(f"{x:.5f}" for x in p)]
            line += ["" if np.isnan(x) else f"{x:.5f}" for x in targets[i]]
            line += [f"{x:.5f}" for x in predicted.dimensions[i]]
            writer.writerow(line)


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
    labels, names = list(recognizer.labels), list(recognizer.dimensions)
    categorical = any(r.label in labels for r in selection.rows)
    dimensional = bool(names) and any(r.dimensions is not None for r in selection.rows)
    if not categorical and not dimensional:
        found = sorted({r.label for r in selection.rows})
        raise FoldError(
            f"nothing to score: no row has a label the model can output (rows {found}, "
            f"model {labels}) or a rating of its dimensions ({names or 'none'})"
        )
    predicted = predict_rows(recognizer, selection.rows, progress)
    metrics: dict[str, Any] = {
        "bundle": str(bundle),
        "corpus": str(prepared),
        "rows": selection.description,
    }
    if categorical:
        metrics.update(compute_metrics(selection.rows, predicted.probabilities, labels))
    if (dims := dimension_metrics(selection.rows, predicted.dimensions, names)) is not None:
        metrics["dimensions"] = dims
    out.mkdir(parents=True, exist_ok=True)
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    write_predictions(out / PREDICTIONS_FILE, selection.rows, predicted, labels, names)
    if categorical:
        title = f"{Path(bundle).name} on {Path(prepared).name} ({selection.description})"
        plot_confusion(metrics["confusion"], labels, title[:80], out / CONFUSION_PNG)
    return metrics


def _cell(metrics: Mapping[str, Any]) -> str:
    """UA (n), and the mean CCC when the bundle has dimensions and the corpus ratings."""
    parts = [f"{100 * metrics['ua']:.2f} (n={metrics['n']})"] if "ua" in metrics else []
    if dims := metrics.get("dimensions"):
        parts.append(f"CCC {dims['mean_ccc']:.3f} (n={dims['n']})")
    return "; ".join(parts) or "–"


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
    lines = ["# Cross-corpus UA (%) and mean CCC", "", header, "|---" * (len(corpora) + 1) + "|"]
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
            cells.append(_cell(metrics))
        lines.append(f"| {bundle.name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Rows: {partition}. UA is the mean recall over the classes present in each corpus "
        "that the bundle can output; rows of other labels are counted in each metrics.json. "
        "CCC: the mean over arousal, valence and dominance of the rated rows, where the "
        "bundle has dimensions and the corpus ratings.",
    ]
    path = out / "cross_corpus.md"
    out.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path
