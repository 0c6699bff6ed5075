"""Confirm without typing, and "this is not me", on real sandbox calls (headless Chromium).

``callsec run`` (policy ``default`` with methods ``sms,link,sms_reply``; ``[web] public_url``
on loopback) takes carrier B's calls to 2000 (verify, then connect to agent100). The caller
waits at the code prompt without typing; the "phone" reads the SMS from the outbox:

* Confirm: Chromium opens the one-time link and taps "Confirm": agent100 rings, the desk shows
  the call verified and connected; the link cannot be used again.
* This is not me: a second caller; Chromium taps "This is not me": the call is stopped
  (``denied``, agent100 never rings) and agent anna's desk shows the fraud warning.
* SMS reply: a signed "YES" through the HTTP gateway's inbound webhook connects a waiting
  caller (a stale or wrongly keyed signature: 403); unsigned inbound webhooks get 403; a signed
  "NO" reply (Twilio's webhook) stops the call as ``denied`` with the fraud warning on the desk.

Run under ``flock /tmp/callsec-sandbox.lock`` (the sandbox and port 8080 are shared).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aiohttp
import pyotp
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from callsec_ari.core.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from callsec_ari.verification.confirm_links import twilio_signature
from tests.e2e.test_desk import ARTIFACTS, no_csp_violations, sign_in, text_of, wait
from tests.e2e.test_desk_sandbox import callsec_bridges
from tests.harness.agent import AgentPhones
from tests.harness.callsec_proc import CallsecProcess
from tests.harness.carrier import Carrier, CarrierCall
from tests.harness.sandbox import Sandbox
from tests.integration.capture_env import (
    AGENT,
    AGENT_PASSWORD,
    AGENT_USER,
    Desk,
    add_agent,
    fresh_caller,
    wait_no_other_callsec,
    workdir,
)

pytestmark = [pytest.mark.e2e, pytest.mark.sandbox]

CALL = "li.call"
AUTH_TOKEN = "twilio-test-auth-token"
HMAC_KEY = "inbound-test-hmac-key"
LINK = re.compile(r"https?://\S+/confirm/[A-Za-z0-9_-]+")


@dataclass
class Running:
    proc: CallsecProcess
    totp_secret: str
    url: str


@pytest.fixture
async def product(sandbox: Sandbox) -> AsyncIterator[Running]:
    root = workdir("e2e-confirm")
    shutil.rmtree(root, ignore_errors=True)
    port = CallsecProcess(root).env()["CALLSEC_WEB__PORT"]
    url = f"http://127.0.0.1:{port}"
    proc = CallsecProcess(root, env_overrides={
        "CALLSEC_AGI__ENABLED": "no",
        "CALLSEC_POLICY_DEFAULT__METHODS": "sms,email,link,sms_reply",
        "CALLSEC_WEB__PUBLIC_URL": url,
        "CALLSEC_SMS__AUTH_TOKEN": AUTH_TOKEN,
        "CALLSEC_SMS__HMAC_KEY": HMAC_KEY,
        "CALLSEC_VERIFICATION__FIRST_DIGIT_TIMEOUT_SECONDS": "30",
        "CALLSEC_VERIFICATION__INTER_DIGIT_TIMEOUT_SECONDS": "30",
    })
    await wait_no_other_callsec()
    await proc.start()
    try:
        yield Running(proc, add_agent(proc), url + "/")
    finally:
        left = await callsec_bridges(sandbox)
        proc.stop()
    assert left == [], f"callsec left bridges on A: {left}"


async def waiting_caller(product: Running, carrier: Carrier, mobile: str,
                         count: int) -> tuple[CarrierCall, str]:
    """Carrier B calls 2000 and waits at the code prompt; the link in the SMS."""
    product.proc.add_customer(name="Erika Mustermann", mobile=mobile)
    call = await carrier.call("2000", caller_id=mobile)
    await call.wait_up(timeout=15)
    message = await product.proc.wait_message(count)
    found = LINK.search(message["body"])
    assert found, "the SMS carries no link"
    assert "Reply YES" in message["body"]
    return call, found.group(0)


def tap(driver: WebDriver, link: str, button: str, screenshot: str) -> str:
    """Open the link in a new tab, check the page, tap ``button``; the answer shown."""
    desk = driver.current_window_handle
    driver.switch_to.new_window("tab")
    try:
        driver.get(link)
        wait(driver, lambda d: d.find_elements(By.ID, button))
        page = driver.page_source
        assert text_of(driver, "#company")
        assert re.fullmatch(r"\d\d:\d\d", text_of(driver, "#time"))
        assert re.fullmatch(r"[A-Z]{8}", text_of(driver, "#ref"))
        assert "Mustermann" not in page and "<script" not in page
        assert driver.save_screenshot(str(ARTIFACTS / screenshot))
        driver.find_element(By.ID, button).click()
        wait(driver, lambda d: d.find_elements(By.ID, "answer"))
        answer = text_of(driver, "#answer")
        assert no_csp_violations(driver)
        driver.get(link)  # single use: the page no longer offers the buttons
        wait(driver, lambda d: d.find_elements(By.ID, "answer"))
        assert not driver.find_elements(By.ID, button)
        return answer
    finally:
        driver.close()
        driver.switch_to.window(desk)


def fraud_warning_shown(driver: WebDriver) -> Callable[[WebDriver], bool]:
    return lambda d: "Fraud warning" in text_of(d, f"{CALL} .fraud")


async def log_says(product: Running, text: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if product.proc.log_file.exists() and text in product.proc.log_file.read_text():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"the log never said {text!r}")


async def test_a_waiting_caller_is_connected_after_confirm_and_stopped_after_not_me(
        product: Running, carrier: Carrier, agents: AgentPhones, browser: WebDriver) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    code = pyotp.TOTP(product.totp_secret).now()
    await asyncio.to_thread(sign_in, browser, product.url, AGENT_USER, code)

    call, link = await waiting_caller(product, carrier, fresh_caller(), 1)
    known = agents.seen(AGENT)
    answer = await asyncio.to_thread(tap, browser, link, "confirm", "confirm-page.png")
    assert "confirmed" in answer
    await agents.wait_ringing(AGENT, timeout=20, known=known)
    await asyncio.to_thread(wait, browser, lambda d: text_of(d, f"{CALL} .badge") == "verified",
                            30)
    await log_says(product, "customer")
    await call.hangup()

    call, link = await waiting_caller(product, carrier, fresh_caller(), 2)
    rang = len(agents.calls)
    answer = await asyncio.to_thread(tap, browser, link, "deny", "deny-page.png")
    assert "warned our staff" in answer
    await asyncio.to_thread(wait, browser, fraud_warning_shown(browser), 30)
    assert "denied" in text_of(browser, f"{CALL} .badge")
    assert browser.save_screenshot(str(ARTIFACTS / "desk-fraud-warning.png"))
    await log_says(product, "call finished: denied")
    assert len(agents.calls) == rang  # agent100 never rang for the denied caller
    assert no_csp_violations(browser)
    await call.hangup()


async def gateway_reply(base: str, sender: str, text: str, *, key: str = HMAC_KEY,
                        age: int = 0) -> tuple[int, dict[str, object]]:
    """The signed HTTP gateway's inbound SMS, signed as callsec signs its outbound ones."""
    raw = json.dumps({"from": sender, "body": text}).encode()
    stamp = str(int(time.time()) - age)
    headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: stamp,
               SIGNATURE_HEADER: sign(key.encode(), stamp, raw)}
    async with aiohttp.ClientSession() as session, session.post(
            f"{base}/inbound/sms/http", data=raw, headers=headers) as resp:
        return resp.status, dict(await resp.json())


