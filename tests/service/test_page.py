"""The page at / in headless Chromium (Debian's), driven by Playwright.

Upload (picker and drag and drop), recording with the browser's MediaRecorder (Chromium's fake
microphone, a beep), the timeline of a long clip and its player, the model block, and errors.
Answers from the real service, except where a test pins the answer contract's optional keys
with a canned answer (Playwright's request interception), which today's server does not send.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request

import numpy as np
import pytest
import soundfile as sf

from emodistill.audio import load_audio
from tests.service.conftest import wav_bytes

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LABELS = ["neutral", "angry", "sad", "happy"]


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing under CI: .ci/run must install it")
        pytest.skip("chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                # The microphone is granted without asking, and is Chromium's synthetic beep.
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                "--autoplay-policy=no-user-gesture-required",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server):
    """The page, loaded; fails the test if its script threw."""
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    thrown: list[str] = []
    page.on("pageerror", lambda err: thrown.append(str(err)))
    page.goto(live_server + "/")
    yield page
    page.close()
    assert not thrown, f"the page's script threw: {thrown}"


def answer_bars(page) -> dict[str, float]:
    """The bars once the answer is shown; an error shown instead fails with its text."""
    page.wait_for_selector("#bars .bar, #status.error", timeout=20_000)
    if page.is_visible("#status.error"):
        pytest.fail(f"the page shows an error: {page.inner_text('#status')}")
    out = {}
    for row in page.query_selector_all("#bars .bar"):
        cells = row.query_selector_all("span")
        out[cells[0].inner_text()] = float(cells[-1].inner_text().rstrip("%"))
    return out


def shown_error(page) -> str:
    page.wait_for_selector("#status.error", timeout=20_000)
    return page.inner_text("#status")


def drop(page, data: bytes, name: str, mime: str) -> None:
    """Drop a file on the page as a person would (dragenter, dragover, drop with the File)."""
    page.evaluate(
        """([b64, name, type]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type }));
            const target = document.querySelector("#drop");
            const options = { dataTransfer: transfer, bubbles: true, cancelable: true };
            for (const kind of ["dragenter", "dragover", "drop"])
                target.dispatchEvent(new DragEvent(kind, options));
        }""",
        [base64.b64encode(data).decode(), name, mime],
    )


def test_upload_shows_probabilities_as_bars(page, tmp_path):
    clip = tmp_path / "clip.wav"
    clip.write_bytes(wav_bytes(1.2))
    page.set_input_files("#file", str(clip))
    shown = answer_bars(page)
    assert list(shown) == LABELS
    assert sum(shown.values()) == pytest.approx(100.0, abs=0.5)
    assert "emodistill" in page.inner_text("#status")
    assert "emodistill v" in page.inner_text("#model")  # today's model block: name, version
    assert page.is_hidden("#timeline") and page.is_hidden("#note")  # one window: bars alone
    assert page.evaluate("document.querySelector('#player').src").startswith("blob:")


# --- a minute of speech: the timeline ---------------------------------------------------------

SENTENCES = [
    "I cannot believe you did that again.",
    "The weather is lovely this morning.",
    "Please leave me alone for a while.",
    "We won the match, what a wonderful day!",
    "Where did you put the keys?",
    "Nobody ever listens to me here.",
]
GAPS_S = [1.0, 2.5, 1.5, 3.0, 2.0]  # silence after each utterance, in turn


@pytest.fixture(scope="module")
def spoken_minute(require_espeak) -> bytes:
    """60 s of espeak-ng utterances separated by 1-3 s of silence: 16 kHz 16-bit WAV bytes."""
    rate_hz, total = 16_000, 60 * 16_000
    pieces, n, i = [], 0, 0
    while n < total:
        spoken = subprocess.run(
            ["espeak-ng", "--stdout", SENTENCES[i % len(SENTENCES)]],
            capture_output=True,
            check=True,
        ).stdout
        speech = load_audio(spoken, rate_hz)
        gap = np.zeros(int(GAPS_S[i % len(GAPS_S)] * rate_hz), np.float32)
        pieces += [speech, gap]
        n += len(speech) + len(gap)
        i += 1
    buffer = io.BytesIO()
    sf.write(buffer, np.concatenate(pieces)[:total], rate_hz, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def test_a_long_dropped_file_shows_its_timeline_and_clicks_seek(page, spoken_minute, tmp_path):
    drop(page, spoken_minute, "minute.wav", "audio/wav")
    assert list(answer_bars(page)) == LABELS  # the whole clip's bars stay
    segments = page.query_selector_all("#timeline .seg")
    assert len(segments) >= 3
    assert page.inner_text("#legend").split() == LABELS
    legend = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('#legend > span')].map(
            (s) => [s.textContent, getComputedStyle(s.firstChild).backgroundColor]))"""
    )
    for seg in segments:  # named (written out where it fits) and in its label's colour
        label = seg.get_attribute("data-label")
        assert label in LABELS and seg.inner_text() == label
        assert seg.evaluate("(s) => getComputedStyle(s).backgroundColor") == legend[label]
    assert len(page.query_selector_all("#segments tbody tr")) == len(segments)
    headline = page.inner_text("#status")  # label · duration · model · what was sent
    assert headline.startswith(page.inner_text("#bars .top span") + " · 60.0 s · ")
    assert headline.endswith(" · minute.wav")

    # Hover: the segment's probabilities.
    later = [s for s in segments if float(s.get_attribute("data-start")) >= 20]
    target = later[0]
    start, end = float(target.get_attribute("data-start")), float(target.get_attribute("data-end"))
    target.hover()
    page.wait_for_selector("#tip:not([hidden])")
    tip = page.inner_text("#tip")
    assert tip.count("%") == len(LABELS) and target.get_attribute("data-label") in tip
    page.screenshot(path=str(tmp_path / "page_timeline_hover.png"), full_page=True)

    # Click: the player goes there, the playhead with it, and the segment is marked.
    target.click()
    page.wait_for_function(
        "([a, b]) => (t => t >= a && t < b)(document.querySelector('#player').currentTime)",
        arg=[start, end],
        timeout=10_000,
    )
    # The playhead follows on the player's next time update: wait for it, then compare.
    page.wait_for_function(
        "() => parseFloat(document.querySelector('#playhead').style.left) > 0", timeout=10_000
    )
    state = page.evaluate(
        """() => ({
            t: document.querySelector('#player').currentTime,
            left: parseFloat(document.querySelector('#playhead').style.left),
        })"""
    )
    assert state["left"] == pytest.approx(100 * state["t"] / 60.0, abs=1.0)  # [%], ~0.6 s
    assert "active" in (target.get_attribute("class") or "")
    page.screenshot(path=str(tmp_path / "page_timeline.png"), full_page=True)


