"""US bank fields and per-language prompts on real calls (#18.2, #18.6), with the real
``callsec run`` and its own config file (``[capture] postal_code_format = us``, ``[prompts]
sounds_dir`` = the sandbox Asterisk's sounds dir, ``[prompts:de] welcome = <override>``).

- A US caller, connected to agent100 (2100), is asked by the agent over the API for ZIP+4,
  routing and account numbers: a routing number with a wrong ABA check digit is refused
  (``checksum``, the ``entry-check-failed`` prompt) and asked again; the capture ends with three
  vaulted values, the desk sees only the masks, and no full value is in any log, the SSE stream
  or the database.
- What Asterisk plays is read from its own log (``Playing '<file>.<format>' (language 'xx')``):
  a language ``xx`` dropped into ``sounds/xx/callsec/`` (one prompt, as GSM: a format no other
  prompt has) is played from there; a prompt it lacks plays as ``en/callsec/...`` with a warning
  naming it in callsec's log; the configured German override of ``welcome`` is what plays for
  ``lang=de``.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from stdnum.us import rtn

from tests.harness.agent import AgentPhones
from tests.harness.callsec_proc import REPO, CallsecProcess
from tests.harness.carrier import Carrier
from tests.harness.sandbox import ASTERISK_ROOT, A, Sandbox
from tests.integration.capture_checks import LogTail, asterisk_logs, find_leaks, sqlite_dump
from tests.integration.capture_env import (
    AGENT_PASSWORD,
    AGENT_USER,
    CAPTURE_ENV,
    Desk,
    Product,
    add_agent,
    clean_workdir,
    connected_call,
    type_fields,
    wait_no_other_callsec,
    workdir,
)

pytestmark = pytest.mark.sandbox
WORKDIR = workdir("us_bank_prompts")
SOUNDS_IN_ROOT = "/usr/share/asterisk/sounds"
SOUNDS = ASTERISK_ROOT / SOUNDS_IN_ROOT.lstrip("/")
TEST_DIR = "callsec-test-p2"
OVERRIDE = f"{TEST_DIR}/willkommen"
CONFIG_TAIL = f"""
[prompts]
sounds_dir = {SOUNDS}

[prompts:de]
welcome = {OVERRIDE}

[policy:ask]
require_code = always
"""


@dataclass
class ConfiguredProcess(CallsecProcess):
    """``callsec run`` with a copy of the repo's config plus :data:`CONFIG_TAIL`."""

    @property
    def config(self) -> Path:
        return self.workdir / "callsec.conf"


def in_root(path: str) -> Path:
    """``path`` inside the Asterisk root, its symlinks (sounds/en) resolved inside the root."""
    host = ASTERISK_ROOT / path.lstrip("/")
    for _ in range(8):
        if not host.is_symlink():
            break
        target = host.readlink()
        host = ASTERISK_ROOT / str(target).lstrip("/") if target.is_absolute() \
            else host.parent / target
    return host


def install_missing_prompts() -> None:
    """The sandbox got the prompts of its set-up time; add the ones committed since (only
    missing files, as tools/make_sounds.sh --install would)."""
    for lang in ("en", "de"):
        target = in_root(f"{SOUNDS_IN_ROOT}/{lang}") / "callsec"
        for wav in (REPO / "sounds" / lang / "callsec").glob("*.wav"):
            if not (target / wav.name).exists():
                shutil.copyfile(wav, target / wav.name)
                (target / wav.name).chmod(0o644)


def gsm(source: Path, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["sox", "-D", str(source), "-r", "8000", "-c", "1", str(out)], check=True)
    out.chmod(0o644)
    out.parent.chmod(0o755)


@pytest.fixture(scope="module")
async def product(sandbox: Sandbox) -> AsyncIterator[Product]:
    install_missing_prompts()
    clean_workdir(WORKDIR)
    WORKDIR.mkdir(parents=True, exist_ok=True)
    base = (REPO / "config" / "callsec.conf").read_text(encoding="utf-8")
    (WORKDIR / "callsec.conf").write_text(base + CONFIG_TAIL, encoding="utf-8")
    env = {**CAPTURE_ENV, "CALLSEC_CAPTURE__POSTAL_CODE_FORMAT": "us",
           "CALLSEC_CAPTURE__MAX_ATTEMPTS": "3"}
    proc = ConfiguredProcess(WORKDIR, env_overrides=env)
    await wait_no_other_callsec()
    await proc.start()
    try:
        secret = add_agent(proc)
        async with aiohttp.ClientSession() as session:
            desk = Desk(f"http://127.0.0.1:{proc.env()['CALLSEC_WEB__PORT']}", session)
            await desk.login(AGENT_USER, AGENT_PASSWORD, secret)
            yield Product(proc, desk, WORKDIR)
    finally:
        proc.stop()


def routing_number(prefix: str = "02") -> str:
    body = prefix + str(uuid.uuid4().int)[:6]
    return body + rtn.calc_check_digit(body)