async def test_a_signed_yes_reply_connects_a_waiting_caller(
        product: Running, carrier: Carrier, agents: AgentPhones) -> None:
    mobile, base = fresh_caller(), product.url.rstrip("/")
    call, _ = await waiting_caller(product, carrier, mobile, 1)
    assert (await gateway_reply(base, mobile, "maybe"))[1] == {"result": "ignored"}
    assert (await gateway_reply(base, mobile, "YES", age=900))[0] == 403  # stale
    assert (await gateway_reply(base, mobile, "YES", key="wrong"))[0] == 403
    known = agents.seen(AGENT)
    assert await gateway_reply(base, mobile, "yes") == (200, {"result": "confirmed"})
    await agents.wait_ringing(AGENT, timeout=20, known=known)
    await log_says(product, "confirmed the call by sms_reply")
    assert (await gateway_reply(base, mobile, "NO"))[1] == {"result": "unknown"}  # used
    await call.hangup()


async def test_a_signed_no_reply_stops_the_call_and_unsigned_replies_are_refused(
        product: Running, carrier: Carrier, agents: AgentPhones, browser: WebDriver) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    code = pyotp.TOTP(product.totp_secret).now()
    await asyncio.to_thread(sign_in, browser, product.url, AGENT_USER, code)
    mobile = fresh_caller()
    call, _ = await waiting_caller(product, carrier, mobile, 1)
    base = product.url.rstrip("/")
    form = {"From": mobile, "To": "+15005550006", "Body": "NO", "MessageSid": "SM0123"}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base}/inbound/sms/twilio", data=form) as resp:
            assert resp.status == 403  # unsigned
        async with session.post(f"{base}/inbound/sms/twilio", data=form,
                                headers={"X-Twilio-Signature": "AAAA"}) as resp:
            assert resp.status == 403  # wrongly signed
        body = json.dumps({"from": mobile, "body": "NO"})
        async with session.post(f"{base}/inbound/sms/http", data=body,
                                headers={"Content-Type": "application/json"}) as resp:
            assert resp.status == 403  # unsigned
        await asyncio.sleep(0.5)  # nothing above may reach the waiting call
        assert "fraud warning" not in product.proc.log_file.read_text()
        rang = len(agents.calls)
        signature = twilio_signature(AUTH_TOKEN, f"{base}/inbound/sms/twilio",
                                     list(form.items()))
        async with session.post(f"{base}/inbound/sms/twilio", data=form,
                                headers={"X-Twilio-Signature": signature}) as resp:
            assert resp.status == 200, await resp.text()
            assert "<Response>" in await resp.text()
    await asyncio.to_thread(wait, browser, fraud_warning_shown(browser), 30)
    await log_says(product, "call finished: denied")
    assert len(agents.calls) == rang
    audit = product.proc.cli("audit", "tail", "--limit", "50")
    assert audit.returncode == 0, audit.stderr
    assert "inbound.refused" in audit.stdout and "verification.denied" in audit.stdout
    await call.hangup()


