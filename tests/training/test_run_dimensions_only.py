"""End to end on a corpus rated in dimensions only: no categories anywhere.

A manifest CSV with `arousal,valence,dominance` and no `label` column trains both teachers'
and the student's dimensional heads (no classifier to learn), and exports a bundle whose
graph has the one output `dimensions` [batch, 3].
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import soundfile as sf
import yaml

from emodistill.bundle import DIMENSION_NAMES, DIMENSIONS, MODEL_FP32, TRAINING_METRICS
from export.bundle_writer import CheckpointError, ExportOptions, Limits, export_bundle
from export.triton import write_triton_repository
from student.model import DIMENSION_HEAD_FILE
from tests.conftest import tone, write_tiny_bert
from tests.training.trainer_fixtures import TINY_STUDENT, tiny_optim
from training.cli import main

SPEAKERS = ("s1", "s2", "s3", "s4")
WORDS = ("calm", "quiet", "loud", "angry", "very", "day")
CLIPS_PER_SPEAKER = 6


def write_rated_corpus(folder: Path) -> Path:
    """Tones whose pitch and loudness follow arousal, with a text that names it; a CSV with
    no label column. Returns the CSV."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["path,speaker,text,arousal,valence,dominance"]
    for s, speaker in enumerate(SPEAKERS):
        for i in range(CLIPS_PER_SPEAKER):
            arousal = (i + 0.5) / CLIPS_PER_SPEAKER
            audio = (0.2 + 0.6 * arousal) * tone(0.4 + 0.05 * s, freq_hz=200 + 400 * arousal)
            path = folder / f"{speaker}_{i}.wav"
            sf.write(path, audio.astype(np.float32), 16_000)
            text = "very loud angry day" if arousal > 0.5 else "calm quiet day"
            ratings = f"{arousal:.3f},{1 - arousal:.3f},{0.3 + 0.4 * arousal:.3f}"
            lines.append(f"{path.name},{speaker},{text},{ratings}")
    csv = folder / "rated.csv"
    csv.write_text("\n".join(lines) + "\n")
    return csv


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dimensions_only")
    csv = write_rated_corpus(root / "audio")
    config = {
        "name": "rated",
        "out_dir": str(root / "runs"),
        "feature_cache": str(root / "cache"),
        "folds": [0],
        "corpus": {"kind": "manifest", "csv": str(csv), "prepared_dir": str(root / "corpus")},
        "linguistic": {"encoder": str(write_tiny_bert(root / "bert", WORDS)), "epochs": 2},
        "prosodic": {"channels": [4, 8, 8, 8], "epochs": 2, "batch_size": 8},
        "student": TINY_STUDENT,
        "optim": tiny_optim(global_batch=8, epochs=2, max_train_audio_s=1.0),
    }
    path = root / "rated.yaml"
    path.write_text(yaml.safe_dump(config))
    main(["run", "--config", str(path), "--quiet"])
    return root / "runs" / "rated"


def _checkpoint(run_dir: Path) -> Path:
    return run_dir / "fold_0" / "student" / "checkpoint"


def test_metrics_and_report_carry_ccc_and_no_categories(run_dir: Path):
    metrics = json.loads((run_dir / "fold_0" / "metrics.json").read_text())
    assert metrics["models"] == {} and metrics["calibration"] is None
    assert "student_val" not in metrics and "calibration_on_test" not in metrics
    assert set(metrics["student_val_ccc"]) == set(DIMENSION_NAMES)
    assert set(metrics["dimensions"]) == {"student", "linguistic_teacher", "prosodic_teacher"}
    for ccc in metrics["dimensions"].values():
        assert list(ccc) == list(DIMENSION_NAMES)
        assert all(-1.0 <= v <= 1.0 for v in ccc.values())  # every rated test clip has spread
    assert '"ua"' not in json.dumps(metrics) and '"wa"' not in json.dumps(metrics)
    assert not (run_dir / "fold_0" / "predictions.csv").exists()  # no categories to predict

    report = (run_dir / "report.md").read_text()
    assert "CCC on the held-out speakers" in report and "| 0 | student |" in report
    assert "UA" not in report and "Calibration" not in report

    record = json.loads((_checkpoint(run_dir) / TRAINING_METRICS).read_text())
    assert "calibration" not in record and "test" not in record
    assert "test_ua" not in record["trained_on"]
    assert record["dimensions"]["test_ccc"] == metrics["dimensions"]["student"]
    assert record["dimensions"]["utterances"] == 18  # 3 train + val speakers x 6, all rated

    # The student's early stopping followed the validation CCC, logged per epoch.
    log = (run_dir / "fold_0" / "student" / "train_log.jsonl").read_text().splitlines()
    epochs = [json.loads(line) for line in log]
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert all(
        set(e) == {"epoch", "step"} | {f"val_ccc_{n}" for n in DIMENSION_NAMES} for e in epochs
    )
    best = max(epochs, key=lambda e: np.mean([e[f"val_ccc_{n}"] for n in DIMENSION_NAMES]))
    assert metrics["training"]["best_epoch"] == best["epoch"]
    assert metrics["student_val_ccc"]["arousal"] == pytest.approx(best["val_ccc_arousal"])


