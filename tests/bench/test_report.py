"""The report: the committed figures give the committed docs/benchmarks.md; no figures, no
numbers."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from bench.report import load_results, write_report

ROOT = Path(__file__).resolve().parents[2]
DEMO = "models/demo/bundle"


def test_the_committed_figures_render_the_committed_report(tmp_path: Path):
    """Each benchmark writes its own section from its JSON; collected in order they are
    docs/benchmarks.md as committed, to the byte (so the docs are the figures' own)."""
    docs = tmp_path / "docs"
    (docs / "bench").mkdir(parents=True)
    for figures in (ROOT / "docs" / "bench").glob("*.json"):
        shutil.copy2(figures, docs / "bench" / figures.name)
    path = write_report(load_results(docs / "bench"), DEMO, docs)
    assert path.read_text() == (ROOT / "docs" / "benchmarks.md").read_text()
    assert (docs / "bench" / "service.png").read_bytes()[:4] == b"\x89PNG"


def test_without_figures_every_section_is_pending(tmp_path: Path):
    docs = tmp_path / "docs"
    (docs / "bench").mkdir(parents=True)
    report = write_report(load_results(docs / "bench"), DEMO, docs).read_text()
    headings = re.findall(r"^## (\d)\. ", report, flags=re.MULTILINE)
    assert headings == [str(n) for n in range(1, 10)]
    sections = re.split(r"^## \d\. .*$", report, flags=re.MULTILINE)[1:]
    assert all("Pending" in body for body in sections)
    assert "pending (no GPU run)" in report
    assert not re.search(r"\d+\.\d+ ?(×|%|ms)", report)  # no figure invented
    assert not (docs / "bench" / "service.png").exists()
    assert not (docs / "bench" / "gpu.json").exists()
