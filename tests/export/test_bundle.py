"""Export: a verified, batch-invariant bundle; clear errors; verify and Triton."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import emodistill
from emodistill.audio import pad_batch
from emodistill.bundle import (
    ATTENTION_MASK,
    DIMENSION_NAMES,
    DIMENSIONS,
    INPUT_VALUES,
    LOGITS,
    METADATA,
    MODEL_FP16,
    MODEL_FP32,
    TRAINING_METRICS,
    BundleError,
    load_bundle,
    sha256_of,
)
from emodistill.runtime import make_session
from emodistill.scoring import softmax
from export import onnx_graph
from export.bundle_writer import (
    CheckpointError,
    ExportOptions,
    Limits,
    ParityError,
    export_bundle,
    verify_bundle,
)
from export.cli import main
from export.parity import probe_clips
from export.triton import write_triton_repository
from student.config import StudentConfig
from student.model import (
    EmoDistillStudent,
    build_classifier,
    build_feature_extractor,
    load_classifier,
)

LABELS = ["neutral", "angry", "sad", "happy"]
# Fewer clips than the CLI's defaults, except the 200 of the fp16 agreement the contract names.
FAST = ExportOptions(reference_clips=12, invariance_clips=12, agreement_clips=200)


def write_checkpoint(
    folder: Path,
    norm: str,
    encoder: str = "hubert",
    do_normalize: bool | None = None,
    dimensions: bool = False,
) -> Path:
    """A tiny random student; logits spread out so argmax ties are rare, as in a trained one.
    do_normalize: by default on for layer-norm students (as HuBERT-large), off for group-norm.
    dimensions: with a dimensional head, its outputs spread over (0, 1)."""
    torch.manual_seed(0)
    config = StudentConfig(
        pretrained=None,
        preset="tiny",
        encoder=encoder,
        feat_extract_norm=norm,
        do_normalize=norm == "layer" if do_normalize is None else do_normalize,
    )
    model = build_classifier(config, LABELS)
    with torch.no_grad():
        model.classifier.weight.mul_(20.0)
    student = EmoDistillStudent(model, build_feature_extractor(config), {}, dimensions)
    if student.dimension_head is not None:
        with torch.no_grad():
            student.dimension_head.linear.weight.mul_(20.0)
    student.save(folder)
    (folder / "training_metrics.json").write_text(json.dumps({"test": {"ua": 0.5}}))
    return folder


# (encoder, first-layer norm, do_normalize, dimensional head): HuBERT-base and -large as
# published, wav2vec 2.0 base (group norm on normalised input: the case an fp16 graph got
# wrong), WavLM large; two with the second output, `dimensions`.
STUDENTS = [
    ("hubert", "group", False, True),
    ("hubert", "layer", True, False),
    ("wav2vec2", "group", True, False),
    ("wavlm", "layer", True, True),
]
IDS = ["-".join(map(str, s[:3])) + ("-dimensions" if s[3] else "") for s in STUDENTS]


@pytest.fixture(scope="module", params=STUDENTS, ids=IDS)
def exported(request, tmp_path_factory) -> tuple[Path, Path, dict]:
    encoder, norm, do_normalize, dimensions = request.param
    root = tmp_path_factory.mktemp(f"export_{encoder}_{norm}")
    checkpoint = write_checkpoint(root / "checkpoint", norm, encoder, do_normalize, dimensions)
    metadata = export_bundle(checkpoint, root / "bundle", FAST)
    return checkpoint, root / "bundle", metadata.parity


def has_dimensions(bundle: Path) -> bool:
    return load_bundle(bundle).dimensions is not None


def test_parity_figures_are_within_the_contract(exported):
    _, bundle, figures = exported
    assert figures["fp32_vs_pytorch"]["max_abs_logit"] <= 1e-4
    assert figures["fp32_batched_vs_alone"]["max_abs_probability"] <= 1e-4
    assert figures["fp16_batched_vs_alone"]["max_abs_probability"] <= 5e-3
    assert figures["fp16_vs_fp32"]["clips"] >= 200
    assert figures["fp16_vs_fp32"]["argmax_agreement"] >= 0.995
    assert figures["fp16_vs_fp32"]["max_abs_probability"] <= 1e-2
    assert "argmax_agreement" in figures["int8_vs_fp32"] and "kept" in figures["int8_vs_fp32"]
    # Every check on the logits covers the dimensions too, on their own (0, 1) scale.
    dims = [f.get("max_abs_dimension") for f in figures.values() if isinstance(f, dict)]
    if not has_dimensions(bundle):
        assert dims.count(None) == len(dims)
        return
    assert figures["fp32_vs_pytorch"]["max_abs_dimension"] <= 1e-4
    assert figures["fp32_batched_vs_alone"]["max_abs_dimension"] <= 1e-4
    assert figures["fp16_batched_vs_alone"]["max_abs_dimension"] <= 5e-3
    assert figures["fp16_vs_fp32"]["max_abs_dimension"] <= 1e-2
    assert "max_abs_dimension" in figures["int8_vs_fp32"]


def test_the_dimensions_output_is_the_students_own_batched_or_alone(exported):
    """ONNX == PyTorch (the training forward, EmoDistillStudent) and batched == alone, on the
    dimensions: 1e-4 (fp32)."""
    checkpoint, bundle, _ = exported
    if not has_dimensions(bundle):
        pytest.skip("a student without a dimensional head")
    clips = probe_clips(5, 0.5, 6.0, 16_000, seed=9)
    student = EmoDistillStudent.load(checkpoint).eval()
    session = make_session(bundle / MODEL_FP32)
    values, mask = pad_batch(clips)
    names = [o.name for o in session.get_outputs()]
    assert names == [LOGITS, DIMENSIONS]
    _, dims = session.run(None, {INPUT_VALUES: values, ATTENTION_MASK: mask})
    assert dims.shape == (5, 3) and ((dims > 0) & (dims < 1)).all()
    assert dims.std(axis=0).min() > 1e-3  # spread: a constant would pass any equality
    with torch.no_grad():
        theirs = student(torch.from_numpy(values), torch.from_numpy(mask)).dimensions
    assert theirs is not None
    np.testing.assert_allclose(dims, theirs.numpy(), atol=1e-4, rtol=0)
    for i, clip in enumerate(clips):
        one_values, one_mask = pad_batch([clip])
        alone = session.run(None, {INPUT_VALUES: one_values, ATTENTION_MASK: one_mask})[1]
        np.testing.assert_allclose(alone[0], dims[i], atol=1e-4, rtol=0)


def test_the_naive_export_changes_answers_with_the_batch(exported):
    """Contrast: transformers' forward without a mask, exported as optimum does by default."""
    _, _, figures = exported
    assert figures["naive_batched_vs_alone"]["max_abs_probability"] > 1e-3
    assert figures["naive_batched_vs_alone"]["max_abs_probability"] > 100 * max(
        figures["fp32_batched_vs_alone"]["max_abs_probability"], 1e-7
    )


