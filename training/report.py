"""Human-readable results of a k-fold run: Markdown tables and PNG plots.

Responsible for: reading each fold's metrics, writing `report.md` (per-fold WA/UA, mean ± std
over folds, pooled confusion matrices as PNGs), the poster's Table 2 next to our ablation
numbers, and the τ sweep figure (poster Fig. 2).

Does not know: how models are trained or evaluated, nor how metrics are computed (that is
`training.metrics`). It reads only this on-disk format, one file per fold:

    run_dir/fold_<k>/metrics.json
    {"fold": 0, "test_speakers": ["S01F"], "val_speakers": ["S01M"],
     "models": {"linguistic_teacher": <Scores.to_dict()>,
                "prosodic_teacher": <Scores.to_dict()>,
                "student": <Scores.to_dict()>}}

and, when the corpus has dimensional ratings, `"dimensions": {model: {"arousal": CCC, ...}}`
(held-out CCC per dimension of each model that predicts them), where `Scores.to_dict()` is
{"wa": float, "ua": float, "confusion": [[int]], "labels": [str]},
with WA/UA as fractions (not percent) and confusion rows = references, columns = predictions.
Any model key may be missing from a fold (a variant without that teacher); `models` is
empty for a corpus without categories, whose report holds the CCC tables alone. Folders not named
`fold_<int>`, and fold folders without metrics.json (a fold still running), are ignored.

A run on several corpora (`corpora.json` in the run folder) also gets the student's figures
per corpus, from each fold's `predictions.csv` (`utt_id,label,predicted,...`, utt_ids
prefixed `<corpus>/`), beside the pooled ones.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only, never a window: runs on headless training machines
import matplotlib.pyplot as plt
from matplotlib.ticker import NullFormatter

from .calibration import RELIABILITY_PNG
from .corpora import read_corpora_file
from .metrics import MeanStd, Scores, mean_std, score, summarize_folds

# Column order in the report; models not listed here follow in sorted order.
MODEL_ORDER = ("student", "linguistic_teacher", "prosodic_teacher")
MISSING = "—"
_FOLD_DIR = re.compile(r"fold_(\d+)")


@dataclass(frozen=True)
class PosterRow:
    key: str  # stable id used by the ablation runner and `write_ablation_table`
    label: str  # the row's name as in the poster's Table 2
    wa_percent: float
    ua_percent: float


# Poster Table 2 (HuBERT-base, IEMOCAP), in the poster's order.
POSTER_TABLE2: tuple[PosterRow, ...] = (
    PosterRow("full", "EmoDistill (full)", 75.16, 76.12),
    PosterRow("no_logits", "w/o L_logits", 73.94, 74.02),
    PosterRow("no_embeddings", "w/o L_embeddings", 73.88, 74.01),
    PosterRow("no_prosodic", "w/o f_T^P", 74.09, 72.82),
    PosterRow("no_linguistic", "w/o f_T^L", 66.01, 67.27),
    PosterRow("ce_only", "w/o f_T^P and f_T^L", 69.92, 70.17),
    PosterRow("prosodic_teacher", "prosodic teacher alone (f_T^P)", 49.42, 50.08),
    PosterRow("linguistic_teacher", "linguistic teacher alone (f_T^L)", 71.09, 71.83),
)
# Our rows beyond the poster's (no poster figures): key -> label.
EXTRA_ROWS = {"no_dimensions": "w/o the dimensional task (arousal, valence, dominance)"}


def load_fold_metrics(run_dir: Path) -> list[dict]:
    """Every `fold_<k>/metrics.json` under `run_dir`, parsed, sorted by fold number."""
    found: list[tuple[int, dict]] = []
    for child in Path(run_dir).iterdir():
        match = _FOLD_DIR.fullmatch(child.name)
        metrics_file = child / "metrics.json"
        if child.is_dir() and match and metrics_file.is_file():
            found.append((int(match.group(1)), json.loads(metrics_file.read_text())))
    return [data for _, data in sorted(found, key=lambda item: item[0])]


def plot_confusion(confusion: list[list[int]], labels: list[str], title: str, path: Path) -> None:
    """PNG heat map of a [C, C] confusion matrix: rows references, columns predictions.

    Each cell shows the count and the row-normalised percent (the recall share); the colour is
    that percent, so classes with few utterances are as readable as frequent ones.
    """
    counts = np.asarray(confusion, dtype=np.int64)
    support = counts.sum(axis=1, keepdims=True)
    # A class absent from the references has no recall: leave its row at 0 rather than NaN.
    row_percent = np.divide(100.0 * counts, support, out=np.zeros(counts.shape), where=support > 0)
    n = len(labels)
    fig, ax = plt.subplots(figsize=(1.4 * n + 2.0, 1.2 * n + 1.6))
    image = ax.imshow(row_percent, cmap="Blues", vmin=0.0, vmax=100.0)
    fig.colorbar(image, ax=ax, label="row %")
    ax.set_xticks(range(n), labels, rotation=30, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    ax.set_title(title)
    for i in range(n):
        for j in range(n):
            pct = f"{row_percent[i, j]:.1f}%" if support[i, 0] else MISSING
            colour = "white" if row_percent[i, j] > 50 else "black"
            ax.text(j, i, f"{counts[i, j]}\n{pct}", ha="center", va="center", color=colour)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_run_report(run_dir: Path, title: str, extra_lines: list[str] | None = None) -> Path:
    """Write `run_dir/report.md` and one `confusion_<model>.png` per model; return the .md path."""
    run_dir = Path(run_dir)
    folds = load_fold_metrics(run_dir)
    if not folds:
        raise FileNotFoundError(f"no fold_<k>/metrics.json under {run_dir}")
    models = _models_present(folds)

    lines = [f"# {title}", ""]
    if extra_lines:
        lines += [*extra_lines, ""]
    warnings = sorted({w for f in folds for w in f.get("warnings", [])})
    if warnings:
        lines += ["## Warnings", "", *(f"- {w}" for w in warnings), ""]
    if models:  # a corpus without categories has no WA/UA to tabulate, only CCC
        lines += _categorical_sections(run_dir, folds, models)
    lines += dimensions_section(folds)
    lines += _calibration_section(folds)
    path = run_dir / "report.md"
    path.write_text("\n".join(lines))
    return path


def _categorical_sections(
    run_dir: Path, folds: list[dict[str, Any]], models: list[str]
) -> list[str]:
    """WA and UA per fold and over folds, per corpus, and the pooled confusion matrices."""
    lines = ["## Per fold (WA and UA in %)", ""]
    header = ["fold", "test speakers"]
    for model in models:
        header += [f"{_pretty(model)} WA", f"{_pretty(model)} UA"]
    lines += _table_head(header)
    for fold in folds:
        row = [str(fold["fold"]), ", ".join(fold.get("test_speakers", []))]
        for model in models:
            scores = fold["models"].get(model)
            row += [_pct(scores["wa"]), _pct(scores["ua"])] if scores else [MISSING, MISSING]
        lines.append(_table_row(row))

    lines += ["", "## Over folds (mean ± sample std, in %)", ""]
    lines += _table_head(["model", "folds", "WA", "UA", "pooled WA", "pooled UA"])
    pooled_sections: list[str] = []
    for model in models:
        per_fold = [_scores(f["models"][model]) for f in folds if model in f["models"]]
        summary = summarize_folds(per_fold)
        row = [_pretty(model), str(len(per_fold)), summary["wa"].percent()]
        row += [summary["ua"].percent(), _pct(summary["pooled_wa"].mean)]
        row.append(_pct(summary["pooled_ua"].mean))
        lines.append(_table_row(row))

        labels = _same_labels(per_fold, model)
        pooled = np.sum([np.asarray(s.confusion) for s in per_fold], axis=0).tolist()
        png = f"confusion_{model}.png"
        plot_confusion(pooled, labels, f"{_pretty(model)}, pooled over folds", run_dir / png)
        pooled_sections += [f"### {_pretty(model)}", "", f"![{_pretty(model)} confusion]({png})"]
        pooled_sections.append("")

    lines += _per_corpus_section(run_dir, folds)
    lines += ["", "## Pooled confusion matrices (rows: reference, columns: predicted)", ""]
    lines += pooled_sections
    return lines


def _per_corpus_section(run_dir: Path, folds: list[dict[str, Any]]) -> list[str]:
    """The student per corpus (mean ± std over folds, pooled) and over all corpora."""
    names = read_corpora_file(run_dir)
    if len(names) < 2 or not any("student" in f["models"] for f in folds):
        return []
    labels = folds[0]["models"]["student"]["labels"]
    per_corpus: dict[str, list[Scores]] = {name: [] for name in names}
    for fold in folds:
        path = run_dir / f"fold_{fold['fold']}" / "predictions.csv"
        if not path.is_file():
            continue
        with path.open(newline="") as f:
            predictions = list(csv.DictReader(f))
        for name in names:
            mine = [p for p in predictions if p["utt_id"].startswith(f"{name}/")]
            if mine:
                y_true = [labels.index(p["label"]) for p in mine]
                y_pred = [labels.index(p["predicted"]) for p in mine]
                per_corpus[name].append(score(y_true, y_pred, labels))
    lines = ["", "## Student per corpus (WA and UA in %, mean ± sample std over folds)", ""]
    lines += _table_head(["corpus", "folds", "test clips", "WA", "UA", "pooled WA", "pooled UA"])
    everything = [_scores(f["models"]["student"]) for f in folds if "student" in f["models"]]
    for name, per_fold in [*per_corpus.items(), ("all corpora", everything)]:
        if not per_fold:
            lines.append(_table_row([name, "0", "0", *[MISSING] * 4]))
            continue
        summary = summarize_folds(per_fold)
        clips = sum(int(np.sum(s.confusion)) for s in per_fold)
        row = [name, str(len(per_fold)), str(clips), summary["wa"].percent()]
        row += [summary["ua"].percent(), _pct(summary["pooled_wa"].mean)]
        lines.append(_table_row([*row, _pct(summary["pooled_ua"].mean)]))
    return lines


def dimensions_section(folds: list[dict[str, Any]]) -> list[str]:
    """Held-out CCC per dimension, per fold and over folds, for each model that has it."""
    rated = [f for f in folds if f.get("dimensions")]
    if not rated:
        return []
    models = _in_order({model for fold in rated for model in fold["dimensions"]})
    names = list(next(iter(rated[0]["dimensions"].values())))
    lines = ["## Arousal, valence, dominance (CCC on the held-out speakers)", ""]
    lines += _table_head(["fold", "model", *names])
    for fold in rated:
        for model in models:
            ccc = fold["dimensions"].get(model)
            cells = [f"{ccc[n]:.3f}" for n in names] if ccc else [MISSING] * len(names)
            lines.append(_table_row([str(fold["fold"]), _pretty(model), *cells]))
    lines += ["", "Over folds (mean ± sample std):", ""]
    lines += _table_head(["model", "folds", *names])
    for model in models:
        per_fold = [f["dimensions"][model] for f in rated if model in f["dimensions"]]
        cells = []
        for n in names:
            ms = mean_std([c[n] for c in per_fold])
            cells.append(f"{ms.mean:.3f} ± {ms.std:.3f}")
        lines.append(_table_row([_pretty(model), str(len(per_fold)), *cells]))
    return [*lines, ""]


def _calibration_section(folds: list[dict[str, Any]]) -> list[str]:
    """Temperature scaling per fold (fitted on its validation speakers) and its diagrams."""
    calibrated = [f for f in folds if f.get("calibration")]
    if not calibrated:
        return []
    lines = ["## Calibration of the student (temperature scaling)", ""]
    header = ["fold", "T", "on", "clips", "ECE before", "ECE after", "NLL before", "NLL after"]
    lines += _table_head(header)
    figures = ("ece_before", "ece_after", "nll_before", "nll_after")
    for fold in calibrated:
        t = f"{fold['calibration']['temperature']:.3f}"
        sets = [("validation (fitted)", fold["calibration"])]
        if fold.get("calibration_on_test"):
            sets.append(("test (held out)", fold["calibration_on_test"]))
        for name, c in sets:
            row = [str(fold["fold"]), t, name, str(c["clips"])]
            lines.append(_table_row(row + [f"{c[k]:.4f}" for k in figures]))
    lines += ["", f"ECE over {calibrated[0]['calibration']['bins']} equal-width bins.", ""]
    for fold in calibrated:
        png = f"fold_{fold['fold']}/{RELIABILITY_PNG}"
        lines += [f"![fold {fold['fold']} reliability]({png})", ""]
    return lines


def write_ablation_table(
    results: dict[str, tuple[MeanStd, MeanStd]], path: Path, note: str = ""
) -> None:
    """Markdown table: poster Table 2 beside ours. `results` maps a POSTER_TABLE2 key to
    (WA, UA) over folds as fractions; rows without results say "not run"."""
    full = results.get("full")
    lines = ["# Ablations (IEMOCAP, HuBERT-base): poster Table 2 vs ours", ""]
    if note:
        lines += [note, ""]
    lines += _table_head(
        ["Variant", "poster WA", "poster UA", "ours WA", "ours UA", "Δ UA vs our full"]
    )
    for row in POSTER_TABLE2:
        cells = [row.label, f"{row.wa_percent:.2f}", f"{row.ua_percent:.2f}"]
        if row.key not in results:
            lines.append(_table_row([*cells, "not run", "not run", MISSING]))
            continue
        wa, ua = results[row.key]
        delta = MISSING if full is None or row.key == "full" else _delta(ua.mean - full[1].mean)
        lines.append(_table_row([*cells, wa.percent(), ua.percent(), delta]))
    for key, label in EXTRA_ROWS.items():
        if key in results:
            wa, ua = results[key]
            delta = MISSING if full is None else _delta(ua.mean - full[1].mean)
            cells = [label, MISSING, MISSING, wa.percent(), ua.percent(), delta]
            lines.append(_table_row(cells))
    lines += ["", "Ours: mean ± sample std over folds, in %. Δ in percentage points."]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(lines) + "\n")


def plot_tau_sweep(
    prosodic: list[tuple[float, MeanStd]], linguistic: list[tuple[float, MeanStd]], path: Path
) -> None:
    """Poster Fig. 2: UA (%) vs τ_P without f_T^L (left), vs τ_L without f_T^P (right).

    Each list holds (τ, UA over folds as fractions); error bars are the std over folds.
    """
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    panels = (
        (axes[0], prosodic, r"$\tau_P$", r"w/o $f_T^L$, vary $\tau_P$", "tab:orange"),
        (axes[1], linguistic, r"$\tau_L$", r"w/o $f_T^P$, vary $\tau_L$", "tab:blue"),
    )
    for ax, points, xlabel, title, colour in panels:
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_xscale("log")
        ax.grid(True, which="both", alpha=0.3)
        if not points:
            ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes)
            continue
        points = sorted(points, key=lambda p: p[0])
        taus = [tau for tau, _ in points]
        ax.errorbar(
            taus,
            [100 * ms.mean for _, ms in points],
            yerr=[100 * ms.std for _, ms in points],
            marker="o",
            capsize=4,
            color=colour,
        )
        ax.set_xticks(taus, [f"{tau:g}" for tau in taus])
        # Log axes add minor labels such as "6×10⁻¹" that crowd out the swept values.
        ax.xaxis.set_minor_formatter(NullFormatter())
    axes[0].set_ylabel("UA (%)")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _models_present(folds: list[dict]) -> list[str]:
    """The models with categorical scores (`models`) in any fold, in MODEL_ORDER first."""
    return _in_order({model for fold in folds for model in fold["models"]})


def _in_order(present: set[str]) -> list[str]:
    known = [m for m in MODEL_ORDER if m in present]
    return known + sorted(present - set(MODEL_ORDER))


def _scores(data: dict) -> Scores:
    return Scores(float(data["wa"]), float(data["ua"]), data["confusion"], list(data["labels"]))


def _same_labels(per_fold: list[Scores], model: str) -> list[str]:
    # Summing confusions is only meaningful when every fold uses one label order.
    labels = per_fold[0].labels
    if any(s.labels != labels for s in per_fold):
        raise ValueError(f"{model}: folds disagree on the label order; cannot pool confusions")
    return labels


def _pretty(model: str) -> str:
    return model.replace("_", " ")


def _pct(fraction: float) -> str:
    return f"{100 * fraction:.2f}"


def _delta(fraction: float) -> str:
    """Like the poster's "(↓ 2.10)": percentage points, arrow for the sign."""
    points = round(100 * fraction, 2)
    if points == 0:
        return "(0.00)"
    return f"({'↑' if points > 0 else '↓'} {abs(points):.2f})"


def _table_head(columns: list[str]) -> list[str]:
    return [_table_row(columns), _table_row(["---"] * len(columns))]


def _table_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"
