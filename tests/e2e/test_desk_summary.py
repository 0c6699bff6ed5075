"""The desk's masked summary card (issue #18) in headless Chromium: every field of the capture
(brand, last 4, valid / invalid with the reason), how it was stored, the field being asked with
"Ask again" / "Cancel field" buttons that reach the API, the card kept after the capture until
"Dismiss"; and the verified customer's name and method for the agent handling the call. The
capture events are published on the real event bus, as the capture flow publishes them."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec

from callsec_ari.capture.protocol import CaptureInfo
from callsec_ari.web.customer import NameCache
from tests.e2e.test_desk import ARTIFACTS, CALL, sign_in, text_of, until, wait
from tests.integration.web_env import web_env

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio]
CARD = 'li.call[data-call-id="C-300"]'


def open_call(driver: WebDriver, url: str, code: str) -> None:
    sign_in(driver, url, "anna", code)
    wait(driver, ec.visibility_of_element_located((By.CSS_SELECTOR, CARD)))


def field_lines(driver: WebDriver) -> list[str]:
    return [str(e.text) for e in driver.find_elements(
        By.CSS_SELECTOR, f"{CARD} .summary-fields li .summary-field")]


def click(driver: WebDriver, css: str) -> None:
    driver.find_element(By.CSS_SELECTOR, css).click()


async def test_summary_card_keeps_every_field_until_dismissed_and_names_the_customer(
        tmp_path: Path, browser: WebDriver) -> None:
    async with web_env(tmp_path) as env:
        env.deps.customer_names = NameCache(lambda ref: "Erika Mustermann")
        call = env.start_call("C-300", "agent100", customer_ref="CU-1")
        call.flow.method = "sms"  # type: ignore[attr-defined]
        url = str(env.client.make_url("/"))
        await asyncio.to_thread(open_call, browser, url, env.code("anna"))
        assert text_of(browser, f"{CARD} .customer") == "Erika Mustermann · SMS code"
        assert "Erika" not in text_of(browser, f"{CALL} .call-head")  # no customer on C-100
        await until(lambda: env.bus.subscribers >= 2)

        def publish(payload: dict[str, Any]) -> None:
            env.bus.publish("C-300", "capture", {"capture_id": "CAP-9", **payload})
        publish({"stage": "requested", "fields": "card_number,expiry,cvv"})
        publish({"stage": "field_started", "field": "card_number", "count": 0, "dots": ""})
        publish({"stage": "field_done", "field": "card_number", "valid": True, "count": 16,
                 "brand": "visa", "last_digits": "1111"})
        publish({"stage": "field_started", "field": "expiry", "count": 0, "dots": ""})
        publish({"stage": "field_invalid", "field": "expiry", "valid": False,
                 "reason_id": "expired", "count": 4})
        await asyncio.to_thread(wait, browser, lambda d: "Expiry: (invalid) expired" in
                                " ".join(field_lines(d)))
        assert text_of(browser, f"{CARD} .field-name") == "Expiry"  # the field being asked
        # the agent asks for the expiry again from the card: the API gets the request
        env.captures.infos["CAP-9"] = CaptureInfo("CAP-9", "C-300", "agent100", "in_progress")
        await asyncio.to_thread(click, browser, f'{CARD} li[data-field="expiry"] button.rerequest')
        await until(lambda: env.captures.controls == [("CAP-9", "expiry", "rerequest")])
        publish({"stage": "field_requested", "field": "expiry", "count": 0, "dots": ""})
        publish({"stage": "field_started", "field": "expiry", "count": 0, "dots": ""})
        publish({"stage": "field_done", "field": "expiry", "valid": True, "count": 4})
        publish({"stage": "field_started", "field": "cvv", "count": 0, "dots": ""})
        publish({"stage": "field_done", "field": "cvv", "valid": True, "count": 3})
        publish({"stage": "finished", "result": "captured", "stored_as": "vault",
                 "brand": "visa", "last4": "1111", "fields_valid": "card_number,expiry,cvv"})
        expected = ["Card number: VISA •••• 1111 (valid)", "Expiry: (valid)",
                    "Security code: (valid)"]
        await asyncio.to_thread(wait, browser, lambda d: field_lines(d) == expected)
        assert text_of(browser, f"{CARD} .summary-head") == "Captured · in the vault"
        await asyncio.sleep(2.5)  # a poll of the call list later: still there
        assert field_lines(browser) == expected
        # after the end only "Ask again" (it re-opens the stored capture for the field)
        buttons = browser.find_elements(By.CSS_SELECTOR, f"{CARD} .summary-fields button")
        assert {str(b.get_attribute("class")) for b in buttons} == {"rerequest"}
        assert len(buttons) == 3
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(ARTIFACTS / "desk-summary.png"))
        await asyncio.to_thread(click, browser, f"{CARD} button.dismiss")
        await asyncio.to_thread(wait, browser, lambda d: field_lines(d) == [])
        assert text_of(browser, f"{CARD} .result") == ""
