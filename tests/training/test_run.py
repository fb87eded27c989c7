"""End to end on a small synthetic corpus: run, ablate and sweep-tau write what they promise."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from emodistill.bundle import Calibration, TrainingRecord
from tests.conftest import write_tiny_bert
from training.cli import main
from training.corpus import synthetic_text
from training.teachers import fit


def _vocabulary() -> list[str]:
    texts = [*synthetic_text.NEUTRAL, *(t for ts in synthetic_text.EMOTIONAL.values() for t in ts)]
    texts += [*synthetic_text.WHO, *synthetic_text.THING, *synthetic_text.TIME]
    return sorted({w for t in texts for w in re.findall(r"[a-z']+|[^\sa-z]", t.lower())})


@pytest.fixture(scope="module")
def config_file(tmp_path_factory, require_espeak) -> Path:
    root = tmp_path_factory.mktemp("run")
    encoder = write_tiny_bert(root / "bert", _vocabulary())
    config = {
        "name": "small",
        "out_dir": str(root / "runs"),
        "feature_cache": str(root / "cache"),
        "folds": [0],
        "corpus": {
            "kind": "synthetic",
            "prepared_dir": str(root / "corpus"),
            "synthetic": {"sessions": 4, "utterances_per_speaker": 8, "seed": 3},
        },
        "linguistic": {"encoder": str(encoder), "epochs": 2, "head_lr": 3e-3},
        "prosodic": {"channels": [4, 8, 8, 8], "epochs": 2},
        "student": {
            "pretrained": None,
            "preset": "tiny",
            "freeze_feature_encoder": False,
            "classifier_proj_size": 16,
        },
        "optim": {
            "global_batch_size": 16,
            "per_device_batch_size": 8,
            "epochs": 1,
            "max_train_audio_s": 2.0,
            "num_workers": 0,
            "lr": 1e-3,
        },
    }
    path = root / "small.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_run_writes_fold_metrics_checkpoint_and_report(config_file: Path, capsys):
    main(["run", "--config", str(config_file), "--quiet"])

    run_dir = Path(yaml.safe_load(config_file.read_text())["out_dir"]) / "small"
    metrics = json.loads((run_dir / "fold_0" / "metrics.json").read_text())
    assert metrics["test_speakers"] == ["S01F"] and metrics["val_speakers"] == ["S01M"]
    for model in ("student", "linguistic_teacher", "prosodic_teacher"):
        scores = metrics["models"][model]
        assert 0.0 <= scores["ua"] <= 1.0 and sum(map(sum, scores["confusion"])) == 8
    assert (run_dir / "fold_0" / "student" / "checkpoint" / "model.safetensors").is_file()
    assert len((run_dir / "fold_0" / "predictions.csv").read_text().splitlines()) == 9
    assert (run_dir / "resolved_config.yaml").is_file()
    report = (run_dir / "report.md").read_text()
    assert "| 0 | S01F |" in report and (run_dir / "confusion_student.png").is_file()
    assert "report:" in capsys.readouterr().out
    # Calibrated on the validation speaker; the card an exported bundle will carry.
    calibration = metrics["calibration"]
    assert calibration["temperature"] > 0 and calibration["clips"] == 8
    assert calibration["nll_after"] <= calibration["nll_before"] + 1e-9
    assert metrics["calibration_on_test"]["clips"] == 8  # the same T on the test speaker
    assert "## Calibration of the student" in report and "test (held out)" in report
    assert (run_dir / "fold_0" / "reliability.png").read_bytes()[:4] == b"\x89PNG"
    card = json.loads(
        (run_dir / "fold_0" / "student" / "checkpoint" / "training_metrics.json").read_text()
    )
    assert card["calibration"] == calibration
    assert TrainingRecord.model_validate(card).calibration == Calibration(**calibration)
    assert card["trained_on"]["corpus"] == "synthetic (espeak-ng)"
    assert card["trained_on"]["speakers"] == 7 and card["trained_on"]["test_speakers"] == ["S01F"]
    assert "does not recognise emotion in real voices" in card["note"]
    # The synthetic corpus is rated: every model predicts arousal, valence and dominance.
    dimensions = metrics["dimensions"]
    assert set(dimensions) == {"student", "linguistic_teacher", "prosodic_teacher"}
    for ccc in dimensions.values():
        assert list(ccc) == ["arousal", "valence", "dominance"]
        assert all(-1.0 <= v <= 1.0 for v in ccc.values())
    assert "## Arousal, valence, dominance (CCC" in report
    assert (run_dir / "fold_0" / "student" / "checkpoint" / "dimension_head.pt").is_file()
    assert card["dimensions"]["test_ccc"] == dimensions["student"]
    assert "not ratings" in card["dimensions"]["targets"]
    assert card["dimensions"]["utterances"] == 56  # 7 speakers × 8, all rated


def test_ablation_and_sweep_reuse_the_teachers(config_file: Path, monkeypatch):
    main(["run", "--config", str(config_file), "--quiet"])  # no-op for finished folds' teachers

    def no_teacher_training(*args, **kwargs):
        raise AssertionError("a variant trained a teacher again")

    monkeypatch.setattr(fit, "AdamW", no_teacher_training)
    variants = "full,ce_only,no_dimensions"
    main(["ablate", "--config", str(config_file), "--variants", variants, "--quiet"])
    main(["sweep-tau", "--config", str(config_file), "--taus", "2", "--quiet"])

    run_dir = Path(yaml.safe_load(config_file.read_text())["out_dir"]) / "small"
    table = (run_dir / "ablation.md").read_text()
    assert "75.16" in table and "69.92" in table  # the poster's numbers beside ours
    assert "not run" in table  # the variants we skipped
    ce_only = json.loads((run_dir / "ablation" / "ce_only" / "fold_0" / "metrics.json").read_text())
    assert ce_only["models"]["student"]["labels"] == ["neutral", "angry", "sad", "happy"]
    assert "w/o the dimensional task" in table  # our row beyond the poster's
    plain = run_dir / "ablation" / "no_dimensions" / "fold_0"
    assert "student" not in json.loads((plain / "metrics.json").read_text())["dimensions"]
    assert not (plain / "student" / "checkpoint" / "dimension_head.pt").exists()
    assert (run_dir / "tau_sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert "| 2 |" in (run_dir / "tau_sweep.md").read_text()
    assert (run_dir / "sweep" / "prosodic_tau_2" / "variant.yaml").is_file()


@pytest.mark.parametrize("encoder", ["wav2vec2", "wavlm"])
def test_other_encoder_families_train_and_export(config_file: Path, tmp_path: Path, encoder):
    """One config line moves the student to another family; it trains on the synthetic corpus
    and exports to a bundle the runtime answers from."""
    from emodistill import load
    from export.bundle_writer import ExportOptions, export_bundle

    data = yaml.safe_load(config_file.read_text())
    data["name"] = f"small_{encoder}"
    data["student"]["encoder"] = encoder
    path = tmp_path / f"{encoder}.yaml"
    path.write_text(yaml.safe_dump(data))
    main(["run", "--config", str(path), "--quiet"])

    checkpoint = Path(data["out_dir"]) / data["name"] / "fold_0" / "student" / "checkpoint"
    assert json.loads((checkpoint / "config.json").read_text())["model_type"] == encoder
    quick = ExportOptions(reference_clips=4, invariance_clips=4, agreement_clips=16)
    metadata = export_bundle(checkpoint, tmp_path / "bundle", quick)
    assert metadata.source["encoder"] == encoder and metadata.calibration is not None
    assert metadata.trained_on is not None and metadata.trained_on.utterances > 0
    assert "/" not in metadata.source["checkpoint"]  # no path of the machine that built it
    assert metadata.parity["fp32_batched_vs_alone"]["max_abs_probability"] <= 1e-4
    answer = load(tmp_path / "bundle", device="cpu").predict(np.zeros(16_000, np.float32))
    assert sum(answer.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
