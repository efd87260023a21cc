"""A headless Chromium for the browser tests (Debian's ``chromium`` + ``chromium-driver``).

The tests that take the ``browser`` fixture skip, saying why, where Selenium, Chromium or its
driver is missing; nothing is downloaded (Selenium is pointed at the system's driver, so its
driver manager never runs). ``CADENCE_SCREENSHOTS=DIR`` also copies each screenshot into DIR.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _binary() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (it is in the workspace's dev group: uv sync)")
    binary, driver_path = _binary(), shutil.which("chromedriver")
    if binary is None or driver_path is None:
        pytest.skip(
            "no headless browser: these tests need Chromium and its driver "
            "(Debian: apt-get install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1800",
        # The report is opened from file://; its audio is read back to decode it.
        "--allow-file-access-from-files",
        "--autoplay-policy=no-user-gesture-required",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def console_errors() -> Callable[[Any], list[dict[str, Any]]]:
    """The browser console's errors since the last call (reading drains the log)."""

    def read(driver: Any) -> list[dict[str, Any]]:
        return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]

    return read


@pytest.fixture
def screenshot(tmp_path) -> Callable[[Any, str], Path]:
    """Save a PNG of the page under the test's tmp_path (and $CADENCE_SCREENSHOTS when set)."""

    def shoot(driver: Any, name: str) -> Path:
        path = tmp_path / f"{name}.png"
        assert driver.save_screenshot(str(path)), f"no screenshot written to {path}"
        if os.environ.get("CADENCE_SCREENSHOTS"):
            target = Path(os.environ["CADENCE_SCREENSHOTS"])
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target / path.name)
        return path

    return shoot


@pytest.fixture
def decode_audio() -> Callable[[Any], list[dict[str, Any]]]:
    """Load and decode every <audio> of the page in the browser: [{src, duration, decoded, error}]
    (``duration`` from the element's metadata, ``decoded`` from Web Audio's decodeAudioData)."""

    def run(driver: Any) -> list[dict[str, Any]]:
        return driver.execute_async_script(DECODE_AUDIO_JS)

    return run


# Waits for every <audio> of the page to load its metadata, then reads each file back and
# decodes it with Web Audio.
DECODE_AUDIO_JS = """
const done = arguments[arguments.length - 1];
const ctx = new (window.OfflineAudioContext)(1, 1, 16000);
function read(src) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("GET", src);
    xhr.responseType = "arraybuffer";
    xhr.onload = () => (xhr.response ? resolve(xhr.response) : reject("empty response"));
    xhr.onerror = () => reject("cannot read " + src);
    xhr.send();
  });
}
async function check(audio) {
  const out = {src: audio.currentSrc || audio.src, duration: null, decoded: null, error: null};
  try {
    if (audio.readyState < 1) {
      await new Promise((resolve, reject) => {
        audio.addEventListener("loadedmetadata", resolve, {once: true});
        audio.addEventListener("error", () => reject("media error " + (audio.error && audio.error.code)), {once: true});
        audio.load();
      });
    }
    out.duration = audio.duration;
    const buffer = await ctx.decodeAudioData(await read(out.src));
    out.decoded = buffer.duration;
  } catch (e) { out.error = String(e); }
  return out;
}
Promise.all([...document.querySelectorAll("audio")].map(check)).then(done, e => done([{error: String(e)}]));
"""
