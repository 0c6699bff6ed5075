"""Attacks on the staff login through the HTTP API of a running server (real aiohttp server on
loopback, real SQLite store, real users with scrypt passwords and TOTP; the server's clock is
injected, so delays and idle times pass without sleeping).

Issue #14 points 6 and 8: failed logins by anyone must not end a user's sessions or lock the
account for good (growing per-account delays instead); behind a trusted proxy the per-address
limit sees the real clients; refused attempts are aggregated in the audit trail; staff sessions
end after ``[web] session_idle_minutes`` without use; no secret typed into the user-name field
reaches the audit trail.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from callsec_ari.store.models import AuditRow
from tests.integration.web_env import PASSWORD, WebEnv, web_env

pytestmark = pytest.mark.asyncio

WRONG = "wrong password 1234"


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[WebEnv]:
    async with web_env(tmp_path) as e:
        yield e


async def attempt(env: WebEnv, name: str, password: str = WRONG, otp: str = "000000",
                  forwarded: str | None = None) -> Any:
    """One login attempt that does not move the clock (a fixed, wrong code by default)."""
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    return await env.client.post("/api/v1/login", headers=headers, json={
        "username": name, "password": password, "otp": otp})


async def good_login(env: WebEnv, name: str, forwarded: str | None = None) -> Any:
    return await attempt(env, name, PASSWORD, env.code(name), forwarded)


def audit_count(env: WebEnv) -> int:
    with env.store.db.session() as s:
        return len(list(s.scalars(select(AuditRow.seq))))


# -- growing delays, never a lockout or ended session ---------------------------------------

async def test_wrong_passwords_by_an_attacker_neither_end_the_session_nor_lock_the_user(
        env: WebEnv) -> None:
    headers = await env.login("anna")
    statuses = [(await attempt(env, "anna")).status for _ in range(7)]
    assert (await env.client.get("/api/v1/me", headers=headers)).status == 200
    assert statuses == [401] * 5 + [429] * 2  # 5 checked, then delayed
    resp = await attempt(env, "anna", PASSWORD, "000000")  # delayed: not even checked
    assert resp.status == 429
    body = await resp.json()
    assert body["error_id"] == "login_delayed"
    wait = int(resp.headers["Retry-After"])
    assert 0 < wait <= 900 and f"{wait} seconds" in body["message"]
    env.clock.advance(wait)
    assert (await good_login(env, "anna")).status == 200
    assert (await env.client.get("/api/v1/me", headers=headers)).status == 200


async def test_delays_double_per_failure_and_are_capped(env: WebEnv) -> None:
    waits = []
    for _ in range(40):
        resp = await attempt(env, "ben")
        if resp.status == 429:
            waits.append(int(resp.headers["Retry-After"]))
            env.clock.advance(waits[-1])
    assert waits[:10] == [2, 4, 8, 16, 32, 64, 128, 256, 512, 900]
    assert max(waits) == 900 and waits[-1] == 900


async def test_unknown_and_known_users_are_delayed_alike(env: WebEnv) -> None:
    answers = []
    for name in ("anna", "nobody-here"):
        for _ in range(5):
            assert (await attempt(env, name)).status == 401
        resp = await attempt(env, name)
        answers.append((resp.status, (await resp.json())["error_id"],
                        resp.headers["Retry-After"]))
    assert answers[0] == answers[1] == (429, "login_delayed", "2")


async def test_users_unlock_clears_the_delay(env: WebEnv) -> None:
    from callsec_ari.cli import main as cli_main
    for _ in range(6):
        await attempt(env, "carla")
    assert (await attempt(env, "carla", PASSWORD)).status == 429
    assert cli_main(["-c", str(env.config_path), "users", "unlock", "carla"]) == 0
    assert (await good_login(env, "carla")).status == 200
    unlock = [e for e in env.store.audit.tail(limit=1000) if e.action == "user.unlock"]
    assert unlock and unlock[-1].details["failures"] == 5  # the 6th was refused, not counted


async def test_an_attacker_elsewhere_cannot_keep_a_user_out_of_her_usual_address(
        tmp_path: Path) -> None:
    async with web_env(tmp_path, "trusted_proxies = 127.0.0.1\n") as env:
        home = "198.51.100.9"
        assert (await good_login(env, "anna", forwarded=home)).status == 200
        for n in range(40):  # from ever new addresses, up to the longest delay
            resp = await attempt(env, "anna", forwarded=f"203.0.113.{n + 1}")
            if resp.status == 429:
                if int(resp.headers["Retry-After"]) == 900:
                    break
                env.clock.advance(int(resp.headers["Retry-After"]))
        assert resp.status == 429 and int(resp.headers["Retry-After"]) == 900
        assert (await good_login(env, "anna", forwarded=home)).status == 200
        resp = await good_login(env, "anna", forwarded="192.0.2.50")  # a new address waits
        assert resp.status == 429 and (await resp.json())["error_id"] == "login_delayed"


# -- the client address behind a trusted proxy -----------------------------------------------

async def test_failures_of_one_forwarded_client_do_not_block_another(tmp_path: Path) -> None:
    async with web_env(tmp_path, "trusted_proxies = 127.0.0.1/32, 10.0.0.0/8\n") as env:
        for n in range(25):
            resp = await attempt(env, f"guess{n}", forwarded="203.0.113.7, 10.1.2.3")
            assert resp.status in (401, 429)
        assert resp.status == 429 and (await resp.json())["error_id"] == "rate_limited"
        resp = await good_login(env, "anna", forwarded="198.51.100.9")
        assert resp.status == 200, await resp.text()
        # the attacker's own address is still limited, whatever it puts to the left
        resp = await good_login(env, "ben", forwarded="198.51.100.9, 203.0.113.7")
        assert resp.status == 429


async def test_a_spoofed_forwarded_header_from_an_untrusted_peer_is_ignored(
        tmp_path: Path) -> None:
    async with web_env(tmp_path, "trusted_proxies = 10.0.0.0/8\n") as env:
        for n in range(20):
            resp = await attempt(env, f"guess{n}", forwarded=f"198.51.100.{n + 1}")
            assert resp.status == 401
        resp = await good_login(env, "anna", forwarded="192.0.2.200")
        assert resp.status == 429 and (await resp.json())["error_id"] == "rate_limited"


# -- refused attempts are aggregated in the audit trail --------------------------------------

async def test_a_flood_of_refused_attempts_adds_a_bounded_number_of_audit_rows(
        env: WebEnv) -> None:
    for _ in range(5):
        assert (await attempt(env, "anna")).status == 401
    before = audit_count(env)
    statuses = {(await attempt(env, "anna")).status for _ in range(100)}
    assert audit_count(env) - before <= 2
    assert statuses == {429}
    env.clock.advance(900)
    assert (await good_login(env, "anna")).status == 200
    refused = [e for e in env.store.audit.tail(limit=5000)
               if e.action == "auth.login_refused"]
    assert 1 <= len(refused) <= 3
    assert sum(int(e.details["count"]) for e in refused) == 100
    assert {e.target for e in refused} == {"anna"}


# -- idle sessions -----------------------------------------------------------------------------

async def test_a_session_idle_longer_than_the_timeout_is_refused(env: WebEnv) -> None:
    headers = await env.login("anna")
    for _ in range(4):  # used every 10 minutes: stays alive for 40 minutes
        env.clock.advance(600)
        assert (await env.client.get("/api/v1/me", headers=headers)).status == 200
    env.clock.advance(15 * 60 + 1)
    resp = await env.client.get("/api/v1/me", headers=headers)
    assert resp.status == 401 and (await resp.json())["error_id"] == "session_invalid"
    env.clock.advance(1)
    assert (await env.client.get("/api/v1/me", headers=headers)).status == 401
    assert "session.idle" in [e.action for e in env.store.audit.tail(limit=1000)]


async def test_the_desks_background_polls_do_not_keep_a_session_alive(env: WebEnv) -> None:
    headers = await env.login("anna")
    poll = {**headers, "X-Callsec-Background": "1"}
    for _ in range(3):
        env.clock.advance(300)
        assert (await env.client.get("/api/v1/calls", headers=poll)).status == 200
    env.clock.advance(301)
    assert (await env.client.get("/api/v1/calls", headers=poll)).status == 401


async def test_session_idle_minutes_is_configurable(tmp_path: Path) -> None:
    async with web_env(tmp_path, "session_idle_minutes = 2\n") as env:
        headers = await env.login("anna")
        env.clock.advance(119)
        assert (await env.client.get("/api/v1/me", headers=headers)).status == 200
        env.clock.advance(121)
        assert (await env.client.get("/api/v1/me", headers=headers)).status == 401


# -- no secret typed into the user-name field reaches the audit trail ------------------------

async def test_a_card_number_or_password_typed_as_user_name_is_never_stored(
        env: WebEnv) -> None:
    typed = ["4111111111111111", "4111 1111 1111 1111", PASSWORD, "S3cret!pass-word"]
    for name in typed:
        statuses = [(await attempt(env, name)).status for _ in range(7)]
        assert 401 in statuses  # failures, then (new code) a delay and refusals
    with env.store.db.session() as s:
        rows = s.execute(text("SELECT actor, action, target, details FROM audit_log")).all()
        dump = "\n".join(" ".join(str(v) for v in row) for row in rows)
        tables = [r[0] for r in s.execute(text(
            "SELECT name FROM sqlite_master WHERE type = 'table'"))]
        everything = "\n".join(
            " ".join(str(v) for v in row)
            for table in tables for row in s.execute(text(f'SELECT * FROM "{table}"')))
    for name in typed:
        assert name not in dump and name.replace(" ", "") not in dump
        assert name not in everything
    failed = [e for e in env.store.audit.tail(limit=1000) if e.action == "login.failed"]
    assert failed and all(e.target.startswith("unknown-user:") for e in failed)
    assert len({e.target for e in failed}) == len(typed)  # still tells the attempts apart
