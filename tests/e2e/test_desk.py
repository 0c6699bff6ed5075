"""The agent desk in headless Chromium (Selenium): sign in with a TOTP code, see an active
call with its verification badge, ask for a card capture, watch masked progress arrive over
SSE as dots, see brand and last 4; the supervisor sees team calls and the audit tail.

The call is a fake active call in a real dispatcher and the progress events are published on
the real event bus (the real sandbox call is in test_desk_sandbox.py). A screenshot
is saved to ``var/e2e/desk.png``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.integration.web_env import PASSWORD, WebEnv, web_env

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]

ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "e2e"
CALL = 'li.call[data-call-id="C-100"]'


def wait(driver: WebDriver, condition: Callable[[Any], Any], timeout: float = 15) -> Any:
    return WebDriverWait(driver, timeout).until(condition)


def text_of(driver: WebDriver, css: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def sign_in(driver: WebDriver, url: str, name: str, code: str) -> None:
    driver.get(url)
    wait(driver, ec.visibility_of_element_located((By.ID, "login-form")))
    driver.find_element(By.ID, "username").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "otp").send_keys(code)
    driver.find_element(By.ID, "login-button").click()
    wait(driver, ec.visibility_of_element_located((By.ID, "desk-view")))


async def until(predicate: Callable[[], bool], timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


def agent_part_one(driver: WebDriver, url: str, code: str) -> None:
    sign_in(driver, url, "anna", code)
    wait(driver, ec.visibility_of_element_located((By.CSS_SELECTOR, CALL)))
    assert text_of(driver, f"{CALL} .caller") == "+49…78"
    assert text_of(driver, f"{CALL} .badge") == "verified"
    assert "C-102" not in driver.page_source  # carla's call is not anna's business
    driver.find_element(By.CSS_SELECTOR, f'{CALL} button[data-kind="card"]').click()
    wait(driver, lambda d: "not available" in text_of(d, f"{CALL} .call-error"))


async def test_agent_signs_in_sees_the_call_and_watches_masked_progress(
        tmp_path: Path, browser: WebDriver) -> None:
    async with web_env(tmp_path, with_captures=False) as env:
        url = str(env.client.make_url("/"))
        await asyncio.to_thread(agent_part_one, browser, url, env.code("anna"))
        await until(lambda: env.bus.subscribers >= 1)  # the desk's SSE stream is open
        for count in range(1, 17):
            env.bus.publish("C-100", "capture", {"field": "card_number", "count": count,
                                                 "dots": "•" * count,
                                                 "brand": "visa" if count >= 4 else None})
        await asyncio.to_thread(wait, browser, lambda d: text_of(d, f"{CALL} .dots") == "•" * 16)
        assert text_of(browser, f"{CALL} .brand") == "VISA"
        env.bus.publish("C-100", "capture", {"field": "card_number", "valid": True,
                                             "brand": "visa", "last_digits": "1111",
                                             "length": 16})
        await asyncio.to_thread(wait, browser,
                                lambda d: "VISA •••• 1111" in text_of(d, f"{CALL} .result"))
        assert "4111" not in browser.page_source
        assert no_csp_violations(browser)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(ARTIFACTS / "desk.png"))
        await asyncio.to_thread(switch_to_german, browser)


def no_csp_violations(driver: WebDriver) -> bool:
    logs: list[dict[str, Any]] = driver.get_log("browser")  # type: ignore[attr-defined]
    return not [e for e in logs if "Content Security Policy" in str(e.get("message"))]


def switch_to_german(driver: WebDriver) -> None:
    Select(driver.find_element(By.ID, "lang")).select_by_value("de")
    wait(driver, lambda d: text_of(d, f'{CALL} button[data-kind="card"]') == "Karte")
    assert text_of(driver, f"{CALL} .badge") == "verifiziert"
    assert driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "de"


async def test_supervisor_sees_team_calls_and_the_audit_tail(tmp_path: Path,
                                                             browser: WebDriver) -> None:
    async with web_env(tmp_path, with_captures=False) as env:
        url = str(env.client.make_url("/"))
        await asyncio.to_thread(supervisor_view, browser, url, env)


def supervisor_view(driver: WebDriver, url: str, env: WebEnv) -> None:
    sign_in(driver, url, "sven", env.code("sven"))
    wait(driver, ec.visibility_of_element_located((By.CSS_SELECTOR, CALL)))
    assert text_of(driver, "#calls-title") == "Team calls"
    assert "anna" in text_of(driver, f"{CALL} .agent")
    wait(driver, ec.visibility_of_element_located((By.ID, "audit-view")))
    wait(driver, lambda d: "login.ok" in text_of(d, "#audit-rows"))
    driver.find_element(By.ID, "logout").click()
    wait(driver, ec.visibility_of_element_located((By.ID, "login-form")))
