"""`evaluate`: a bundle on a prepared corpus through the runtime, against the run's own figures."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from tests.conftest import tone, write_tiny_bert
from training.cli import main
from training.corpus.acted import EMODB_SENTENCES
from training.corpus.manifest import Utterance
from training.evaluate import compute_metrics

# Per emotion letter a pitch, per speaker a shift: something a tiny student can pick up.
EMOTION_HZ = {"N": 220.0, "W": 440.0, "T": 160.0, "F": 330.0}
SPEAKERS = ("03", "08", "09", "10")


def write_tone_emodb(root: Path) -> Path:
    """An EmoDB-shaped tree whose emotions differ in pitch: 4 speakers x 4 emotions x 3."""
    rng = np.random.default_rng(0)
    for s, speaker in enumerate(SPEAKERS):
        for emotion, hz in EMOTION_HZ.items():
            for version, text in zip("abc", ("a01", "a02", "b10"), strict=True):
                samples = tone(0.6, freq_hz=hz * (1 + 0.03 * s)) + 0.02 * rng.standard_normal(9600)
                path = root / "wav" / f"{speaker}{text}{emotion}{version}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(str(path), samples.astype(np.float32), 16_000)
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """Prepare, run fold 0 (tiny teachers and student, one epoch) and export: ~1 min on 2 cores."""
    from export.bundle_writer import ExportOptions, export_bundle

    root = tmp_path_factory.mktemp("evaluate")
    corpus = write_tone_emodb(root / "emodb")
    words = sorted(
        {w for t in EMODB_SENTENCES.values() for w in re.findall(r"\w+|[^\w\s]", t.lower())}
    )
    config = {
        "name": "tones",
        "out_dir": str(root / "runs"),
        "feature_cache": str(root / "cache"),
        "folds": [0],
        "corpus": {
            "kind": "emodb",
            "root": str(corpus),
            "prepared_dir": str(root / "prepared"),
            "protocol": "speaker_groups",
        },
        "linguistic": {"encoder": str(write_tiny_bert(root / "bert", words)), "epochs": 1},
        "prosodic": {"channels": [4, 8, 8, 8], "epochs": 1},
        "student": {
            "pretrained": None,
            "preset": "tiny",
            "freeze_feature_encoder": False,
            "classifier_proj_size": 16,
        },
        "optim": {
            "global_batch_size": 8,
            "per_device_batch_size": 8,
            "epochs": 2,
            "max_train_audio_s": 1.0,
            "num_workers": 0,
            "lr": 3e-3,
        },
    }
    config_file = root / "tones.yaml"
    config_file.write_text(yaml.safe_dump(config))
    main(["run", "--config", str(config_file), "--quiet", "--device", "cpu"])
    fold = root / "runs" / "tones" / "fold_0"
    quick = ExportOptions(
        int8=False, reference_clips=2, invariance_clips=2, agreement_clips=4, naive_contrast=False
    )
    export_bundle(fold / "student" / "checkpoint", root / "bundle", quick)
    return {"bundle": root / "bundle", "prepared": root / "prepared", "fold": fold}


def test_evaluate_equals_the_run_s_test_figures_for_its_fold(trained, tmp_path: Path, capsys):
    out = tmp_path / "eval"
    main(
        [
            "evaluate",
            "--model",
            str(trained["bundle"]),
            "--corpus",
            str(trained["prepared"]),
            "--out",
            str(out),
            "--quiet",
            "--device",
            "cpu",
        ]
    )

    metrics = json.loads((out / "metrics.json").read_text())
    student = json.loads((trained["fold"] / "metrics.json").read_text())["models"]["student"]
    # The bundle's own fold and protocol, read from its trained_on: the same 12 test clips.
    assert metrics["rows"] == "fold 0 test (speaker_groups protocol): emodb_03"
    assert metrics["n"] == 12 and metrics["labels"] == student["labels"]
    assert metrics["confusion"] == student["confusion"]  # exact: argmax per clip agrees
    assert metrics["ua"] == pytest.approx(student["ua"], abs=1e-12)
    assert metrics["wa"] == pytest.approx(student["wa"], abs=1e-12)
    assert 0.0 <= metrics["macro_f1"] <= 1.0 and metrics["unknown_labels"] == {}
    lines = (out / "predictions.csv").read_text().splitlines()
    assert lines[0] == "utt_id,speaker,label,predicted,p_neutral,p_angry,p_sad,p_happy"
    assert len(lines) == 13 and (out / "confusion_matrix.png").stat().st_size > 0
    assert "UA" in capsys.readouterr().out


def test_the_run_warns_that_fixed_sentences_carry_no_emotion(trained):
    """Every emotion was spoken with the same three sentences: text-only UA is exactly chance."""
    metrics = json.loads((trained["fold"] / "metrics.json").read_text())
    assert metrics["models"]["linguistic_teacher"]["ua"] == pytest.approx(0.25)
    (warning,) = metrics["warnings"]
    assert "loss.use_linguistic: false" in warning
    assert "## Warnings" in (trained["fold"].parent / "report.md").read_text()


def test_cross_corpus_table_has_a_cell_per_bundle_and_corpus(trained, tmp_path: Path):
    main(
        [
            "cross-corpus",
            "--models",
            str(trained["bundle"]),
            "--corpora",
            str(trained["prepared"]),
            "--out",
            str(tmp_path),
            "--quiet",
            "--device",
            "cpu",
        ]
    )

    table = (tmp_path / "cross_corpus.md").read_text()
    assert "| bundle | prepared |" in table.replace("\\ corpus ", "")
    assert re.search(r"\| bundle \| \d+\.\d\d \(n=48\) \|", table)


def test_a_corpus_with_none_of_the_bundle_s_labels_is_one_line(trained, tmp_path: Path):
    prepared = tmp_path / "other"
    prepared.mkdir()
    manifest = (trained["prepared"] / "manifest.csv").read_text().splitlines()
    relabelled = [manifest[0]] + [
        re.sub(r",(neutral|angry|sad|happy),", ",calm,", x) for x in manifest[1:]
    ]
    (prepared / "manifest.csv").write_text("\n".join(relabelled) + "\n")
    (prepared / "labels.json").write_text('{"labels": ["calm"]}')
    with pytest.raises(SystemExit, match="no row has a label the model can output"):
        main(
            [
                "evaluate",
                "--model",
                str(trained["bundle"]),
                "--corpus",
                str(prepared),
                "--partition",
                "all",
                "--out",
                str(tmp_path / "eval"),
                "--quiet",
            ]
        )


def test_labels_the_bundle_cannot_output_are_counted_not_scored():
    rows = [
        Utterance(f"u{i}", "/x.wav", label, "s", "", "", 1.0)
        for i, label in enumerate(["angry", "sad", "fear", "fear", "boredom"])
    ]
    probs = np.array([[0.1, 0.9], [0.2, 0.8], [0.5, 0.5], [0.9, 0.1], [0.3, 0.7]])
    metrics = compute_metrics(rows, probs, ["angry", "sad"])

    assert metrics["n"] == 2 and metrics["unknown_labels"] == {"boredom": 1, "fear": 2}
    assert metrics["confusion"] == [[0, 1], [0, 1]] and metrics["ua"] == pytest.approx(0.5)
    assert metrics["per_class_recall"] == {"angry": 0.0, "sad": 1.0}


# --- dimensions: CCC over the rated rows ---------------------------------------------------


def write_rated_corpus(folder: Path, labelled: bool) -> Path:
    """A prepared folder of 8 tones whose ratings rise with pitch (two rows unrated)."""
    from training.corpus.manifest import RatingOrigin, write_manifest

    rows = []
    for i in range(8):
        path = folder / "wav" / f"{i}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), tone(0.8 + 0.1 * i, freq_hz=150.0 + 40 * i), 16_000)
        rated = i not in (2, 5)
        a, v, d = (0.1 * i, 1.0 - 0.1 * i, 0.05 * i + 0.2) if rated else (None, None, None)
        label = ("neutral", "angry", "sad", "happy")[i % 4] if labelled else ""
        rows.append(Utterance(f"u{i}", str(path), label, f"s{i % 2}", "1", "", 1.0, "", a, v, d))
    labels = ["neutral", "angry", "sad", "happy"] if labelled else []
    write_manifest(rows, folder, labels, RatingOrigin(source="test tones"))
    return folder


@pytest.mark.parametrize("which", ["bundle_with_dimensions", "dimensions_only_bundle"])
def test_evaluate_reports_ccc_per_dimension_over_the_rated_rows(which, request, tmp_path, capsys):
    """metrics.json's CCC is Lin's CCC of predictions.csv's columns over the rated rows, and
    those columns are the Python API's answers; a dimensions-only bundle gets no UA."""
    import emodistill
    from training.metrics import concordance

    bundle = request.getfixturevalue(which)
    corpus = write_rated_corpus(tmp_path / "corpus", labelled=which == "bundle_with_dimensions")
    out = tmp_path / "eval"
    main(["evaluate", "--model", str(bundle), "--corpus", str(corpus), "--partition", "all",
          "--out", str(out), "--quiet", "--device", "cpu"])  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    dims = metrics["dimensions"]
    assert dims["n"] == 6 and list(dims["ccc"]) == ["arousal", "valence", "dominance"]
    with (out / "predictions.csv").open() as f:
        table = list(csv.DictReader(f))
    rec = emodistill.load(bundle, device="cpu")
    for row in table:
        answer = rec.predict(str(corpus / "wav" / f"{row['utt_id'][1:]}.wav"))
        assert answer.dimensions is not None
        assert float(row["arousal"]) == pytest.approx(answer.dimensions.arousal, abs=1e-5)
    for name in ("arousal", "valence", "dominance"):
        rated = [r for r in table if r[f"{name}_rated"]]
        expected = concordance(
            [float(r[name]) for r in rated], [float(r[f"{name}_rated"]) for r in rated]
        )
        assert dims["ccc"][name] == pytest.approx(expected, abs=1e-4)  # 5-decimal CSV values
    printed = capsys.readouterr().out
    assert "CCC over 6 rated rows" in printed
    if which == "dimensions_only_bundle":
        assert "ua" not in metrics and not (out / "confusion_matrix.png").exists()
        assert "predicted" not in table[0]
    else:
        assert metrics["n"] == 8 and (out / "confusion_matrix.png").is_file()
