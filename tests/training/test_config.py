"""Typed run configs: the shipped ones load, unknown keys are errors, overrides merge."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from training.config import RunConfig, load_config, save_config

CONFIGS = Path(__file__).resolve().parents[2] / "training" / "configs"


SHIPPED = sorted(p.name for p in CONFIGS.glob("*.yaml"))
# The hub ids each IEMOCAP config names (loaded by `from_pretrained` where the hub is reachable).
HUB_IDS = {
    "iemocap_hubert_base.yaml": "facebook/hubert-base-ls960",
    "iemocap_hubert_large.yaml": "facebook/hubert-large-ll60k",
    "iemocap_wav2vec2_base.yaml": "facebook/wav2vec2-base",
    "iemocap_wavlm_large.yaml": "microsoft/wavlm-large",
}


def test_every_encoder_family_has_an_iemocap_config():
    assert {n for n in SHIPPED if n.startswith("iemocap")} == set(HUB_IDS)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_load(name: str):
    config = load_config(CONFIGS / name)
    o = config.optim
    assert o.global_batch_size % o.per_device_batch_size == 0
    if name.startswith("iemocap"):
        assert config.corpus.kind == "iemocap" and config.student.pretrained == HUB_IDS[name]
        assert o.global_batch_size == 128 and o.lr == 1e-4  # the paper's settings
        assert (config.loss.tau_linguistic, config.loss.tau_prosodic) == (4.0, 0.5)


@pytest.mark.parametrize(
    ("path", "value"),
    [((), {"nmae": "x"}), (("optim",), {"learning_rate": 1}), (("loss",), {"temperature": 2})],
)
def test_unknown_keys_are_errors(tmp_path: Path, path: tuple[str, ...], value: dict):
    data = yaml.safe_load((CONFIGS / "demo.yaml").read_text())
    target = data
    for key in path:
        target = target.setdefault(key, {})
    target.update(value)
    file = tmp_path / "bad.yaml"
    file.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        load_config(file)


def test_overrides_merge_and_the_resolved_config_round_trips(tmp_path: Path):
    base = load_config(CONFIGS / "demo.yaml")
    config = load_config(CONFIGS / "demo.yaml", {"optim": {"epochs": 3}, "out_dir": "elsewhere"})
    assert config.optim.epochs == 3 != base.optim.epochs
    assert config.optim.model_dump(exclude={"epochs"}) == base.optim.model_dump(exclude={"epochs"})
    assert config.run_dir == Path("elsewhere/demo")
    save_config(config, tmp_path / "resolved.yaml")
    assert load_config(tmp_path / "resolved.yaml") == config


def test_corpus_source_is_checked():
    with pytest.raises(ValueError, match=r"needs corpus\.root"):
        RunConfig.model_validate({"name": "x", "corpus": {"kind": "iemocap", "prepared_dir": "d"}})