def test_bundle_holds_the_contract(exported):
    checkpoint, bundle, _ = exported
    metadata = load_bundle(bundle)
    assert metadata.labels == LABELS and metadata.sample_rate_hz == 16_000
    assert [t.name for t in metadata.inputs] == [INPUT_VALUES, ATTENTION_MASK]
    assert metadata.bundle_version == 3
    assert metadata.outputs[0].name == LOGITS and metadata.outputs[0].shape[1] == 4
    if (checkpoint / "dimension_head.pt").is_file():
        assert [t.name for t in metadata.outputs] == [LOGITS, DIMENSIONS]
        assert metadata.outputs[1].shape == ["batch", 3]
        assert metadata.dimensions is not None
        assert metadata.dimension_names == list(DIMENSION_NAMES)
        assert metadata.dimensions.scale == (0.0, 1.0)
    else:
        assert [t.name for t in metadata.outputs] == [LOGITS] and metadata.dimensions is None
    assert {MODEL_FP32, MODEL_FP16, "config.json", "preprocessor_config.json"} <= set(
        metadata.files
    )
    for name, digest in metadata.files.items():
        assert sha256_of(bundle / name) == digest
    assert metadata.training_metrics == {"test": {"ua": 0.5}}
    assert (bundle / "config.json").read_bytes() == (checkpoint / "config.json").read_bytes()
    assert (
        metadata.do_normalize
        == json.loads((checkpoint / "preprocessor_config.json").read_text())["do_normalize"]
    )


def test_verify_recomputes_and_names_an_altered_file(exported, tmp_path, capsys):
    checkpoint, bundle, _ = exported
    quick = ExportOptions(reference_clips=6, invariance_clips=6, agreement_clips=20)
    figures, problems = verify_bundle(bundle, checkpoint, quick)
    assert problems == [] and figures["fp32_vs_pytorch"]["max_abs_logit"] <= 1e-4

    altered = tmp_path / "altered"
    subprocess.run(["cp", "-r", str(bundle), str(altered)], check=True)
    with (altered / MODEL_FP16).open("ab") as f:
        f.write(b"\0")
    _, problems = verify_bundle(altered)
    assert len(problems) == 1 and problems[0].startswith(f"{MODEL_FP16}: sha256")
    with pytest.raises(SystemExit, match=f"verification failed:\n  {MODEL_FP16}"):
        main(["verify", str(altered)])
    with pytest.raises(BundleError, match="is corrupt"):
        load_bundle(altered)


