"""Several corpora in one run: namespaced, folds per corpus combined, figures per corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import write_tiny_bert
from tests.training.test_folds import corpus as speaker_rows
from tests.training.test_run import _vocabulary
from training.cli import main
from training.corpora import combine
from training.corpus.manifest import Utterance
from training.folds import FoldError, make_folds, split


def _official_rows() -> list[Utterance]:
    parts = {"m1": ("Train", "joey"), "m2": ("dev", "joey"), "m3": ("test", "ross")}
    return [
        Utterance(u, f"/x/{u}.wav", "a", f"meld_{spk}", "", "", 1.0, partition=p)
        for u, (p, spk) in parts.items()
    ]


def test_combined_folds_namespace_ids_and_keep_each_corpus_s_protocol():
    a = speaker_rows(["s1", "s2", "s3"], per_speaker=2, sessions=False)
    b = speaker_rows(["s1", "s2", "s3", "s4"], per_speaker=2, sessions=False)  # same names
    meld = _official_rows()
    rows, folds = combine(
        [
            ("a", a, make_folds(a, "speaker")),
            ("b", b, make_folds(b, "speaker")),
            ("meld", meld, make_folds(meld, "official")),
        ]
    )

    assert len(folds) == 4  # the most folds of any corpus; a's fold 0 is tested again in fold 3
    assert len({r.utt_id for r in rows}) == len(rows) == 6 + 8 + 3
    assert {r.speaker for r in rows if r.utt_id.startswith("b/")} == {
        "b_s1",
        "b_s2",
        "b_s3",
        "b_s4",
    }
    assert {r.speaker for r in rows if r.utt_id.startswith("meld/")} == {"meld_joey", "meld_ross"}
    for fold in folds:
        parts = split(rows, fold)
        assert len(parts.train) + len(parts.val) + len(parts.test) == len(rows)
        assert [r.utt_id for r in parts.test if r.utt_id.startswith("meld/")] == ["meld/m3"]
        speakers = [{r.speaker for r in getattr(parts, p)} for p in ("train", "val", "test")]
        speaker_folds = speakers[0] - {"meld_joey"}  # MELD's characters recur by its protocol
        assert not speaker_folds & speakers[1] and not speakers[0] & speakers[2]
        assert not speakers[1] & speakers[2]
    assert folds[3].test_speakers == ("a_s1", "b_s4")


def test_a_speaker_in_two_parts_of_a_combined_fold_is_refused():
    a = speaker_rows(["s1", "s2", "s3"], sessions=False)
    folds = make_folds(a, "speaker")
    # The same corpus twice under one name would put its speakers in two places at once.
    with pytest.raises(FoldError, match="is in both"):
        combine([("a", a, folds), ("a", a, folds[1:] + folds[:1])])


@pytest.mark.slow
def test_two_synthetic_corpora_train_and_report_per_corpus(tmp_path: Path, require_espeak):
    tiny = {"sessions": 4, "utterances_per_speaker": 4}
    config = {
        "name": "two",
        "out_dir": str(tmp_path / "runs"),
        "feature_cache": str(tmp_path / "cache"),
        "folds": [0],
        "corpus": {
            "kind": "synthetic",
            "name": "synth_a",
            "prepared_dir": str(tmp_path / "a"),
            "synthetic": {**tiny, "seed": 1},
        },
        "more_corpora": [
            {
                "kind": "synthetic",
                "name": "synth_b",
                "prepared_dir": str(tmp_path / "b"),
                "synthetic": {**tiny, "seed": 2},
            }
        ],
        "linguistic": {"encoder": str(write_tiny_bert(tmp_path / "bert", _vocabulary()))},
        "prosodic": {"channels": [4, 8, 8, 8], "epochs": 1},
        "student": {"pretrained": None, "preset": "tiny", "classifier_proj_size": 16},
        "optim": {
            "global_batch_size": 16,
            "per_device_batch_size": 8,
            "epochs": 1,
            "max_train_audio_s": 1.0,
            "num_workers": 0,
        },
    }
    config["linguistic"]["epochs"] = 1
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(config))
    main(["run", "--config", str(path), "--quiet", "--device", "cpu"])

    run_dir = tmp_path / "runs" / "two"
    metrics = json.loads((run_dir / "fold_0" / "metrics.json").read_text())
    assert metrics["test_speakers"] == ["synth_a_S01F", "synth_b_S01F"]
    assert sum(map(sum, metrics["models"]["student"]["confusion"])) == 8
    report = (run_dir / "report.md").read_text()
    assert "## Student per corpus" in report
    for name in ("synth_a", "synth_b"):
        assert f"| {name} | 1 | 4 |" in report
    assert "| all corpora | 1 | 8 |" in report
    trained_on = json.loads(
        (run_dir / "fold_0" / "student" / "checkpoint" / "training_metrics.json").read_text()
    )["trained_on"]
    assert trained_on["corpus"] == "synth_a + synth_b"