# --- recording --------------------------------------------------------------------------------


def test_recording_from_a_microphone_is_scored(page):
    page.click("#record")
    page.wait_for_function("document.querySelector('#record').textContent === 'Stop'")
    page.wait_for_timeout(2000)
    with page.expect_request("**/predict") as sent:
        page.click("#record")
    # What Chromium's MediaRecorder makes, sent as it is.
    assert sent.value.headers["content-type"] == "audio/webm;codecs=opus"
    assert len(answer_bars(page)) == len(LABELS)


# --- the answer contract's optional keys (canned answers; today's server sends none) ----------

NOTE = "Learned from synthetic espeak-ng speech: it does not recognise emotion in real voices."
FULL_ANSWER = {
    "label": "sad",
    "probabilities": {"neutral": 0.2, "angry": 0.1, "sad": 0.6, "happy": 0.1},
    "duration_s": 12.0,
    "speech_s": 7.5,
    "segmentation": "speech",
    "segments": [
        {"start_s": s, "end_s": e, "label": label, "probabilities": p}
        for s, e, label, p in [
            (0.4, 3.1, "sad", {"neutral": 0.1, "angry": 0.1, "sad": 0.7, "happy": 0.1}),
            (4.0, 6.2, "neutral", {"neutral": 0.5, "angry": 0.2, "sad": 0.2, "happy": 0.1}),
            (8.5, 11.1, "angry", {"neutral": 0.1, "angry": 0.6, "sad": 0.2, "happy": 0.1}),
        ]
    ],
    "model": {
        "name": "emodistill",
        "version": "2",
        "calibrated": False,
        "trained_on": {
            "corpus": "synthetic (espeak-ng)",
            "utterances": 2400,
            "speakers": 8,
            "protocol": "leave one session out",
            "test_ua": 0.625,
            "test_wa": 0.61,
        },
        "note": NOTE,
    },
}


