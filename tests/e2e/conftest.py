"""Fixtures of the browser tier: headless Chromium (Debian's ``chromium`` and
``chromium-driver``) driven by Selenium, and the sandbox for the tests on real calls.

Request ``sandbox`` (or ``carrier`` / ``agents``) in a test that needs Asterisk: it is started
when it is not running (``tools/sandbox.sh up``); when it cannot start, the test fails under CI
and is skipped elsewhere. Such tests run under ``flock var/sandbox.lock``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

from tests.harness.agent import AgentPhones
from tests.harness.carrier import Carrier
from tests.harness.sandbox import Sandbox, ensure_sandbox

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        if os.environ.get("CI"):
            pytest.fail("chromium / chromium-driver are not installed")
        pytest.skip("chromium / chromium-driver are not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--lang=en-US",
                f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)


@pytest.fixture(scope="session")
def sandbox() -> Sandbox:
    """Both Asterisk instances are up and answer ARI."""
    return ensure_sandbox()


@pytest.fixture
async def carrier(sandbox: Sandbox) -> AsyncIterator[Carrier]:
    """Places SIP calls from B to A; hangs up whatever is left at the end of the test."""
    async with Carrier(sandbox.b) as sim:
        yield sim


@pytest.fixture
async def agents(sandbox: Sandbox) -> AsyncIterator[AgentPhones]:
    """Answers and records every call to agent100..agent109 (B's app ``agents``)."""
    async with AgentPhones(sandbox.b) as phones:
        yield phones
