"""A k-fold EmoDistill run: corpus -> features -> teachers -> student, per fold, then a report.

Layout of `runs/<name>/`:
  resolved_config.yaml
  fold_<k>/teachers/{linguistic,prosodic}/   frozen teachers and their cached outputs
  fold_<k>/student/checkpoint/               the student (a Hugging Face folder), best on val
  fold_<k>/metrics.json                      WA, UA, confusion for both teachers and the student,
                                             CCC per dimension where rated (CCC alone for a
                                             corpus without categories: no UA, no calibration)
  report.md (+ confusion PNGs)
Ablations and τ sweeps are variants (`variant_dir`) that reuse the run's teachers.
Under torchrun every rank runs this; rank 0 alone prepares data and trains teachers.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from emodistill.bundle import (
    DIMENSION_NAMES,
    TRAINING_METRICS,
    Calibration,
    DimensionsTraining,
    TrainingData,
    TrainingRecord,
)
from emodistill.scoring import probabilities
from student.model import EmoDistillStudent

from .calibration import RELIABILITY_PNG, calibrate, held_out, plot_reliability
from .config import RunConfig, save_config
from .corpora import all_corpora, load_training_data, write_corpora_file
from .corpus.acted import ACTED_NOTES
from .corpus.manifest import Utterance, read_dimension_scale
from .corpus.prepare import prepare_corpus
from .corpus.reading import CORPUS_TITLES
from .data import NO_LABEL, Clip, ratings_of
from .data_checks import linguistic_teacher_warning
from .distill_loss import TEACHERS
from .distributed import DistContext, init_distributed
from .features import EgemapsCache, extract_all
from .folds import Fold, FoldSplit, split
from .metrics import Scores, concordance_per_dimension
from .report import write_run_report
from .student_eval import predict_student, score_clips
from .teachers.fit import TeacherResult, train_linguistic_teacher, train_prosodic_teacher
from .trainer import StudentTrainer, TeacherTargets, TrainResult


def select_folds(spec: str | Sequence[int], n_folds: int) -> list[int]:
    """'all', '0,3' or [0, 3] -> fold indices, checked against the number of folds."""
    if spec == "all":
        return list(range(n_folds))
    chosen = [int(k) for k in spec.split(",")] if isinstance(spec, str) else list(spec)
    bad = [k for k in chosen if not 0 <= k < n_folds]
    if bad:
        raise ValueError(f"folds {bad} do not exist; this corpus has folds 0 … {n_folds - 1}")
    return chosen


def _clips(rows: Sequence[Utterance], labels: list[str]) -> list[Clip]:
    return [
        Clip(
            r.utt_id,
            r.path,
            labels.index(r.label) if r.label else NO_LABEL,
            r.duration_s,
            r.dimensions,
        )
        for r in rows
    ]


def _labelled(clips: Sequence[Clip], values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(values, labels) of the clips that have a label."""
    keep = [i for i, c in enumerate(clips) if c.label != NO_LABEL]
    return values[keep], np.array([clips[i].label for i in keep])


