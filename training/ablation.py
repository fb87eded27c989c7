"""The poster's ablations (Table 2) and temperature sweeps (Fig. 2), as variants of one run.

A variant changes only the loss config; it reuses the run's frozen teachers and writes its
students under `runs/<name>/ablation/<variant>/` or `runs/<name>/sweep/<variant>/`. The
`full` variant is the run itself. A fold whose metrics.json exists is not trained again,
provided the variant's saved config matches.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

from .config import LossConfig, RunConfig
from .metrics import MeanStd, mean_std
from .report import load_fold_metrics, plot_tau_sweep, write_ablation_table
from .run import Experiment, select_folds

# Table 2 rows trained as students, by the loss settings that make them.
VARIANTS: dict[str, dict[str, object]] = {
    "full": {},
    "no_logits": {"alpha": 0.0},
    "no_embeddings": {"beta": 0.0},
    "no_prosodic": {"use_prosodic": False},
    "no_linguistic": {"use_linguistic": False},
    "ce_only": {"use_linguistic": False, "use_prosodic": False},
    # Ours: does learning arousal, valence and dominance beside the categories help UA?
    # (Trains as `full` when the corpus has no ratings.)
    "no_dimensions": {"dimensions": {"enabled": False}},
}
DEFAULT_TAUS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def variant(run: RunConfig, **loss: object) -> RunConfig:
    """`run` with these loss settings; a dict value updates that nested block's fields."""
    data = run.loss.model_dump()
    for key, value in loss.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) else value
    return run.model_copy(update={"loss": LossConfig.model_validate(data)})


def _run_variant(
    exp: Experiment, name: str, folds: list[int], config: RunConfig, out: Path
) -> list[dict]:
    """Train the folds of one variant that have no metrics yet; return all its fold metrics."""
    record = out / "variant.yaml"
    loss = config.loss.model_dump(mode="json")
    if exp.ctx.is_main:
        if record.is_file() and yaml.safe_load(record.read_text()) != loss:
            raise ValueError(f"{record} holds another loss config; delete {out} to redo it")
        out.mkdir(parents=True, exist_ok=True)
        record.write_text(yaml.safe_dump(loss))
    for k in folds:
        if (out / f"fold_{k}" / "metrics.json").is_file():
            continue
        if exp.ctx.is_main:
            print(f"{name}: fold {k}")
        exp.run_fold(k, variant_dir=out, run=config)
    return [m for m in load_fold_metrics(out) if m["fold"] in folds]


def _require_categories(exp: Experiment, command: str) -> None:
    """Both commands compare UA across variants; a corpus rated only in dimensions has none."""
    if not exp.labels:
        raise ValueError(
            f"{command} compares the student's UA across variants, and this corpus has no "
            "categories (rated in dimensions only); `run` reports its CCC per dimension"
        )


def _student(metrics: list[dict], model: str = "student") -> tuple[MeanStd, MeanStd]:
    scores = [m["models"][model] for m in metrics]
    return mean_std([s["wa"] for s in scores]), mean_std([s["ua"] for s in scores])


def ablate(
    run: RunConfig,
    folds: str | Sequence[int] | None = None,
    variants: Sequence[str] = tuple(VARIANTS),
    device: str = "auto",
    progress: bool = True,
) -> Path:
    """Train every Table 2 variant; write runs/<name>/ablation.md. Returns its path."""
    exp = Experiment(run, device, progress)
    _require_categories(exp, "ablate")
    chosen = select_folds(folds if folds is not None else run.folds, len(exp.folds))
    results: dict[str, tuple[MeanStd, MeanStd]] = {}
    for name in variants:
        out = run.run_dir if name == "full" else run.run_dir / "ablation" / name
        metrics = _run_variant(exp, name, chosen, variant(run, **VARIANTS[name]), out)
        results[name] = _student(metrics)
        if name == "full":  # the teachers alone: the last two rows
            results["linguistic_teacher"] = _student(metrics, "linguistic_teacher")
            results["prosodic_teacher"] = _student(metrics, "prosodic_teacher")
    path = run.run_dir / "ablation.md"
    if exp.ctx.is_main:
        note = (
            f"Folds {chosen} of `{run.name}` ({run.corpus.kind} corpus, student "
            f"{run.student.pretrained or run.student.preset}); ours are mean ± std over folds."
        )
        write_ablation_table(results, path, note)
        print(path.read_text())
    return path


def sweep_tau(
    run: RunConfig,
    folds: str | Sequence[int] | None = None,
    taus: Sequence[float] = DEFAULT_TAUS,
    device: str = "auto",
    progress: bool = True,
) -> Path:
    """Fig. 2: τ_P swept without the linguistic teacher, τ_L without the prosodic one."""
    exp = Experiment(run, device, progress)
    _require_categories(exp, "sweep-tau")
    chosen = select_folds(folds if folds is not None else run.folds, len(exp.folds))
    curves: dict[str, list[tuple[float, MeanStd]]] = {"prosodic": [], "linguistic": []}
    for tau in taus:
        for teacher, other in (("prosodic", "linguistic"), ("linguistic", "prosodic")):
            config = variant(run, **{f"use_{other}": False, f"tau_{teacher}": tau})
            out = run.run_dir / "sweep" / f"{teacher}_tau_{tau:g}"
            metrics = _run_variant(exp, out.name, chosen, config, out)
            curves[teacher].append((tau, _student(metrics)[1]))
    path = run.run_dir / "tau_sweep.png"
    if exp.ctx.is_main:
        plot_tau_sweep(curves["prosodic"], curves["linguistic"], path)
        lines = [
            "| τ | UA, prosodic teacher only (τ_P) | UA, linguistic teacher only (τ_L) |",
            "|---|---|---|",
        ]
        for (tau, p), (_, ling) in zip(curves["prosodic"], curves["linguistic"], strict=True):
            lines.append(f"| {tau:g} | {p.percent()} | {ling.percent()} |")
        (run.run_dir / "tau_sweep.md").write_text("\n".join(lines) + "\n\n![](tau_sweep.png)\n")
        print("\n".join(lines))
    return path
