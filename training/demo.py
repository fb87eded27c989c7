"""`python -m training demo`: the whole pipeline on a laptop, on the synthetic corpus or a real one.

Speaks the synthetic corpus (or, with `--corpus cremad|emodb|ravdess --root DIR`, prepares
that freely downloadable corpus from its folder), extracts features, trains both teachers and
the tiny student on one speaker-independent fold, and leaves the student in
`<out>/checkpoint/` (a Hugging Face folder) with `<out>/report.md`.
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

from .config import RunConfig, load_config

DEMO_CONFIG = "demo.yaml"
# Corpora with a demo config (training/configs/demo_<kind>.yaml): free to download, acted.
REAL_DEMO_CORPORA = ("cremad", "emodb", "ravdess")


def demo_config(out: Path, corpus: str | None = None, root: Path | None = None) -> RunConfig:
    name = DEMO_CONFIG if corpus is None else f"demo_{corpus}.yaml"
    if corpus is not None and (corpus not in REAL_DEMO_CORPORA or root is None):
        raise ValueError(f"the demo runs on {REAL_DEMO_CORPORA} with --root; got {corpus}")
    path = Path(str(resources.files("training") / "configs" / name))
    source = {"root": str(root)} if root is not None else {}
    return load_config(
        path,
        overrides={
            "out_dir": str(out / "runs"),
            "feature_cache": str(out / "cache"),
            "corpus": {"prepared_dir": str(out / "corpus"), **source},
        },
    )


def demo(
    out: Path,
    device: str = "auto",
    progress: bool = True,
    corpus: str | None = None,
    root: Path | None = None,
) -> Path:
    """Build the demo model into `out`; returns the checkpoint folder."""
    from .run import copy_checkpoint, run_folds  # torch: only when a demo is built

    start = time.perf_counter()
    run = demo_config(out, corpus, root)
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
