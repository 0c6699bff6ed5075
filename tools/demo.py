#!/usr/bin/env python3
"""`make demo`: one real, narrated call through callsec on the sandbox Asterisk.

A fresh database and keyring under var/demo, a demo customer and a demo agent; `callsec run`
starts; the carrier (Asterisk B) places a real SIP call to A's number 2000
(`Stasis(callsec,connect,PJSIP/agent100)`); the caller's "phone" reads the code from the SMS
outbox and types it (RFC 4733); the agent's phone on B rings only then; the agent signs in to
the HTTP API (password + TOTP), asks for a card capture, and watches masked progress over SSE
while the caller types a test card; the agent sees brand and last 4. The transcript says what
the caller did and what the agent saw; it contains no digit the caller typed, which the script
checks before it exits 0. Everything it started is stopped.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
import pyotp  # noqa: E402

from tests.harness.agent import AgentPhones  # noqa: E402
from tests.harness.callsec_proc import CallsecProcess, code_from  # noqa: E402
from tests.harness.carrier import Carrier  # noqa: E402
from tests.harness.sandbox import ensure_sandbox  # noqa: E402

CALLER = "+4915112345678"
CARD, EXPIRY, CVV = "4111111111111111", "1230", "123"
PASSWORD = "demo-agent-password-2026"
WEB = "http://127.0.0.1:8080"


class Transcript:
    def __init__(self) -> None:
        self.lines: list[str] = []
        #: what the caller typed; none of it may appear in the transcript
        self.typed: dict[str, str] = {"card number": CARD, "CVV": CVV, "expiry": EXPIRY}

    def say(self, who: str, text: str) -> None:
        line = f"[{who:>7}] {text}"
        self.lines.append(line)
        print(line, flush=True)

    def text(self) -> str:
        return "\n".join(self.lines)


def create_agent(proc: CallsecProcess) -> pyotp.TOTP:
    result = proc.cli("users", "add", "demo-agent", "--role", "agent", "--endpoint", "agent100",
                      "--password-stdin", stdin=PASSWORD + "\n")
    if result.returncode != 0:
        raise SystemExit(f"demo: users add failed: {result.stderr.strip()}")
    uri = next(line for line in result.stdout.splitlines() if line.startswith("otpauth://"))
    return pyotp.parse_uri(uri)  # type: ignore[no-any-return]


async def login(session: aiohttp.ClientSession, totp: pyotp.TOTP) -> str:
    async with session.post(f"{WEB}/api/v1/login", json={
            "username": "demo-agent", "password": PASSWORD, "otp": totp.now()}) as resp:
        body = await resp.json()
        if resp.status != 200:
            raise SystemExit(f"demo: login failed: {body}")
        return str(body["token"])


async def follow_sse(t: Transcript, session: aiohttp.ClientSession, call_id: str,
                     out: list[dict[str, Any]], done: asyncio.Event) -> None:
    """What the agent's desk shows, live, as the caller types."""
    async with session.get(f"{WEB}/api/v1/calls/{call_id}/events") as resp:
        async for raw in resp.content:
            line = raw.decode().strip()
            if line.startswith("data:"):
                event = json.loads(line[5:])
                out.append(event)
                shown = describe(event)
                if shown:
                    t.say("desk", shown)
                if event.get("topic") == "capture" and event.get("stage") == "finished":
                    done.set()
                    return


def describe(event: dict[str, Any]) -> str | None:
    stage = event.get("stage")
    if stage == "digit":
        brand = f" ({event['brand']})" if event.get("brand") else ""
        return f"{event.get('field')}: {event.get('dots')}{brand}"
    if stage == "field_done":
        extra = f", {event['brand']} ending {event['last_digits']}" if event.get("last_digits") else ""
        return f"{event.get('field')}: valid{extra}"
    if stage == "field_invalid":
        return f"{event.get('field')}: invalid ({event.get('reason_id')}), attempt {event.get('attempt')}"
    if stage in ("started", "storing", "finished", "failed"):
        return f"capture {stage}" + (f": {event.get('result')}" if event.get("result") else "")
    return None


