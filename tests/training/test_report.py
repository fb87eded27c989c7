"""Run report, ablation table and τ sweep plot on hand-made fold metrics.

Numbers are compared as the exact strings the report prints (2 decimals, in %).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.metrics import MeanStd
from training.report import (
    POSTER_TABLE2,
    load_fold_metrics,
    plot_confusion,
    plot_tau_sweep,
    write_ablation_table,
    write_run_report,
)

LABELS = ["neu", "ang"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def scores(confusion: list[list[int]]) -> dict:
    """Scores.to_dict() of a 2-class confusion, WA and UA worked out here by hand."""
    (a, b), (c, d) = confusion
    wa = (a + d) / (a + b + c + d)
    ua = (a / (a + b) + d / (c + d)) / 2
    return {"wa": wa, "ua": ua, "confusion": confusion, "labels": LABELS}


def write_fold(run_dir: Path, fold: int, speaker: str, models: dict) -> None:
    folder = run_dir / f"fold_{fold}"
    folder.mkdir(parents=True)
    data = {"fold": fold, "test_speakers": [speaker], "val_speakers": ["X"], "models": models}
    (folder / "metrics.json").write_text(json.dumps(data))


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    # Student: fold 0 WA 6/8 = 75.00, UA (3/4 + 3/4)/2 = 75.00;
    #          fold 1 WA 5/6 = 83.33, UA (4/4 + 1/2)/2 = 75.00.
    # Prosodic teacher only in fold 0 (a variant that dropped it later).
    write_fold(
        tmp_path,
        0,
        "S01F",
        {
            "student": scores([[3, 1], [1, 3]]),
            "linguistic_teacher": scores([[4, 0], [2, 2]]),
            "prosodic_teacher": scores([[2, 2], [2, 2]]),
        },
    )
    write_fold(
        tmp_path,
        1,
        "S01M",
        {"student": scores([[4, 0], [1, 1]]), "linguistic_teacher": scores([[4, 0], [0, 2]])},
    )
    (tmp_path / "logs").mkdir()  # not a fold: ignored
    (tmp_path / "fold_2").mkdir()  # fold still running, no metrics yet: ignored
    return tmp_path


def is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC


def test_load_fold_metrics_sorts_numerically_and_ignores_other_folders(tmp_path: Path):
    for fold in (10, 2, 0):
        write_fold(tmp_path, fold, f"S{fold}", {"student": scores([[1, 0], [0, 1]])})
    (tmp_path / "fold_x").mkdir()
    (tmp_path / "notes.txt").write_text("not a fold")
    assert [f["fold"] for f in load_fold_metrics(tmp_path)] == [0, 2, 10]


def test_run_report_per_fold_rows(run_dir: Path):
    text = write_run_report(run_dir, "Demo run", ["config: demo.yaml"]).read_text()
    assert text.startswith("# Demo run\n\nconfig: demo.yaml\n")
    # Columns: student, linguistic teacher, prosodic teacher (WA then UA each).
    assert "| 0 | S01F | 75.00 | 75.00 | 75.00 | 75.00 | 50.00 | 50.00 |" in text
    assert "| 1 | S01M | 83.33 | 75.00 | 100.00 | 100.00 | — | — |" in text
    assert "\n| 2 | " not in text  # fold_2 has no metrics.json yet


def test_run_report_mean_std_rows(run_dir: Path):
    text = (write_run_report(run_dir, "Demo run")).read_text()
    # WA: mean (0.75 + 5/6)/2 = 79.17; sample std |5/6 - 0.75|/√2 = 5.89.
    # Pooled student confusion [[7, 1], [2, 4]]: WA 11/14 = 78.57, UA (7/8 + 4/6)/2 = 77.08.
    assert "| student | 2 | 79.17 ± 5.89 | 75.00 ± 0.00 | 78.57 | 77.08 |" in text
    # Linguistic: WA 0.75 and 1.0 -> 87.50 ± 17.68; UA the same.
    assert "| linguistic teacher | 2 | 87.50 ± 17.68 | 87.50 ± 17.68 |" in text
    # The prosodic teacher exists in one fold only: its std is 0 by definition.
    assert "| prosodic teacher | 1 | 50.00 ± 0.00 | 50.00 ± 0.00 | 50.00 | 50.00 |" in text


def test_run_report_confusion_pngs(run_dir: Path):
    text = write_run_report(run_dir, "Demo run").read_text()
    for model in ("student", "linguistic_teacher", "prosodic_teacher"):
        assert is_png(run_dir / f"confusion_{model}.png"), model
        assert f"](confusion_{model}.png)" in text


def test_run_report_without_a_model(tmp_path: Path):
    write_fold(tmp_path, 0, "S01F", {"student": scores([[3, 1], [1, 3]])})
    text = write_run_report(tmp_path, "Student only").read_text()
    assert "teacher" not in text
    assert not (tmp_path / "confusion_linguistic_teacher.png").exists()


def test_run_report_needs_folds(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        write_run_report(tmp_path, "empty")


def test_plot_confusion_with_an_absent_class(tmp_path: Path):
    path = tmp_path / "sub" / "cm.png"
    plot_confusion([[5, 1, 0], [0, 0, 0], [2, 0, 3]], ["neu", "ang", "sad"], "title", path)
    assert is_png(path)


def test_poster_table2_rows():
    assert [r.key for r in POSTER_TABLE2] == [
        "full",
        "no_logits",
        "no_embeddings",
        "no_prosodic",
        "no_linguistic",
        "ce_only",
        "prosodic_teacher",
        "linguistic_teacher",
    ]
    by_key = {r.key: r for r in POSTER_TABLE2}
    assert (by_key["full"].wa_percent, by_key["full"].ua_percent) == (75.16, 76.12)
    assert (by_key["no_linguistic"].wa_percent, by_key["no_linguistic"].ua_percent) == (
        66.01,
        67.27,
    )
    assert by_key["ce_only"].label == "w/o f_T^P and f_T^L"


def test_ablation_table(tmp_path: Path):
    results = {
        "full": (MeanStd(0.75, 0.01, 10), MeanStd(0.76, 0.02, 10)),
        "no_logits": (MeanStd(0.74, 0.01, 10), MeanStd(0.74, 0.015, 10)),
    }
    path = tmp_path / "ablation.md"
    write_ablation_table(results, path, note="2 folds only")
    text = path.read_text()
    assert "2 folds only" in text
    assert "| EmoDistill (full) | 75.16 | 76.12 | 75.00 ± 1.00 | 76.00 ± 2.00 | — |" in text
    # Δ UA = 74.00 - 76.00 = -2.00 points.
    assert "| w/o L_logits | 73.94 | 74.02 | 74.00 ± 1.00 | 74.00 ± 1.50 | (↓ 2.00) |" in text
    assert "| w/o f_T^L | 66.01 | 67.27 | not run | not run | — |" in text
    assert text.count("not run | not run") == len(POSTER_TABLE2) - 2


def test_ablation_table_without_full_has_no_delta(tmp_path: Path):
    path = tmp_path / "ablation.md"
    write_ablation_table({"ce_only": (MeanStd(0.7, 0.0, 1), MeanStd(0.71, 0.0, 1))}, path)
    assert "| w/o f_T^P and f_T^L | 69.92 | 70.17 | 70.00 ± 0.00 | 71.00 ± 0.00 | — |" in (
        path.read_text()
    )


def test_tau_sweep_plot(tmp_path: Path):
    prosodic = [(2.0, MeanStd(0.70, 0.02, 3)), (0.5, MeanStd(0.72, 0.01, 3))]
    linguistic = [(1.0, MeanStd(0.73, 0.02, 3)), (4.0, MeanStd(0.75, 0.01, 3))]
    path = tmp_path / "tau_sweep.png"
    plot_tau_sweep(prosodic, linguistic, path)
    assert is_png(path)
    half = tmp_path / "half.png"
    plot_tau_sweep(prosodic, [], half)  # one sweep not run yet
    assert is_png(half)