class Experiment:
    """Everything a run's folds share: config, rows, labels, folds, feature cache, ranks."""

    def __init__(self, run: RunConfig, device: str = "auto", progress: bool = True):
        self.run = run
        self.ctx: DistContext = init_distributed(device)
        self.progress = progress and self.ctx.is_main
        if self.ctx.is_main:
            for corpus in all_corpora(run):
                prepare_corpus(corpus, progress=self.progress)
            save_config(run, run.run_dir / "resolved_config.yaml")
        self.ctx.barrier()
        data = load_training_data(run)  # one corpus as prepared, or several combined
        self.rows, self.labels, self.corpus_names = data.rows, data.labels, data.names
        self.folds: list[Fold] = data.folds
        if self.ctx.is_main:
            write_corpora_file(run.run_dir, data)
        self.cache = EgemapsCache(run.feature_cache)
        if self.ctx.is_main:
            print(extract_all([r.path for r in self.rows], self.cache, progress=self.progress))
        self.ctx.barrier()

    def fold_dir(self, k: int) -> Path:
        return self.run.run_dir / f"fold_{k}"

    def teachers(self, k: int, parts: FoldSplit) -> dict[str, TeacherResult]:
        """Both frozen teachers of fold k: trained once on rank 0, read from disk after."""
        out = self.fold_dir(k) / "teachers"
        device = str(self.ctx.device)
        seed = self.run.optim.seed
        results: dict[str, TeacherResult] = {}
        for rank_turn in (True, False):  # rank 0 trains first; the others then load
            if self.ctx.is_main == rank_turn:
                results = {
                    "linguistic": train_linguistic_teacher(
                        self.run.linguistic,
                        parts,
                        self.labels,
                        out / "linguistic",
                        seed,
                        device,
                        self.progress,
                    ),
                    "prosodic": train_prosodic_teacher(
                        self.run.prosodic,
                        parts,
                        self.labels,
                        self.cache,
                        out / "prosodic",
                        seed,
                        device,
                        self.progress,
                    ),
                }
            self.ctx.barrier()
        return results

    def _calibrate(self, k: int, val: list[Clip], val_logits: np.ndarray, out: Path) -> Calibration:
        """Temperature scaling on the fold's validation speakers; a reliability diagram."""
        val_logits, labels = _labelled(val, val_logits)
        fold = self.folds[k]
        fitted_on = f"fold {k} validation speakers ({', '.join(fold.val_speakers)})"
        calibration = calibrate(val_logits, labels, fitted_on)
        title = f"Fold {k}: student on its validation speakers"
        plot_reliability(val_logits, labels, calibration.temperature, title, out / RELIABILITY_PNG)
        return calibration

    def _dimensions(
        self, test: list[Clip], student_dims: np.ndarray | None, teachers: dict[str, TeacherResult]
    ) -> dict[str, dict[str, float]]:
        """Held-out CCC per dimension of each model that predicts dimensions ({} if none)."""
        found = {f"{t}_teacher": r.test_ccc for t, r in teachers.items() if r.test_ccc}
        if student_dims is not None:
            ratings = ratings_of(test)
            found["student"] = concordance_per_dimension(student_dims, ratings, DIMENSION_NAMES)
        return found

    def _dimensions_record(
        self, train: list[Clip], val: list[Clip], test_ccc: dict[str, float] | None
    ) -> DimensionsTraining | None:
        scales = [read_dimension_scale(c.prepared_dir) for c in all_corpora(self.run)]
        sources = [s.source for s in scales if s is not None]  # several with more_corpora
        if test_ccc is None or not sources:
            return None
        rated = sum(c.dimensions is not None for c in [*train, *val])
        return DimensionsTraining(targets="; ".join(sources), utterances=rated, test_ccc=test_ccc)

    def _trained_on(self, k: int, parts: FoldSplit, test: Scores | None) -> TrainingData:
        """What the student learned from; `test` None: no categories, so no UA/WA."""
        corpus = self.run.corpus
        seen = [*parts.train, *parts.val]
        return TrainingData(
            corpus=" + ".join(self.corpus_names)
            if self.run.more_corpora
            else CORPUS_NAMES.get(corpus.kind, corpus.prepared_dir.name),
            utterances=len(seen),
            speakers=len({u.speaker for u in seen}),
            protocol=corpus.protocol,
            fold=k,
            test_speakers=list(self.folds[k].test_speakers),
            test_ua=test.ua if test is not None else None,
            test_wa=test.wa if test is not None else None,
        )

    def _evaluate_fold(
        self,
        k: int,
        run: RunConfig,
        out: Path,
        parts: FoldSplit,
        clips: tuple[list[Clip], list[Clip], list[Clip]],
        teachers: dict[str, TeacherResult],
        result: TrainResult,
    ) -> dict:
        """Fold k's trained student on its test (and validation) speakers: metrics.json, and
        training_metrics.json beside the checkpoint. Without categories: CCC only, no UA/WA
        and no calibration (there are no logits to calibrate)."""
        train, val, test = clips
        fold = self.folds[k]
        categorical = bool(self.labels)
        text_warning = None
        if categorical:
            text_warning = linguistic_teacher_warning(
                teachers["linguistic"].val.ua, len(self.labels), run.loss.use_linguistic
            )
        if text_warning:
            print(f"fold {k}: {text_warning}")
        student = EmoDistillStudent.load(out / "student" / "checkpoint").to(self.ctx.device)
        batch_audio_s = run.optim.per_device_batch_size * run.optim.max_train_audio_s
        n_labels, device = len(self.labels), self.ctx.device
        test_logits, test_dims = predict_student(student, test, n_labels, device, batch_audio_s)
        test_scores = score_clips(test, test_logits, self.labels)
        metrics: dict = {
            "fold": k,
            "test_speakers": list(fold.test_speakers),
            "val_speakers": list(fold.val_speakers),
        }
        calibration = None
        if categorical:
            _write_predictions(
                out / "predictions.csv", test, probabilities(test_logits), self.labels
            )
            val_logits, _ = predict_student(student, val, n_labels, device, batch_audio_s)
            calibration = self._calibrate(k, val, val_logits, out)
            on_test = held_out(*_labelled(test, test_logits), calibration.temperature)
            metrics |= {
                "models": {
                    "linguistic_teacher": teachers["linguistic"].test.to_dict(),
                    "prosodic_teacher": teachers["prosodic"].test.to_dict(),
                    "student": test_scores.to_dict(),
                },
                "student_val": result.best_val.to_dict(),
                "calibration": calibration.model_dump(),
                "calibration_on_test": on_test,
            }
        else:
            metrics |= {"models": {}, "student_val_ccc": result.best_val_ccc, "calibration": None}
        figures = asdict(result)
        metrics["training"] = {k: v for k, v in figures.items() if not k.startswith("best_val")}
        metrics["warnings"] = [text_warning] if text_warning else []
        test_ccc = self._dimensions(test, test_dims, teachers)
        if test_ccc:
            metrics["dimensions"] = test_ccc
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        # Beside the checkpoint, so an exported bundle can say what its model learned
        # from, how it scored on unheard speakers, and how to calibrate it.
        record = TrainingRecord(
            fold=k,
            test_speakers=list(fold.test_speakers),
            student_val=result.best_val.to_dict() if categorical else None,
            test=test_scores.to_dict() if categorical else None,
            calibration=calibration,
            trained_on=self._trained_on(k, parts, test_scores if categorical else None),
            note=None if self.run.more_corpora else CORPUS_NOTES.get(self.run.corpus.kind),
            dimensions=self._dimensions_record(train, val, test_ccc.get("student")),
        )
        checkpoint_metrics = out / "student" / "checkpoint" / TRAINING_METRICS
        summary = record.model_dump(exclude_none=True)
        checkpoint_metrics.write_text(json.dumps(summary, indent=2) + "\n")
        return metrics

    def run_fold(
        self,
        k: int,
        variant_dir: Path | None = None,
        run: RunConfig | None = None,
        resume: bool = False,
    ) -> dict:
        """Teachers (shared), then the student of `run` (a variant's config) for fold k."""
        run = run or self.run
        fold = self.folds[k]
        parts = split(self.rows, fold)
        teachers = self.teachers(k, parts)
        out = (variant_dir or self.run.run_dir) / f"fold_{k}"
        train, val, test = (_clips(p, self.labels) for p in (parts.train, parts.val, parts.test))
        used = [t for t in TEACHERS if getattr(run.loss, f"use_{t}")]
        selected = {t: teachers[t].outputs.select([c.utt_id for c in train]) for t in used}
        embeddings = {t: torch.from_numpy(v[1]) for t, v in selected.items()}
        if run.loss.center_teacher_embeddings:  # mean over this fold's training clips only
            embeddings = {t: e - e.mean(dim=0, keepdim=True) for t, e in embeddings.items()}
        ids = [c.utt_id for c in train]
        dimensions = {
            t: torch.from_numpy(d)
            for t in used
            if (d := teachers[t].outputs.select_dimensions(ids)) is not None
        }
        targets = TeacherTargets(
            logits={t: torch.from_numpy(v[0]) for t, v in selected.items()},
            embeddings=embeddings,
            dimensions=dimensions,
        )
        trainer = StudentTrainer(
            run, self.labels, train, val, targets, out / "student", self.ctx, self.progress
        )
        result = trainer.train(resume=resume)
        metrics: dict = {}
        if self.ctx.is_main:
            metrics = self._evaluate_fold(k, run, out, parts, (train, val, test), teachers, result)
        self.ctx.barrier()
        return metrics


