"""`python -m training demo`: the whole pipeline on the synthetic corpus, on a laptop.

Speaks the corpus, extracts features, trains both teachers and the tiny student on one
speaker-independent fold, and leaves the student in `<out>/checkpoint/` (a Hugging Face
folder) with `<out>/report.md`.
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

from .config import RunConfig, load_config
from .run import copy_checkpoint, run_folds

DEMO_CONFIG = "demo.yaml"


def demo_config(out: Path) -> RunConfig:
    path = Path(str(resources.files("training") / "configs" / DEMO_CONFIG))
    return load_config(
        path,
        overrides={
            "out_dir": str(out / "runs"),
            "feature_cache": str(out / "cache"),
            "corpus": {"prepared_dir": str(out / "corpus")},
        },
    )


def demo(out: Path, device: str = "auto", progress: bool = True) -> Path:
    """Build the demo model into `out`; returns the checkpoint folder."""
    start = time.perf_counter()
    run = demo_config(out)
    run_dir = run_folds(run, device=device, progress=progress)
    folds = run.folds if run.folds != "all" else [0]
    checkpoint = out / "checkpoint"
    copy_checkpoint(run_dir / f"fold_{folds[0]}" / "student" / "checkpoint", checkpoint)
    report = (run_dir / "report.md").read_text()
    prefix = run_dir.relative_to(out).as_posix()
    report = report.replace("](confusion_", f"]({prefix}/confusion_")
    report = report.replace("](fold_", f"]({prefix}/fold_")
    minutes = (time.perf_counter() - start) / 60
    (out / "report.md").write_text(
        f"{report}\n\nBuilt by `python -m training demo` in {minutes:.1f} minutes. "
        f"Student checkpoint: `checkpoint/` (fold {folds[0]}).\n"
    )
    print(f"demo student: {checkpoint} ({minutes:.1f} min); report: {out / 'report.md'}")
    return checkpoint
