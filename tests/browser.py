"""Headless Chromium for the tests that open pages (Debian's `chromium` and its matching `chromedriver`, driven by
Selenium with explicit paths: Selenium Manager's own browser download cannot work offline).

Without a browser the tests skip, unless ALIGNFLOW_REQUIRE_BROWSER=1 (set by .ci/run, which installs it): there a
missing browser is a failure, not a skip.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


def _find(*names: str) -> str | None:
    for n in names:
        path = shutil.which(n)
        if path:
            return path
    return None


@contextmanager
def chromium() -> Iterator[object]:
    """A headless Chromium WebDriver; quits on exit."""
    browser, driver_path = _find("chromium", "chromium-browser"), _find("chromedriver")
    if not (browser and driver_path):
        if os.environ.get("ALIGNFLOW_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium/chromedriver not found (apt-get install chromium chromium-driver)")
        pytest.skip("chromium/chromedriver not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1000"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    try:
        yield driver
    finally:
        driver.quit()