async def run(t: Transcript) -> None:
    ensure_sandbox()
    workdir = REPO / "var" / "demo"
    shutil.rmtree(workdir, ignore_errors=True)
    proc = CallsecProcess(workdir)
    proc.workdir.mkdir(parents=True)
    keys = proc.init_keys()  # keys are created only on purpose: `callsec keys init`
    if keys.returncode != 0:
        raise SystemExit(f"demo: keys init failed: {keys.stderr.strip()}")
    t.say("setup", f"callsec keys init: {keys.stdout.strip()}")
    ref = proc.add_customer(name="Erika Mustermann", mobile=CALLER)
    t.say("setup", f"customer {ref} created (mobile on file, encrypted)")
    totp = create_agent(proc)
    t.say("setup", "agent 'demo-agent' created (password + TOTP), rings on PJSIP/agent100")
    await proc.start()
    t.say("callsec", "callsec run is up and connected to Asterisk A")
    try:
        await call_through(t, proc, totp)
    finally:
        proc.stop()
        t.say("callsec", "stopped")


async def call_through(t: Transcript, proc: CallsecProcess, totp: pyotp.TOTP) -> None:
    async with Carrier() as carrier, AgentPhones() as agents:
        call = await carrier.call("2000", caller_id=CALLER)
        await call.wait_up()
        t.say("caller", "dials the contact center (real SIP call B -> A, number 2000)")
        message = await proc.wait_message(1)
        code = code_from(message)
        t.typed["one-time code"] = code
        masked_body = message["body"].replace(code, "•" * len(code))
        t.say("phone", f"SMS to the number on the account: \"{masked_body}\"")
        await asyncio.sleep(2.0)
        await call.send_dtmf(code + "#")
        t.say("caller", f"types the {len(code)}-digit code on the keypad")
        await agents.wait_ringing("agent100", timeout=30)
        t.say("agent", "phone rings only now: the caller is verified")
        headers: dict[str, str] = {}
        async with aiohttp.ClientSession() as session:
            headers["Authorization"] = "Bearer " + await login(session, totp)
        async with aiohttp.ClientSession(headers=headers) as session:
            await capture(t, session, call)
        await call.hangup()
        t.say("caller", "hangs up")


async def capture(t: Transcript, session: aiohttp.ClientSession, call: Any) -> None:
    async with session.get(f"{WEB}/api/v1/calls") as resp:
        calls = (await resp.json())["calls"]
    mine = calls[0]
    t.say("agent", f"desk shows call {mine['call_id']}: verification "
                   f"{mine.get('verification')}, caller {mine.get('caller')}")
    events: list[dict[str, Any]] = []
    done = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(follow_sse(t, session, mine["call_id"], events, done))
        await asyncio.sleep(0.5)
        async with session.post(f"{WEB}/api/v1/calls/{mine['call_id']}/captures",
                                json={"fields": ["card_number", "expiry", "cvv"]}) as resp:
            body = await resp.json()
            if resp.status not in (200, 201, 202):
                raise SystemExit(f"demo: capture request failed: {body}")
        capture_id = body["capture_id"]
        t.say("agent", f"clicks \"Card\": capture {capture_id}; the caller leaves the agent's "
                       "bridge, the agent hears a hold loop")
        await asyncio.sleep(3.0)
        for digits, what in ((CARD + "#", "card number"), (EXPIRY, "expiry"), (CVV, "CVV")):
            await call.send_dtmf(digits)
            t.say("caller", f"types the {what} ({len(digits.rstrip('#'))} digits)")
            await asyncio.sleep(2.5)
        async with asyncio.timeout(30):
            await done.wait()
    async with session.get(f"{WEB}/api/v1/captures/{capture_id}") as resp:
        result = await resp.json()
    t.say("agent", f"result: {json.dumps(result, sort_keys=True)}")


def main() -> int:
    t = Transcript()
    print("callsec-ari demo: a real call through verification and a masked card capture\n")
    asyncio.run(run(t))
    text = t.text()
    leaked = [what for what, value in t.typed.items()
              if re.search(rf"(?<![0-9A-Za-z]){value}(?![0-9A-Za-z])", text)]
    if leaked:
        print(f"demo: FAILED: the transcript shows the {', '.join(leaked)}", file=sys.stderr)
        return 1
    print("\ndemo: ok: the transcript holds no digit the caller typed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
