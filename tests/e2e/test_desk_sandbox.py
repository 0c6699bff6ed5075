"""The agent desk on a real sandbox call, end to end, in headless Chromium (Selenium).

Nothing is injected: ``callsec run`` is the product process (SQLite in ``var/test/e2e-desk``),
agent anna is a real user tied to endpoint ``agent100`` (``callsec users add``) and signs in
on the desk with her password and a TOTP code. Carrier B calls A's number 2000 from the
mobile number of a customer on file; the caller types the SMS code (the "phone" reads it from
the outbox), callsec rings agent100 and the harness's phone answers. The call appears in "my
active calls" with its verification badge; the agent clicks "Card"; the carrier types a Visa
test number, expiry and CVV with pauses while the test watches the progress: dots only,
never a digit in the page; then brand and last 4. Screenshots go to ``var/e2e/``.

Run under ``flock var/sandbox.lock`` (the sandbox and port 8080 are shared).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pyotp
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec

from tests.e2e.test_desk import ARTIFACTS, no_csp_violations, sign_in, text_of, wait
from tests.harness.agent import AgentPhones
from tests.harness.callsec_proc import CallsecProcess, code_from
from tests.harness.carrier import Carrier, CarrierCall
from tests.harness.sandbox import Sandbox
from tests.integration.capture_checks import find_leaks, sqlite_dump
from tests.integration.capture_env import (
    AGENT,
    AGENT_USER,
    add_agent,
    expiry,
    fresh_caller,
    rare_number,
    visa,
    wait_no_other_callsec,
    workdir,
)

pytestmark = [pytest.mark.e2e, pytest.mark.sandbox]

CALL = "li.call"
DOTS = "•"
#: Keys the carrier types with a pause between them, so the desk shows each count.
BETWEEN_MS, DURATION_MS = 250, 100
SETTINGS = {
    "CALLSEC_AGI__ENABLED": "no",  # FastAGI's port stays free
    "CALLSEC_CAPTURE__FIRST_DIGIT_TIMEOUT_SECONDS": "12",
    "CALLSEC_CAPTURE__INTER_DIGIT_TIMEOUT_SECONDS": "6",
}


@dataclass
class Running:
    proc: CallsecProcess
    totp_secret: str
    url: str


@dataclass
class Watched:
    """What the desk showed while the caller typed one field."""

    dots: list[str] = field(default_factory=list)
    brands: set[str] = field(default_factory=set)
    pages: int = 0


@pytest.fixture
async def product(sandbox: Sandbox) -> AsyncIterator[Running]:
    root = workdir("e2e-desk")
    shutil.rmtree(root, ignore_errors=True)
    proc = CallsecProcess(root, env_overrides=SETTINGS)
    await wait_no_other_callsec()
    await proc.start()
    try:
        secret = add_agent(proc)
        yield Running(proc, secret, f"http://127.0.0.1:{proc.env()['CALLSEC_WEB__PORT']}/")
    finally:
        # The carrier hung up (its fixture ends first): let callsec tear the call's bridge
        # down before SIGTERM, or the bridge outlives it (kept on purpose for a restart).
        left = await callsec_bridges(sandbox)
        proc.stop()
    assert left == [], f"callsec left bridges on A: {left}"


async def callsec_bridges(sandbox: Sandbox, timeout: float = 15.0) -> list[str]:
    """Wait until A holds no ``callsec-call-*`` bridge; those still there after ``timeout``."""
    headers = {"Authorization": sandbox.a.basic_auth}
    left: list[str] = []
    async with aiohttp.ClientSession(headers=headers) as session:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            async with session.get(f"{sandbox.a.base_url}/ari/bridges") as resp:
                left = [b["id"] for b in await resp.json()
                        if str(b["id"]).startswith("callsec-call-")]
            if not left:
                break
            await asyncio.sleep(0.2)
    return left


def digits_in(value: str) -> re.Pattern[str]:
    """``value`` as a whole number in page text (no digit right before or after it)."""
    return re.compile(rf"(?<!\d){re.escape(value)}(?!\d)")


def the_call_appears(driver: WebDriver, caller: str) -> str:
    """Wait until the call is listed, verified and connected; its call id."""
    wait(driver, ec.visibility_of_element_located((By.CSS_SELECTOR, CALL)), timeout=30)
    wait(driver, lambda d: text_of(d, f"{CALL} .badge") == "verified", timeout=30)
    wait(driver, lambda d: text_of(d, f"{CALL} .state") == "connected", timeout=30)
    assert text_of(driver, f"{CALL} .caller") == f"+49…{caller[-2:]}"
    assert caller[1:] not in driver.page_source  # the caller's number is shown masked only
    call_id = driver.find_element(By.CSS_SELECTOR, CALL).get_attribute("data-call-id")
    assert call_id
    return str(call_id)


def field_asked(driver: WebDriver, label: str) -> None:
    wait(driver, lambda d: text_of(d, f"{CALL} .field-name") == label, timeout=30)


def watch_entry(driver: WebDriver, secrets: list[re.Pattern[str]],
                done: Callable[[WebDriver], bool], screenshot: str | None = None,
                timeout: float = 40.0) -> Watched:
    """Poll the desk until ``done``: record every dots value shown, and fail as soon as a
    page holds one of ``secrets``; a screenshot once 8 dots show."""
    seen = Watched()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dots, brand = text_of(driver, f"{CALL} .dots"), text_of(driver, f"{CALL} .brand")
        page = driver.page_source
        seen.pages += 1
        assert not [p.pattern for p in secrets if p.search(page)], "a typed value is in the page"
        if not seen.dots or dots != seen.dots[-1]:
            seen.dots.append(dots)
        if brand:
            seen.brands.add(brand)
        if screenshot and len(dots) >= 8:
            assert driver.save_screenshot(str(ARTIFACTS / screenshot))
            screenshot = None
        if done(driver):
            return seen
        time.sleep(0.05)
    raise TimeoutError(f"the desk never got there; dots seen: {seen.dots}")


async def type_watched(driver: WebDriver, call: CarrierCall, keys: str,
                       secrets: list[re.Pattern[str]], done: Callable[[WebDriver], bool],
                       screenshot: str | None = None) -> Watched:
    """The carrier types ``keys`` while the desk is watched (until ``done`` shows)."""
    async with asyncio.TaskGroup() as tg:
        watcher = tg.create_task(asyncio.to_thread(watch_entry, driver, secrets, done,
                                                   screenshot))
        await call.send_dtmf(keys, between_ms=BETWEEN_MS, duration_ms=DURATION_MS)
    return watcher.result()


def assert_dots_only(seen: Watched, most: int) -> None:
    """Every value shown was dots, one more per key, up to ``most`` dots."""
    assert all(set(v) <= {DOTS} for v in seen.dots), seen.dots
    counts = [len(v) for v in seen.dots if v]
    # the last dot before the field completes can live shorter than one poll of the page
    assert counts == sorted(counts) and most - 1 <= max(counts) <= most, seen.dots
    assert len(set(counts)) >= most // 3, seen.dots  # the desk followed the typing


def result_shows(text: str) -> Callable[[WebDriver], bool]:
    return lambda driver: text in text_of(driver, f"{CALL} .result")


def capture_over(driver: WebDriver) -> bool:
    button = driver.find_element(By.CSS_SELECTOR, f'{CALL} button[data-kind="card"]')
    return bool(button.is_enabled()) and text_of(driver, f"{CALL} .dots") == ""


def summary_lines(driver: WebDriver) -> list[str]:
    return [str(e.text) for e in driver.find_elements(
        By.CSS_SELECTOR, f"{CALL} .summary-fields li .summary-field")]


def summary_kept_until_dismissed(driver: WebDriver, card: str) -> None:
    """The card keeps every field, how it was stored and the verified customer (name and
    method) after the capture, until the agent dismisses it (#18)."""
    expected = [f"Card number: VISA •••• {card[-4:]} (valid)", "Expiry: (valid)",
                "Security code: (valid)"]
    wait(driver, lambda d: summary_lines(d) == expected, timeout=15)
    wait(driver, lambda d: text_of(d, f"{CALL} .summary-head").startswith("Captured"))
    assert text_of(driver, f"{CALL} .customer") == "Erika Mustermann · SMS code"
    time.sleep(2.5)  # the call list polls every 2 s: the card stays
    assert summary_lines(driver) == expected
    driver.find_element(By.CSS_SELECTOR, f"{CALL} button.dismiss").click()
    wait(driver, lambda d: summary_lines(d) == [] and text_of(d, f"{CALL} .result") == "")


async def verified_call(product: Running, carrier: Carrier, agents: AgentPhones,
                        mobile: str, register_secret: Callable[[str], None]) -> CarrierCall:
    """Carrier B calls 2000; the caller types the SMS code; agent100's phone answers."""
    call = await carrier.call("2000", caller_id=mobile)
    await call.wait_up(timeout=15)
    code = code_from(await product.proc.wait_message(1))
    register_secret(code)
    await asyncio.sleep(1.0)  # "we have sent you a code..." starts; the first key stops it
    await call.send_dtmf(code + "#")
    await agents.wait_ringing(AGENT, timeout=20)
    return call


async def stored_capture(product: Running, driver: WebDriver, call_id: str) -> dict[str, Any]:
    """The capture as the API shows it, read with the desk's own session cookie."""
    session_cookie = driver.get_cookie("callsec_session")
    assert session_cookie is not None
    api = product.url.rstrip("/") + "/api/v1"
    headers = {"Cookie": f"callsec_session={session_cookie['value']}"}  # GET: no CSRF token
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.get(f"{api}/calls") as resp:
            assert resp.status == 200
            calls = {c["call_id"]: c for c in (await resp.json())["calls"]}
        capture_id = calls[call_id]["capture_id"]
        async with session.get(f"{api}/captures/{capture_id}") as resp:
            assert resp.status == 200
            return dict(await resp.json())


async def card_number_entry(browser: WebDriver, call: CarrierCall, card: str,
                            secrets: list[re.Pattern[str]]) -> None:
    """Dots and the brand while the caller types, then brand and last 4 (screenshots)."""
    await asyncio.to_thread(field_asked, browser, "Card number")
    await asyncio.sleep(0.4)  # the prompt starts; the first key interrupts it
    shown = f"VISA •••• {card[-4:]}"
    typed = await type_watched(browser, call, card + "#", secrets, result_shows(shown),
                               "desk-sandbox-progress.png")
    assert_dots_only(typed, 16)  # a card number may have 19 digits: "#" completes it
    assert typed.brands == {"VISA"}
    assert browser.save_screenshot(str(ARTIFACTS / "desk-sandbox-result.png"))


async def expiry_and_cvv_entry(browser: WebDriver, call: CarrierCall, exp: str, cvv: str,
                               secrets: list[re.Pattern[str]]) -> None:
    await asyncio.to_thread(field_asked, browser, "Expiry")
    await asyncio.sleep(0.4)
    await call.send_dtmf(exp, between_ms=BETWEEN_MS, duration_ms=DURATION_MS)
    await asyncio.to_thread(field_asked, browser, "Security code")
    await asyncio.sleep(0.4)
    typed = await type_watched(browser, call, cvv, secrets, capture_over)
    assert_dots_only(typed, 2)  # a CVV has 3 digits: the third key completes the field


async def test_agent_desk_shows_a_real_sandbox_card_capture_as_dots_then_brand_and_last4(
        product: Running, carrier: Carrier, agents: AgentPhones, browser: WebDriver,
        register_secret: Callable[[str], None]) -> None:
    card, exp, cvv, mobile = visa(), expiry(), rare_number(3), fresh_caller()
    product.proc.add_customer(name="Erika Mustermann", mobile=mobile)
    login_code = pyotp.TOTP(product.totp_secret).now()
    for value in (card, cvv, login_code):
        register_secret(value)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(sign_in, browser, product.url, AGENT_USER, login_code)
    call = await verified_call(product, carrier, agents, mobile, register_secret)
    call_id = await asyncio.to_thread(the_call_appears, browser, mobile)
    page = browser.page_source
    assert not digits_in(card).search(page) and not digits_in(cvv).search(page)  # the control
    secrets = [digits_in(v) for v in (card, card[:6], card[6:12], cvv, exp)
               if not digits_in(v).search(page)]

    browser.find_element(By.CSS_SELECTOR, f'{CALL} button[data-kind="card"]').click()
    await card_number_entry(browser, call, card, secrets)
    await expiry_and_cvv_entry(browser, call, exp, cvv, secrets)
    assert not [p.pattern for p in secrets if p.search(browser.page_source)]
    assert no_csp_violations(browser)
    assert browser.save_screenshot(str(ARTIFACTS / "desk-sandbox-done.png"))
    await asyncio.to_thread(summary_kept_until_dismissed, browser, card)

    stored = await stored_capture(product, browser, call_id)
    assert stored["state"] == "captured", stored
    assert stored["fields"]["card_number"]["brand"] == "visa"
    assert stored["fields"]["card_number"]["last4"] == card[-4:]
    assert agents.latest(AGENT).dtmf == []  # the agent's phone got no key at all
    await call.hangup()
    await asyncio.to_thread(wait, browser, ec.visibility_of_element_located((By.ID, "no-calls")))
    log = product.proc.log_file.read_bytes() + (product.proc.workdir / "stderr.log").read_bytes()
    assert find_leaks([card, cvv], {"callsec log": log, "database":
                                    sqlite_dump(product.proc.workdir / "callsec.db")}) == []
