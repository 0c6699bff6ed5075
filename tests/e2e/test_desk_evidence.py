"""The agent desk shows a talk-through capture's leak evidence ("tones masked: N, leaked: 0"),
in English and German, as the capture flow publishes it when the relay closes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select

from tests.e2e.test_desk import CALL, sign_in, text_of, until, wait
from tests.integration.web_env import web_env

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]


def open_call(driver: WebDriver, url: str, code: str) -> None:
    sign_in(driver, url, "anna", code)
    wait(driver, ec.visibility_of_element_located((By.CSS_SELECTOR, CALL)))


async def test_desk_shows_tones_masked_and_leaked_from_the_evidence_event(
        tmp_path: Path, browser: WebDriver) -> None:
    async with web_env(tmp_path) as env:
        url = str(env.client.make_url("/"))
        await asyncio.to_thread(open_call, browser, url, env.code("anna"))
        await until(lambda: env.bus.subscribers >= 1)
        assert text_of(browser, f"{CALL} .evidence") == ""
        env.bus.publish("C-100", "capture", {"capture_id": "CP-1", "stage": "finished",
                                             "result": "captured"})
        env.bus.publish("C-100", "capture", {"capture_id": "CP-1", "stage": "evidence",
                                             "tones_masked": 14, "frames_masked": 96,
                                             "leaked": 0, "frames_relayed": 2400})
        await asyncio.to_thread(
            wait, browser, lambda d: text_of(d, f"{CALL} .evidence") == "tones masked: 14, leaked: 0")
        classes = browser.find_element(By.CSS_SELECTOR, f"{CALL} .evidence").get_attribute("class")
        assert "ok" in (classes or "").split()
        Select(browser.find_element(By.ID, "lang")).select_by_value("de")
        await asyncio.to_thread(
            wait, browser,
            lambda d: text_of(d, f"{CALL} .evidence") == "Töne maskiert: 14, durchgedrungen: 0")