def test_the_whole_answer_contract_is_shown(page, tmp_path):
    page.route("**/predict", lambda route: route.fulfill(json=FULL_ANSWER))
    clip = tmp_path / "clip.wav"
    clip.write_bytes(wav_bytes(12.0))
    page.set_input_files("#file", str(clip))
    assert answer_bars(page)["sad"] == 60.0
    assert page.is_visible("#note") and NOTE in page.inner_text("#note")
    model = page.inner_text("#model")
    for shown in ["emodistill v2", "synthetic (espeak-ng)", "2,400 utterances", "8 speakers"]:
        assert shown in model
    assert "leave one session out" in model and "62.5% unweighted, 61.0% weighted" in model
    assert "not calibrated" in model
    assert "speech 7.5 s" in page.inner_text("#status")
    # Speech segments do not overlap: one row, three segments, the gaps empty.
    assert len(page.query_selector_all("#timeline .lane")) == 1
    assert [s.inner_text() for s in page.query_selector_all("#timeline .seg")] == [
        "sad",
        "neutral",
        "angry",
    ]
    assert "3 speech segments" in page.inner_text("#timeline-caption")
    page.screenshot(path=str(tmp_path / "page_contract.png"), full_page=True)


def _with_dimensions(answer: dict) -> dict:
    """FULL_ANSWER as a bundle with dimensions answers it: per segment and for the clip."""
    rated = [(0.2, 0.2, 0.3), (0.5, 0.5, 0.5), (0.9, 0.1, 0.8)]  # sad, neutral, angry
    segments = [
        {**s, "dimensions": dict(zip(("arousal", "valence", "dominance"), d, strict=True))}
        for s, d in zip(answer["segments"], rated, strict=True)
    ]
    card = {
        "names": ["arousal", "valence", "dominance"],
        "scale": [0.0, 1.0],
        "trained": {
            "targets": "IEMOCAP ratings",
            "utterances": 10,
            "test_ccc": {"arousal": 0.61, "valence": 0.42, "dominance": 0.5},
        },
    }
    return {
        **answer,
        "dimensions": {"arousal": 0.55, "valence": 0.25, "dominance": 0.6},
        "segments": segments,
        "model": {**answer["model"], "dimensions": card},
    }


def test_dimensions_are_drawn_on_the_plane_as_bars_and_along_the_timeline(page, tmp_path):
    page.route("**/predict", lambda route: route.fulfill(json=_with_dimensions(FULL_ANSWER)))
    clip = tmp_path / "clip.wav"
    clip.write_bytes(wav_bytes(12.0))
    page.set_input_files("#file", str(clip))
    answer_bars(page)
    assert page.is_visible("#dims") and page.is_visible("#curves")
    # The clip's point: valence 0.25 across, arousal 0.55 up (8 + 84 v, 92 - 84 a).
    point = page.query_selector("#clip-point")
    assert float(point.get_attribute("cx")) == pytest.approx(8 + 84 * 0.25)
    assert float(point.get_attribute("cy")) == pytest.approx(92 - 84 * 0.55)
    assert len(page.query_selector_all("#plane .segment-point")) == 3
    bars = {
        b.get_attribute("data-dimension"): b.query_selector_all("span")[-1].inner_text()
        for b in page.query_selector_all("#dim-bars .bar")
    }
    assert bars == {"arousal": "0.55", "valence": "0.25", "dominance": "0.60"}
    assert len(page.query_selector_all("#curves polyline")) == 3
    heads = [h.inner_text() for h in page.query_selector_all("#segments th")]
    assert heads[-3:] == ["arousal", "valence", "dominance"]
    assert "held-out CCC arousal 0.61, valence 0.42" in page.inner_text("#model")
    page.screenshot(path=str(tmp_path / "page_dimensions.png"), full_page=True)


