"""`python -m training demo --corpus cremad --root DIR`: the laptop demo on a real corpus's
layout (a fixture tree: no corpus can be downloaded here), down to an exported bundle."""

from __future__ import annotations

from pathlib import Path

import pytest

from emodistill.bundle import load_bundle
from tests.training.corpus import trees
from training.cli import main
from training.corpus.acted import ACTED_NOTES
from training.demo import REAL_DEMO_CORPORA, demo_config


@pytest.mark.parametrize("corpus", REAL_DEMO_CORPORA)
def test_each_free_corpus_has_a_demo_config_on_its_own_kind(corpus: str, tmp_path: Path):
    config = demo_config(tmp_path, corpus, tmp_path / "root")
    assert config.corpus.kind == corpus and config.corpus.root == tmp_path / "root"
    assert config.corpus.prepared_dir == tmp_path / "corpus"
    assert config.student.pretrained is None and config.loss.use_linguistic is False


def test_corpus_needs_root(tmp_path: Path):
    with pytest.raises(SystemExit, match="--corpus and --root go together"):
        main(["demo", "--corpus", "cremad", "--out", str(tmp_path)])


@pytest.mark.slow
def test_demo_on_the_cremad_layout_gives_a_bundle_that_says_what_it_learned_from(tmp_path: Path):
    from export.bundle_writer import ExportOptions, export_bundle

    # Eight actors: the demo's batch of 16 needs the 6 training actors' 24 clips.
    root = trees.write_cremad_tree(tmp_path, actors=tuple(str(1001 + i) for i in range(8)))
    out = tmp_path / "demo"
    main(
        [
            "demo",
            "--corpus",
            "cremad",
            "--root",
            str(root),
            "--out",
            str(out),
            "--quiet",
            "--device",
            "cpu",
        ]
    )

    quick = ExportOptions(
        int8=False, reference_clips=2, invariance_clips=2, agreement_clips=4, naive_contrast=False
    )
    export_bundle(out / "checkpoint", out / "bundle", quick)
    metadata = load_bundle(out / "bundle")
    assert metadata.note == ACTED_NOTES["cremad"]
    assert metadata.trained_on is not None
    assert metadata.trained_on.corpus == "CREMA-D"
    assert metadata.trained_on.protocol == "speaker_groups"
    assert metadata.trained_on.test_speakers == ["cremad_1001"]
    assert "Built by `python -m training demo`" in (out / "report.md").read_text()
