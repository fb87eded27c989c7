"""The page at / in headless Chromium (Debian's), driven by Playwright: upload and record."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.service.conftest import wav_bytes

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


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
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
            ],
        )
        yield browser
        browser.close()


def bars(page) -> dict[str, float]:
    page.wait_for_selector("#bars .bar", timeout=20_000)
    out = {}
    for row in page.query_selector_all("#bars .bar"):
        cells = row.query_selector_all("span")
        out[cells[0].inner_text()] = float(cells[1].inner_text().rstrip("%"))
    return out


def test_upload_shows_probabilities_as_bars(browser, live_server, tmp_path):
    clip = tmp_path / "clip.wav"
    clip.write_bytes(wav_bytes(1.2))
    page = browser.new_page()
    page.goto(live_server + "/")
    page.set_input_files("#file", str(clip))
    shown = bars(page)
    assert list(shown) == ["neutral", "angry", "sad", "happy"]
    assert sum(shown.values()) == pytest.approx(100.0, abs=0.5)
    assert "emodistill" in page.inner_text("#status")
    page.screenshot(path=str(tmp_path / "page.png"))
    page.close()


def test_recording_from_a_microphone_is_scored(browser, live_server):
    page = browser.new_page()
    page.goto(live_server + "/")
    page.click("#record")
    page.wait_for_function("document.querySelector('#record').textContent === 'Stop'")
    page.wait_for_timeout(1200)
    page.click("#record")
    assert len(bars(page)) == 4
    page.close()


def test_errors_are_shown(browser, live_server, tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_bytes(b"this is not audio")
    page = browser.new_page()
    page.goto(live_server + "/")
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("#status.error", timeout=20_000)
    assert "error" in page.inner_text("#status")
    page.close()