def test_export_writes_a_bundle_with_the_dimensions_output_alone(run_dir: Path, tmp_path: Path):
    quick = ExportOptions(reference_clips=4, invariance_clips=4, agreement_clips=16)
    metadata = export_bundle(_checkpoint(run_dir), tmp_path / "bundle", quick)

    assert metadata.labels == [] and [o.name for o in metadata.outputs] == [DIMENSIONS]
    assert metadata.outputs[0].shape == ["batch", 3] and metadata.calibration is None
    assert metadata.dimensions is not None and metadata.dimensions.names == list(DIMENSION_NAMES)
    session = ort.InferenceSession(str(tmp_path / "bundle" / MODEL_FP32))
    assert [o.name for o in session.get_outputs()] == [DIMENSIONS]
    audio = np.stack([tone(1.0), 0.5 * tone(1.0, freq_hz=300.0)]).astype(np.float32)
    (dims,) = session.run(
        None, {"input_values": audio, "attention_mask": np.ones_like(audio, np.int64)}
    )
    assert dims.shape == (2, 3) and ((dims > 0) & (dims < 1)).all()  # sigmoid: within the scale

    # Every parity figure is on the dimensions, none on logits that do not exist.
    parity, limits = metadata.parity, Limits()
    assert parity["fp32_vs_pytorch"]["max_abs_dimension"] <= limits.fp32_vs_pytorch_dimension
    assert parity["fp32_batched_vs_alone"]["max_abs_dimension"] <= limits.fp32_batched_dimension
    assert parity["fp16_batched_vs_alone"]["max_abs_dimension"] <= limits.fp16_batched_dimension
    assert parity["fp16_vs_fp32"]["max_abs_dimension"] <= limits.fp16_dimension
    for figure in ("fp32_vs_pytorch", "fp32_batched_vs_alone", "fp16_vs_fp32"):
        assert not {"max_abs_logit", "max_abs_probability", "argmax_agreement"} & set(
            parity[figure]
        )
    for attempt in parity["int8_tries"]:  # kept or not by the dimensions alone
        assert "argmax_agreement" not in attempt
        assert attempt["kept"] == (attempt["max_abs_dimension"] <= limits.int8_dimension)
    assert "naive_batched_vs_alone" not in parity  # a contrast of probabilities

    model_dir = write_triton_repository(tmp_path / "bundle", tmp_path / "triton", gpu=False)
    config = (model_dir / "config.pbtxt").read_text()
    assert f'name: "{DIMENSIONS}" data_type: TYPE_FP32 dims: [ 3 ]' in config
    assert "logits" not in config and not (model_dir / "labels.txt").exists()


def test_a_checkpoint_with_neither_categories_nor_dimensions_is_refused(
    run_dir: Path, tmp_path: Path
):
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(_checkpoint(run_dir), checkpoint)
    (checkpoint / DIMENSION_HEAD_FILE).unlink()
    with pytest.raises(CheckpointError, match=r"neither categories .* nor dimensions"):
        export_bundle(checkpoint, tmp_path / "bundle", ExportOptions())
    assert not (tmp_path / "bundle").exists()


@pytest.mark.parametrize("command", ["ablate", "sweep-tau"])
def test_ablation_and_sweep_say_why_they_cannot_compare_ua(run_dir: Path, command: str):
    config = run_dir.parent.parent / "rated.yaml"
    with pytest.raises(ValueError, match="no categories"):
        main([command, "--config", str(config), "--quiet"])


def test_the_exported_bundle_answers_and_evaluates_on_its_held_out_speakers(
    run_dir: Path, tmp_path: Path, capsys
):
    """The whole chain: train -> export -> the runtime answers the dimensions alone ->
    `evaluate` on the fold's test speakers gives the run's own held-out CCC (1e-3: the run
    scores in PyTorch, evaluate through the fp32 ONNX graph)."""
    import emodistill

    quick = ExportOptions(reference_clips=4, invariance_clips=4, agreement_clips=16)
    export_bundle(_checkpoint(run_dir), tmp_path / "bundle", quick)
    rec = emodistill.load(tmp_path / "bundle", device="cpu")
    answer = rec.predict(tone(1.0).astype(np.float32))
    assert answer.label is None and answer.probabilities is None
    assert answer.dimensions is not None
    corpus = run_dir.parent.parent / "corpus"
    main(["evaluate", "--model", str(tmp_path / "bundle"), "--corpus", str(corpus),
          "--out", str(tmp_path / "eval"), "--quiet", "--device", "cpu"])  # fmt: skip
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    held_out = json.loads((run_dir / "fold_0" / "metrics.json").read_text())
    assert "ua" not in metrics and metrics["dimensions"]["n"] == CLIPS_PER_SPEAKER
    for name in DIMENSION_NAMES:
        expected = held_out["dimensions"]["student"][name]
        assert metrics["dimensions"]["ccc"][name] == pytest.approx(expected, abs=1e-3)
    assert "CCC over 6 rated rows" in capsys.readouterr().out