def test_export_refuses_when_parity_fails(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "checkpoint", "group")
    strict = ExportOptions(
        reference_clips=4,
        invariance_clips=4,
        agreement_clips=8,
        naive_contrast=False,
        limits=Limits(fp32_vs_pytorch_logit=0.0),
    )
    with pytest.raises(ParityError, match=r"fp32_vs_pytorch\.max_abs_logit = .*limit <= 0"):
        export_bundle(checkpoint, tmp_path / "bundle", strict)
    assert not (tmp_path / "bundle").exists()
    assert not list(tmp_path.glob(".bundle*"))  # no partial bundle left behind


def test_checkpoint_errors_are_clear(tmp_path):
    with pytest.raises(CheckpointError, match="not a folder"):
        export_bundle(tmp_path / "nope", tmp_path / "b", FAST)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"lacks config\.json, preprocessor_config\.json"):
        export_bundle(tmp_path / "empty", tmp_path / "b", FAST)
    checkpoint = write_checkpoint(tmp_path / "checkpoint", "group")
    with pytest.raises(CheckpointError, match="do not match"):
        export_bundle(checkpoint, tmp_path / "b", FAST, expected_labels=["a", "b", "c", "d"])
    config = json.loads((checkpoint / "config.json").read_text())
    (checkpoint / "config.json").write_text(
        json.dumps({**config, "model_type": "bert", "architectures": ["BertModel"]})
    )
    with pytest.raises(CheckpointError, match="not a supported speech classifier"):
        export_bundle(checkpoint, tmp_path / "b", FAST)
    with pytest.raises(SystemExit, match=r"error: .*not a supported speech classifier"):
        main(["--checkpoint", str(checkpoint), "--out", str(tmp_path / "b")])


