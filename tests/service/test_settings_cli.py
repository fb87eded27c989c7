"""`emodistill serve` / `python -m service` flags: one per setting, flags over variables."""

from __future__ import annotations

import pytest

from emodistill.options import InferenceOptions
from service.cli import build_parser, settings_from_cli
from service.settings import Settings


def test_every_setting_is_a_flag_and_inference_options_keep_their_defaults():
    flags = {a.dest for a in build_parser()._actions}
    assert set(Settings.model_fields) <= flags
    defaults = Settings().inference_options()
    assert defaults == InferenceOptions()  # one home: the service's defaults are the API's


def test_flags_win_over_variables_which_win_over_defaults(monkeypatch):
    monkeypatch.setenv("EMODISTILL_MAX_BATCH_SIZE", "4")
    monkeypatch.setenv("EMODISTILL_MAX_QUEUE", "9")
    settings = settings_from_cli(["--max-batch-size", "8"])
    assert (settings.max_batch_size, settings.max_queue, settings.hop_s) == (8, 9, 5.0)


def test_booleans_lists_and_choices():
    settings = settings_from_cli(
        ["--int8", "--warmup", "false", "--cors-origins", "http://a,http://b", "--device", "cpu"]
    )
    assert settings.int8 is True and settings.warmup is False and settings.device == "cpu"
    assert settings.cors_origins == ["http://a", "http://b"]
    assert settings_from_cli(["--cors-origins", '["x"]']).cors_origins == ["x"]
    with pytest.raises(SystemExit):
        settings_from_cli(["--warmup", "maybe"])
    with pytest.raises(SystemExit):
        settings_from_cli(["--layout", "bogus"])


def test_inconsistent_options_are_refused_by_the_one_check():
    with pytest.raises(ValueError, match="hop_s must not exceed window_s"):
        settings_from_cli(["--hop-s", "20"])