def approve_on_page(driver: WebDriver, link: str, timeout: float = 15.0) -> tuple[str, str, str]:
    """Open the approval link (reloading until the caller is at the code prompt and the page
    offers "Confirm"), tap it; (amount, payee, answer) as the page showed them."""
    desk = driver.current_window_handle
    driver.switch_to.new_window("tab")
    try:
        deadline = time.monotonic() + timeout
        while True:
            driver.get(link)
            if driver.find_elements(By.ID, "confirm") or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        amount, payee = text_of(driver, "#amount"), text_of(driver, "#payee")
        assert driver.save_screenshot(str(ARTIFACTS / "approval-page.png"))
        driver.find_element(By.ID, "confirm").click()
        wait(driver, lambda d: d.find_elements(By.ID, "answer"))
        assert no_csp_violations(driver)
        return amount, payee, text_of(driver, "#answer")
    finally:
        driver.close()
        driver.switch_to.window(desk)


async def test_a_payment_is_approved_on_the_link_page_without_typing(
        product: Running, carrier: Carrier, agents: AgentPhones, browser: WebDriver) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    call, link = await waiting_caller(product, carrier, fresh_caller(), 1)
    known = agents.seen(AGENT)
    assert "confirmed" in await asyncio.to_thread(tap, browser, link, "confirm",
                                                  "confirm-page-2.png")
    await agents.wait_ringing(AGENT, timeout=20, known=known)
    async with aiohttp.ClientSession() as session:
        desk = Desk(product.url.rstrip("/"), session)
        await desk.login(AGENT_USER, AGENT_PASSWORD, product.totp_secret)
        status, listed = await desk.call("GET", "/api/v1/calls")
        assert status == 200, listed
        call_id = str(listed["calls"][0]["call_id"])
        await desk.wait_state(call_id, "connected")
        status, data = await desk.call("POST", f"/api/v1/calls/{call_id}/approvals",
                                       {"amount": "49.90", "currency": "EUR",
                                        "payee": "ACME Energy"})
        assert status == 201, data
        message = await product.proc.wait_message(2)
        found = LINK.search(message["body"])
        assert found and "ACME Energy" in message["body"]
        amount, payee, answer = await asyncio.to_thread(approve_on_page, browser,
                                                        found.group(0))
        assert (amount, payee) == ("49.90 EUR", "ACME Energy") and "confirmed" in answer
        async with asyncio.timeout(20):
            while True:
                status, approval = await desk.call("GET",
                                                   f"/api/v1/approvals/{data['approval_id']}")
                assert status == 200, approval
                if approval["status"] != "pending":
                    break
                await asyncio.sleep(0.3)
        assert approval["status"] == "approved", approval
    await call.hangup()
