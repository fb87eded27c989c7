"""The synthetic corpus: deterministic, speaker-distinct, emotion in two measurable channels."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from training.corpus import synthetic
from training.corpus.manifest import read_labels, read_manifest
from training.corpus.synthetic import (
    EspeakMissingError,
    SyntheticConfig,
    build_corpus,
    plan_corpus,
    read_meta,
)
from training.features import EgemapsCache, extract_all, feature_names

SMALL = SyntheticConfig(seed=7, sessions=4, utterances_per_speaker=24, workers=2)


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory, request) -> Path:
    request.getfixturevalue("require_espeak")
    out = tmp_path_factory.mktemp("synthetic")
    build_corpus(SMALL, out, progress=False)
    return out


def test_plan_is_deterministic_and_balanced():
    plan = plan_corpus(SMALL)
    assert plan == plan_corpus(SMALL)
    assert plan != plan_corpus(SMALL.model_copy(update={"seed": 8}))

    speakers = {p.speaker.speaker for p in plan}
    assert len(speakers) == 8 and len({(p.speaker.voice, p.speaker.pitch) for p in plan}) == 8
    assert Counter(p.label for p in plan) == {label: 48 for label in synthetic.FOUR_CLASS_LABELS}
    emotional = [p for p in plan if p.label != "neutral"]
    assert Counter(p.mode for p in emotional) == {"both": 48, "words": 48, "prosody": 48}
    for p in plan:  # each channel carries the label exactly where the mode says
        neutral_words = any(_matches(t, p.text) for t in synthetic.NEUTRAL)
        assert neutral_words == (p.label == "neutral" or p.mode == "prosody")
        expected_voice = p.label if p.mode in ("both", "prosody") else "neutral"
        assert p.prosody.volume_pct == pytest.approx(
            synthetic.EMOTION_PROSODY[expected_voice].volume_pct, abs=5 * SMALL.prosody_jitter_pct
        )
    for p in emotional:
        emotional_words = any(_matches(t, p.text) for t in synthetic.EMOTIONAL[p.label])
        assert emotional_words == (p.mode in ("both", "words"))


def _matches(template: str, text: str) -> bool:
    pattern = re.escape(template)
    for slot in ("who", "thing", "time"):
        pattern = pattern.replace(re.escape("{" + slot + "}"), ".+")
    return re.fullmatch(pattern, text) is not None


def test_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match="extra"):
        SyntheticConfig(seed=1, speakers=3)  # type: ignore[call-arg]


def test_missing_espeak_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(synthetic.shutil, "which", lambda name: None)
    with pytest.raises(EspeakMissingError, match="apt-get install espeak-ng"):
        build_corpus(SMALL, tmp_path)


def test_corpus_files_and_manifest(corpus_dir: Path):
    rows = read_manifest(corpus_dir)
    assert len(rows) == 192 and read_labels(corpus_dir) == list(synthetic.FOUR_CLASS_LABELS)
    assert {r.session for r in rows} == {"S01", "S02", "S03", "S04"}
    for r in rows[::7]:
        info = sf.info(r.path)
        assert info.samplerate == 16_000 and info.channels == 1
        assert info.frames / info.samplerate == pytest.approx(r.duration_s, abs=1e-3)
        assert r.text and 1.0 < r.duration_s < 8.0


def test_same_seed_gives_the_same_samples(require_espeak):
    item = plan_corpus(SMALL)[5]
    espeak = synthetic.espeak_binary()
    np.testing.assert_array_equal(
        synthetic.synthesize(item, espeak), synthetic.synthesize(item, espeak)
    )


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def test_words_channel_carries_the_label_only_where_planned(corpus_dir: Path):
    """Multinomial naive Bayes on transcripts, trained on other speakers, equal priors."""
    rows, meta = read_manifest(corpus_dir), read_meta(corpus_dir)
    train = [r for r in rows if r.session != "S04"]
    test = [r for r in rows if r.session == "S04"]
    labels = list(synthetic.FOUR_CLASS_LABELS)
    vocab = {w: i for i, w in enumerate(sorted({w for r in rows for w in _words(r.text)}))}
    counts = np.ones((len(labels), len(vocab)))  # Laplace smoothing
    for r in train:
        for w in _words(r.text):
            counts[labels.index(r.label), vocab[w]] += 1
    log_p = np.log(counts / counts.sum(1, keepdims=True))
    predicted = [int(np.argmax(sum(log_p[:, vocab[w]] for w in _words(r.text)))) for r in test]

    by_mode: dict[str, list[bool]] = {"words-carried": [], "prosody-only": []}
    for r, p in zip(test, predicted, strict=True):
        if r.label == "neutral":
            continue
        key = "prosody-only" if meta[r.utt_id]["mode"] == "prosody" else "words-carried"
        by_mode[key].append(labels[p] == r.label)
    # Measured with seed 7: 0.79 where the words carry the label, 0.00 where only the
    # prosody does (flat sentences are read as neutral); chance is 0.25.
    assert np.mean(by_mode["words-carried"]) >= 0.65
    assert np.mean(by_mode["prosody-only"]) <= 0.15


def test_prosody_channel_is_measurable_in_egemaps(corpus_dir: Path, tmp_path: Path):
    rows, meta = read_manifest(corpus_dir), read_meta(corpus_dir)
    cache = EgemapsCache(tmp_path / "cache")
    extract_all([r.path for r in rows], cache, workers=2, progress=False)
    names = feature_names()
    f0_col, loud_col = names.index("F0semitoneFrom27.5Hz_sma3nz"), names.index("Loudness_sma3")

    def mean_of(label: str, modes: tuple[str, ...]) -> tuple[float, float]:
        f0s, louds = [], []
        for r in rows:
            if r.label == label and meta[r.utt_id]["mode"] in modes:
                lld = cache.get(Path(r.path))
                f0 = lld[:, f0_col]
                f0s.append(f0[f0 > 0].mean())
                louds.append(lld[:, loud_col].mean())
        return float(np.mean(f0s)), float(np.mean(louds))

    angry_f0, angry_loud = mean_of("angry", ("both", "prosody"))
    sad_f0, sad_loud = mean_of("sad", ("both", "prosody"))
    neutral_f0, neutral_loud = mean_of("neutral", ("both",))
    angry_words_f0, angry_words_loud = mean_of("angry", ("words",))
    # Angry prosody: higher and louder than sad (measured ≈ +8 semitones, ×1.9 loudness).
    assert angry_f0 - sad_f0 > 4.0
    assert angry_loud / sad_loud > 1.5
    # Angry words spoken flatly sound like neutral speech (measured gaps ≈ 0.2 st, 5 %).
    assert abs(angry_words_f0 - neutral_f0) < 2.0
    assert abs(angry_words_loud / neutral_loud - 1) < 0.2


def test_dimension_targets_follow_the_channel_that_carries_each():
    """Arousal from the voice's emotion, valence from the words', dominance their mean."""
    emotion = synthetic.EMOTION_DIMENSIONS
    for item in plan_corpus(SMALL):
        arousal, valence, dominance = synthetic.dimension_targets(item)
        words = item.label if item.mode != "prosody" else "neutral"
        voice = item.label if item.mode != "words" else "neutral"
        assert arousal == emotion[voice][0] and valence == emotion[words][1]
        assert dominance == pytest.approx((emotion[voice][2] + emotion[words][2]) / 2)
    # Each emotion's place differs from neutral in arousal or valence, so both dimensions vary.
    assert len({v[:2] for v in emotion.values()}) == len(emotion)


def test_manifest_carries_the_targets_and_says_they_are_synthetic(corpus_dir: Path):
    from training.corpus.manifest import read_dimension_scale

    plan = {p.utt_id: p for p in plan_corpus(SMALL)}
    for row in read_manifest(corpus_dir):
        assert row.dimensions == pytest.approx(synthetic.dimension_targets(plan[row.utt_id]))
    scale = read_dimension_scale(corpus_dir)
    assert scale is not None and scale.rated == len(plan) and "not ratings" in scale.source