def test_triton_repository(exported, tmp_path):
    _, bundle, _ = exported
    main(["triton", str(bundle), "--out", str(tmp_path / "repo")])
    model = tmp_path / "repo" / "emodistill"
    config = (model / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in config and "dynamic_batching" in config
    assert f'name: "{INPUT_VALUES}"' in config and f'name: "{ATTENTION_MASK}"' in config
    assert "dims: [ 4 ]" in config and "KIND_GPU" in config
    assert (f'name: "{DIMENSIONS}"' in config) == has_dimensions(bundle)
    assert (model / "1" / "model.onnx").read_bytes() == (bundle / MODEL_FP16).read_bytes()
    assert (model / "labels.txt").read_text().split() == LABELS


def test_every_consumer_feeds_raw_audio(exported, tmp_path):
    """A Triton or KServe client sends raw audio to the repository's graph and gets what the
    runtime (and so the service) answers: the normalisation is in the graph. Tolerance 1e-5
    (fp32, the same graph)."""
    _, bundle, _ = exported
    assert load_bundle(bundle).normalized_in_graph
    write_triton_repository(bundle, tmp_path / "repo", gpu=False)
    triton = make_session(tmp_path / "repo" / "emodistill" / "1" / "model.onnx")
    clips = [3.0 * c for c in probe_clips(5, 0.5, 6.0, 16_000, seed=7)]  # loud: norm matters
    values, mask = pad_batch(clips)
    outputs = triton.run(None, {INPUT_VALUES: values, ATTENTION_MASK: mask})
    theirs = softmax(outputs[0])
    answers = emodistill.load(bundle, device="cpu").predict_many(clips)
    ours = np.array([[a.probabilities[label] for label in LABELS] for a in answers])
    np.testing.assert_allclose(theirs, ours, atol=1e-5, rtol=0)
    if has_dimensions(bundle):  # the second output reaches the answers unchanged
        dims = np.array([[getattr(a.dimensions, n) for n in DIMENSION_NAMES] for a in answers])
        np.testing.assert_allclose(outputs[1], dims, atol=1e-5, rtol=0)
    else:
        assert len(outputs) == 1 and all(a.dimensions is None for a in answers)


def test_a_version_1_bundle_still_answers_the_same(exported, tmp_path):
    """Bundles written before the normalisation moved into the graph leave it to the caller:
    the runtime still applies it for them (1e-5), and `export triton` refuses them."""
    checkpoint, bundle, _ = exported
    if not load_bundle(bundle).do_normalize:
        pytest.skip("a student without do_normalize has no normalisation to move")
    old = tmp_path / "v1"
    shutil.copytree(bundle, old)
    model, _ = load_classifier(checkpoint)
    onnx_graph.export_fp32(model, old / MODEL_FP32, 16_000, normalize=False)
    data = json.loads((old / METADATA).read_text())
    del data["normalized_in_graph"], data["dimensions"]
    data["outputs"] = data["outputs"][:1]
    data["bundle_version"] = 1
    data["files"][MODEL_FP32] = sha256_of(old / MODEL_FP32)
    (old / METADATA).write_text(json.dumps(data))

    clips = [3.0 * c for c in probe_clips(4, 0.5, 6.0, 16_000, seed=8)]
    before = emodistill.load(old, device="cpu").predict_many(clips)
    now = emodistill.load(bundle, device="cpu").predict_many(clips)
    for a, b in zip(before, now, strict=True):
        for label in LABELS:
            assert a.probabilities[label] == pytest.approx(b.probabilities[label], abs=1e-5)
    with pytest.raises(SystemExit, match="export it again"):
        main(["triton", str(old), "--out", str(tmp_path / "repo")])


def test_the_contract_package_needs_no_torch():
    code = "import sys, emodistill.bundle, emodistill.audio; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_bundle_json_rejects_unknown_keys(exported, tmp_path):
    _, bundle, _ = exported
    data = json.loads((bundle / METADATA).read_text())
    (tmp_path / METADATA).write_text(json.dumps({**data, "surprise": 1}))
    with pytest.raises(BundleError, match="not a valid bundle description"):
        load_bundle(tmp_path, verify=False)


# training_metrics.json as training wrote it before calibration existed, and as it writes it
# now (the layout of a synthetic-corpus fold): both must still export.
SCORES = {"wa": 0.5, "ua": 0.5, "confusion": [[1, 1], [1, 1]], "labels": ["neutral", "angry"]}
BEFORE_CALIBRATION = {"fold": 0, "test_speakers": ["S01F"], "student_val": SCORES, "test": SCORES}
WITH_CALIBRATION = {
    **BEFORE_CALIBRATION,
    "calibration": {
        "temperature": 1.7,
        "fitted_on": "fold 0 validation speakers (S01M)",
        "clips": 8,
        "bins": 15,
        "ece_before": 0.2,
        "ece_after": 0.05,
        "nll_before": 1.5,
        "nll_after": 1.3,
    },
    "trained_on": {
        "corpus": "synthetic (espeak-ng)",
        "utterances": 56,
        "speakers": 7,
        "protocol": "speaker",
        "fold": 0,
        "test_speakers": ["S01F"],
        "test_ua": 0.5,
        "test_wa": 0.5,
    },
    "note": "Demo model.",
}


@pytest.mark.parametrize("record", [BEFORE_CALIBRATION, WITH_CALIBRATION], ids=["old", "now"])
def test_every_training_record_layout_exports(tmp_path, record):
    """bundle.json copies the record as training wrote it, and takes its calibration, what
    the model learned from and its note from it (none of them in the older layout)."""
    checkpoint = write_checkpoint(tmp_path / "checkpoint", "group")
    (checkpoint / TRAINING_METRICS).write_text(json.dumps(record, indent=2))
    quick = ExportOptions(
        reference_clips=4, invariance_clips=4, agreement_clips=16, int8=False, naive_contrast=False
    )
    export_bundle(checkpoint, tmp_path / "bundle", quick)
    metadata = load_bundle(tmp_path / "bundle")  # as a service reads it
    assert metadata.training_metrics == record
    for key in ("calibration", "trained_on"):
        found = getattr(metadata, key)
        assert (found.model_dump() if found else None) == record.get(key)
    assert metadata.note == record.get("note")


def test_a_malformed_training_record_is_a_checkpoint_error(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "checkpoint", "group")
    for bad in ({"calibration": {"temperature": -1.0}}, {**BEFORE_CALIBRATION, "surprise": 1}):
        (checkpoint / TRAINING_METRICS).write_text(json.dumps(bad))
        with pytest.raises(CheckpointError, match=f"{TRAINING_METRICS} is not a training record"):
            export_bundle(checkpoint, tmp_path / "bundle", FAST)
    assert not (tmp_path / "bundle").exists()
