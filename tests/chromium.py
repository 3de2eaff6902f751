"""Headless Chromium for the page and report tests, driven by Selenium and the system driver.

`Browser` starts the system Chromium through the system ChromeDriver (Debian's
`chromium-driver`), both by explicit path, so Selenium Manager never runs and nothing is
downloaded. It opens one tab with a fixed viewport and records what a test wants to check:
console errors, uncaught exceptions and browser log errors (ChromeDriver's `browser` log) and
every network request (`Network.requestWillBeSent` in its `performance` log).
"""

from __future__ import annotations

import base64
import json
import shutil
import tempfile
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--mute-audio",
]
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
SETUP = "run `make system-deps` (it installs chromium and chromium-driver with apt)"


def _which(names: tuple[str, ...]) -> str | None:
    return next((found for name in names if (found := shutil.which(name))), None)


def chromium_binary() -> str | None:
    """The Chromium (or Chrome) executable on PATH, if any."""
    return _which(CHROMIUM_NAMES)


def chromedriver_binary() -> str | None:
    """The ChromeDriver on PATH (Debian's `chromium-driver` puts it in /usr/bin), if any."""
    return _which(("chromedriver",))


def browser_paths() -> tuple[str, str]:
    """Chromium and ChromeDriver, or a failed test that says how to install them."""
    chromium, driver = chromium_binary(), chromedriver_binary()
    found = {"chromium": chromium, "chromedriver": driver}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not found on PATH: {SETUP}", pytrace=False)
    return chromium, driver


class Browser:
    """One headless tab with a `width` x `height` viewport and a fresh profile, closed on exit.

    `mobile` makes the tab behave as a phone's (the page's `<meta name="viewport">` applies).
    """

    def __init__(self, *, width: int = 1280, height: int = 900, mobile: bool = False) -> None:
        chromium, driver = browser_paths()
        self._profile = Path(tempfile.mkdtemp(prefix="churn-chromium-"))
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in [*FLAGS, f"--user-data-dir={self._profile}", f"--window-size={width},{height}"]:
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        try:
            self.driver = webdriver.Chrome(service=Service(driver), options=options)
        except Exception:
            shutil.rmtree(self._profile, ignore_errors=True)
            raise
        # the window's size includes the browser's own bars: fix the viewport itself
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
        )
        self._console: list[dict] = []
        self._events: list[dict] = []
        self._collect()
        self._console.clear()  # the driver's own start page is not the test's
        self._events.clear()

    def _collect(self) -> None:
        """Move what ChromeDriver logged since the last call into this object (it reads once)."""
        self._console += self.driver.get_log("browser")
        for entry in self.driver.get_log("performance"):
            self._events.append(json.loads(entry["message"])["message"])

    def load(self, path: Path) -> None:
        """Navigate to a local file and wait for its load event."""
        self.driver.get(Path(path).resolve().as_uri())

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (a promise is awaited)."""
        return self.driver.execute_script(f"return ({expression.strip().rstrip(';')});")

    def screenshot(self, out: Path) -> Path:
        """A PNG of what the viewport shows."""
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(self.driver.get_screenshot_as_png())
        return out

    def full_page_screenshot(self, out: Path) -> Path:
        """A PNG of the whole page, not only the viewport."""
        metrics = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(base64.b64decode(shot["data"]))
        return out

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and browser log errors seen so far."""
        self._collect()
        severe = [e for e in self._console if e["level"] == "SEVERE"]
        return [f"{e.get('source', 'log')}: {e['message']}" for e in severe]

    def requested_urls(self) -> list[str]:
        """Every URL the tab asked for (the page, its images, scripts, fonts...), in order."""
        self._collect()
        return [
            e["params"]["request"]["url"]
            for e in self._events
            if e["method"] == "Network.requestWillBeSent"
        ]

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