# What a user must be told about a model, by the corpus it learned from.
CORPUS_NOTES = {
    **ACTED_NOTES,
    "synthetic": "Demo model: it learned from synthetic espeak-ng speech, where emotion is "
    "acted by pitch, rate and word choice. It does not recognise emotion in real voices; "
    "train on IEMOCAP (training/configs/iemocap_hubert_base.yaml) for that. Its arousal, "
    "valence and dominance were learned from synthetic targets, not anyone's ratings.",
}
CORPUS_NAMES = {**CORPUS_TITLES, "synthetic": "synthetic (espeak-ng)"}


def _write_predictions(path: Path, clips: list[Clip], probs: np.ndarray, labels: list[str]) -> None:
    """One row per test clip: its label, the prediction and probabilities [C]."""
    lines = ["utt_id,label,predicted," + ",".join(f"p_{label}" for label in labels)]
    for clip, p in zip(clips, probs, strict=True):
        values = ",".join(f"{x:.5f}" for x in p)
        label = labels[clip.label] if clip.label != NO_LABEL else ""
        lines.append(f"{clip.utt_id},{label},{labels[int(p.argmax())]},{values}")
    path.write_text("\n".join(lines) + "\n")


def run_folds(
    run: RunConfig,
    folds: str | Sequence[int] | None = None,
    resume: bool = False,
    device: str = "auto",
    progress: bool = True,
) -> Path:
    """`python -m training run`: every selected fold, then report.md. Returns the run folder."""
    exp = Experiment(run, device, progress)
    chosen = select_folds(folds if folds is not None else run.folds, len(exp.folds))
    for k in chosen:
        if exp.ctx.is_main:
            print(f"fold {k}: test {exp.folds[k].test_speakers}, val {exp.folds[k].val_speakers}")
        exp.run_fold(k, resume=resume)
    if exp.ctx.is_main:
        path = write_run_report(run.run_dir, f"EmoDistill run `{run.name}`")
        print(f"report: {path}")
    return run.run_dir


def copy_checkpoint(src: Path, dst: Path) -> None:
    """Copy a student checkpoint folder (used by the demo)."""
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
