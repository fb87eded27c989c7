"""The page's Live mode in headless Chromium, the fake microphone fed from a WAV file (the
espeak-ng conversation): the live timeline grows with the file's utterances, the interim
estimate shows while it speaks, and the model loaded is named before anything is sent."""

from __future__ import annotations

import os
import shutil

import pytest
import soundfile as sf

from tests.emodistill.test_segments import make_conversation

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def conversation_wav(tmp_path_factory, require_espeak):
    audio, truth = make_conversation()
    path = tmp_path_factory.mktemp("live") / "conversation.wav"
    sf.write(str(path), audio, 16_000, subtype="PCM_16")
    return path, truth


@pytest.fixture(scope="module")
def live_browser(conversation_wav):
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
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={conversation_wav[0]}",
                "--autoplay-policy=no-user-gesture-required",
            ],
        )
        yield browser
        browser.close()


def test_live_mode_shows_the_files_utterances_as_they_end(
    live_browser, live_server, conversation_wav
):
    _, truth = conversation_wav
    page = live_browser.new_page(viewport={"width": 1000, "height": 900})
    thrown: list[str] = []
    page.on("pageerror", lambda err: thrown.append(str(err)))
    page.goto(live_server + "/")
    # The model is named before any upload or stream.
    page.wait_for_selector("#loaded strong", timeout=10_000)
    assert page.inner_text("#loaded strong").startswith("emodistill")
    page.click("#live-button")
    page.wait_for_selector("#interim:has-text('now:')", timeout=20_000)  # while it speaks
    page.wait_for_function("document.querySelectorAll('#live-list li').length >= 3", timeout=40_000)
    page.screenshot(path=str(os.environ.get("LIVE_SCREENSHOT", "/tmp/live-page.png")))
    page.click("#live-button")  # stop: the rest, then session.ended
    page.wait_for_selector("#status:has-text('live ended')", timeout=30_000)
    rows = page.query_selector_all("#live-list li")
    assert len(page.query_selector_all("#live-timeline .utt")) == len(rows) >= 3
    # The fake microphone loops the file from its start: each utterance shown is one of the
    # file's (its start within half a second of a known one, modulo the file's length).
    length_s = truth[-1][1] + 1.0
    for row in rows:
        start = float(row.get_attribute("data-start")) % length_s
        assert min(abs(start - a) for a, _ in truth) < 0.5, (start, truth)
    assert not thrown, thrown
    page.close()