def test_an_answer_without_dimensions_draws_none(page, tmp_path):
    page.route("**/predict", lambda route: route.fulfill(json=FULL_ANSWER))
    clip = tmp_path / "clip.wav"
    clip.write_bytes(wav_bytes(12.0))
    page.set_input_files("#file", str(clip))
    answer_bars(page)
    assert page.is_hidden("#dims") and page.is_hidden("#curves")
    assert "arousal" not in page.inner_text("#segments")


def test_a_dimensions_only_answer_draws_the_dimensions_alone(page, tmp_path):
    """A dimensions-only model's answer (no label, no probabilities, per segment too)."""
    answer = _with_dimensions(FULL_ANSWER)
    answer = {k: v for k, v in answer.items() if k not in ("label", "probabilities")}
    answer["segments"] = [
        {k: v for k, v in s.items() if k not in ("label", "probabilities")}
        for s in answer["segments"]
    ]
    page.route("**/predict", lambda route: route.fulfill(json=answer))
    clip = tmp_path / "clip.wav"
    clip.write_bytes(wav_bytes(12.0))
    page.set_input_files("#file", str(clip))
    page.wait_for_selector("#dim-bars .bar, #status.error", timeout=20_000)
    assert not page.is_visible("#status.error"), page.inner_text("#status")
    assert page.inner_text("#status").startswith("arousal 0.55, valence 0.25, dominance 0.60")
    assert page.query_selector_all("#bars .bar") == []
    assert page.is_visible("#dims") and page.is_visible("#timeline")
    assert len(page.query_selector_all("#plane .segment-point")) == 3
    assert "undefined" not in page.inner_text("#segments") + page.inner_text("#timeline")
    page.screenshot(path=str(tmp_path / "page_dimensions_only.png"), full_page=True)


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ({"name": "m", "version": "1", "trained_on": None, "calibrated": True}, "not stated"),
        ({"name": "m", "version": "1", "trained_on": {"corpus": "IEMOCAP"}}, "IEMOCAP"),
        ({}, ""),
    ],
)
def test_missing_keys_do_not_break_the_page(page, tmp_path, model, expected):
    answer = {"label": "happy", "probabilities": {"sad": 0.3, "happy": 0.7}, "duration_s": 1.0}
    answer |= {"model": model} if model else {}
    page.route("**/predict", lambda route: route.fulfill(json=answer))
    clip = tmp_path / "clip.wav"
    clip.write_bytes(wav_bytes(1.0))
    page.set_input_files("#file", str(clip))
    assert answer_bars(page) == {"sad": 30.0, "happy": 70.0}
    assert expected in page.inner_text("#model")
    assert page.is_hidden("#note") and page.is_hidden("#timeline")


# --- errors -----------------------------------------------------------------------------------


def test_the_servers_error_is_shown(page, live_server, tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_bytes(b"this is not audio")
    request = urllib.request.Request(
        live_server + "/predict",
        data=bad.read_bytes(),
        headers={"Content-Type": "application/octet-stream"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request)
    assert refused.value.code == 415
    detail = json.loads(refused.value.read())["detail"]
    page.set_input_files("#file", str(bad))
    assert shown_error(page) == f"error 415: {detail}"
    assert page.is_hidden("#result")


def test_network_failures_and_a_refused_microphone_are_shown(page, tmp_path):
    clip = tmp_path / "clip.wav"
    clip.write_bytes(wav_bytes(1.0))
    page.route("**/predict", lambda route: route.abort("connectionrefused"))
    page.set_input_files("#file", str(clip))
    assert "could not reach the service" in shown_error(page)

    page.unroute("**/predict")
    unauthorised = {"detail": "missing or wrong API key"}
    page.route("**/predict", lambda route: route.fulfill(status=401, json=unauthorised))
    page.set_input_files("#file", str(clip))
    page.wait_for_function("document.querySelector('#status').textContent.includes('401')")
    assert "missing or wrong API key (enter the service's API key above)" in shown_error(page)

    page.evaluate(
        """() => { navigator.mediaDevices.getUserMedia = () =>
            Promise.reject(new DOMException("Permission denied", "NotAllowedError")); }"""
    )
    page.click("#record")
    page.wait_for_function("document.querySelector('#status').textContent.includes('microphone')")
    assert "microphone: access was refused" in shown_error(page)
    assert page.inner_text("#record") == "Record"