def played(tail: LogTail) -> str:
    return "\n".join(line for line in tail.read().decode(errors="replace").splitlines()
                     if "Playing '" in line)


async def test_us_caller_gives_zip_routing_and_account_numbers_and_a_bad_aba_is_asked_again(
        product: Product, carrier: Carrier, agents: AgentPhones, ari_a: aiohttp.ClientSession,
        register_secret: Callable[[str], None]) -> None:
    zip4, routing = "941031234", routing_number()
    wrong = routing[:-1] + str((int(routing[-1]) + 3) % 10)
    account = "7" + str(uuid.uuid4().int)[:11]
    for value in (zip4, routing, wrong, account):
        register_secret(value)
    tails = [LogTail(p) for p in asterisk_logs()]
    full = LogTail(A.full_log)
    async with connected_call(product.desk, carrier, agents, ari_a, product.sse_dir) as live:
        capture_id = await product.desk.request_capture(
            live.call_id, ["postal_code", "routing_number", "account_number"])
        await type_fields(live, capture_id, [("postal_code", zip4 + "#"),
                                             ("routing_number", wrong)])
        refused = await live.sse.wait_stage(capture_id, "field_invalid", field="routing_number")
        await asyncio.sleep(2.5)  # "that number does not check out", then the field again
        await live.carrier.send_dtmf(routing, between_ms=120, duration_ms=120)
        await type_fields(live, capture_id, [("account_number", account + "#")])
        finished = await live.sse.wait_stage(capture_id, "finished")
    assert refused["reason_id"] == "checksum"
    assert finished["result"] == "captured"
    stored = await product.desk.wait_capture(capture_id, "captured")
    fields = stored["fields"]
    assert fields["postal_code"]["length"] == 9 and "last4" not in fields["postal_code"]
    assert fields["routing_number"]["last4"] == routing[-4:]
    assert fields["account_number"]["last4"] == account[-4:]
    assert set(stored["vault_refs"]) == {"postal_code", "routing_number", "account_number"}
    assert live.agent.dtmf == []
    plays = played(full)
    for prompt in ("enter-zip-code", "enter-routing-number", "entry-check-failed",
                   "enter-account-number"):
        assert f"'callsec/{prompt}." in plays, prompt
    blobs = {"callsec log": product.proc.log_file.read_bytes(),
             "database": sqlite_dump(WORKDIR / "callsec.db"), "sse": live.sse.path.read_bytes()}
    blobs.update({f"asterisk {t.path}": t.read() for t in tails})
    assert find_leaks([zip4, routing, wrong, account], blobs) == []


async def originate_verify(ari_a: aiohttp.ClientSession, lang: str) -> str:
    """A Local channel into callsec's ``verify`` flow with ``lang``; the other half runs 1100."""
    channel_id = f"p2-{lang}-{uuid.uuid4().hex[:8]}"
    async with ari_a.post(f"/ari/channels/{channel_id}", params={
            "endpoint": "Local/1100@sandbox", "app": "callsec",
            "appArgs": f"verify,lang={lang},policy=ask"}) as resp:
        assert resp.status == 200, await resp.text()
    return channel_id


async def wait_played(tail: LogTail, pattern: str, timeout: float = 20.0) -> str:
    async with asyncio.timeout(timeout):
        while not re.search(pattern, played(tail)):
            await asyncio.sleep(0.3)
    return played(tail)


async def test_a_dropped_in_language_and_a_configured_override_are_what_asterisk_plays(
        product: Product, ari_a: aiohttp.ClientSession) -> None:
    english = in_root(f"{SOUNDS_IN_ROOT}/en") / "callsec"
    dropped = SOUNDS / "xx" / "callsec" / "welcome.gsm"
    override = SOUNDS / f"{OVERRIDE}.gsm"
    gsm(english / "welcome.wav", dropped)
    gsm(english / "goodbye.wav", override)
    full = LogTail(A.full_log)
    channels: list[str] = []
    try:
        channels.append(await originate_verify(ari_a, "xx"))
        plays = await wait_played(full, r"'en/callsec/[a-z-]+\.slin' \(language 'xx'\)")
        assert "'callsec/welcome.gsm' (language 'xx')" in plays  # the dropped-in file
        missing = re.findall(r"'en/callsec/([a-z-]+)\.slin' \(language 'xx'\)", plays)
        log = product.proc.log_text()
        for name in missing:
            assert f"prompt {name} is missing in language xx" in log
        channels.append(await originate_verify(ari_a, "de"))
        plays = await wait_played(full, rf"'{OVERRIDE}\.gsm' \(language 'de'\)")
        assert "'callsec/welcome.slin' (language 'de')" not in plays
    finally:
        for channel in channels:
            async with ari_a.delete(f"/ari/channels/{channel}"):
                pass
        shutil.rmtree(SOUNDS / "xx", ignore_errors=True)
        shutil.rmtree(SOUNDS / TEST_DIR, ignore_errors=True)
