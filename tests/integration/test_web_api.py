"""The HTTP API on a real aiohttp server (loopback) with a real SQLite store: the permission
table endpoint by endpoint and role by role, login and TOTP brute force, sessions, CSRF,
body limits, reveal with fresh MFA, SSE, health and metrics, and the audit trail."""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from callsec_ari.access.roles import ENDPOINTS, Endpoint, Owner, Role, allowed_any
from callsec_ari.cli import main as cli_main
from callsec_ari.store.models import AuditRow
from callsec_ari.web.app import WebServer, build_web_app
from tests.integration.web_env import PASSWORD, STAFF, WebEnv, web_env

pytestmark = pytest.mark.asyncio

#: The documented table, written out for the call C-100 of agent anna (team blue): which
#: roles each endpoint admits. The API and roles.PERMISSIONS must both agree with it.
DOCUMENTED: dict[tuple[str, str], set[str]] = {
    ("POST", "/api/v1/logout"): {"agent", "supervisor", "admin", "auditor"},
    ("GET", "/api/v1/me"): {"agent", "supervisor", "admin", "auditor"},
    ("GET", "/api/v1/calls"): {"agent", "supervisor"},
    ("GET", "/api/v1/calls/{call_id}/events"): {"agent", "supervisor"},
    ("POST", "/api/v1/calls/{call_id}/captures"): {"agent"},
    ("DELETE", "/api/v1/calls/{call_id}/captures/{capture_id}"): {"agent", "supervisor"},
    ("POST", "/api/v1/calls/{call_id}/captures/{capture_id}/fields/{field}"):
        {"agent", "supervisor"},
    ("GET", "/api/v1/captures/{capture_id}"): {"agent", "supervisor"},
    ("POST", "/api/v1/calls/{call_id}/approvals"): {"agent"},
    ("GET", "/api/v1/approvals/{approval_id}"): {"agent", "supervisor"},
    ("POST", "/api/v1/captures/{capture_id}/reveal"): {"supervisor"},
    ("GET", "/api/v1/audit"): {"auditor"},
    ("GET", "/api/v1/team/audit"): {"supervisor"},
    ("GET", "/api/v1/users"): {"admin"},
    ("GET", "/api/v1/keys"): {"admin"},
    ("GET", "/metrics"): {"supervisor", "admin", "auditor"},
}
ROLE_USER = {"agent": "anna", "supervisor": "sven", "admin": "adam", "auditor": "olga"}
ANNAS_CALL = Owner(agent_endpoint="agent100", team="blue")


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[WebEnv]:
    async with web_env(tmp_path) as e:
        e.captures.add("CAP-1", "C-100", "agent100")
        yield e


async def call_endpoint(env: WebEnv, ep: Endpoint, user: str,
                        headers: dict[str, str]) -> tuple[int, Any]:
    """One request to ``ep`` about anna's call C-100 / capture CAP-1."""
    path = ep.path.format(call_id="C-100", capture_id="CAP-1", field="iban",
                          approval_id="AP-1")
    body: dict[str, Any] | None = None
    if ep.path.endswith("/approvals") and ep.method == "POST":
        body = {"amount": "49.90", "currency": "EUR", "payee": "ACME Energy"}
    elif ep.path.endswith("/captures") and ep.method == "POST":
        body = {"fields": ["iban"]}
    elif ep.path.endswith("/fields/{field}"):
        body = {"action": "cancel"}
    elif ep.path.endswith("/reveal"):
        body = {"reason": "customer asked for the refund account", "otp": env.code(user)}
    resp = await env.client.request(ep.method, path, json=body, headers=headers)
    if ep.path.endswith("/events") and resp.status == 200:
        first = await resp.content.readuntil(b"\n\n")
        resp.close()
        return 200, first.decode()
    data = await resp.json() if resp.content_type == "application/json" else await resp.text()
    return resp.status, data


async def test_documented_table_matches_the_code_table(env: WebEnv) -> None:
    guarded = {(ep.method, ep.path) for ep in ENDPOINTS if ep.auth}
    assert guarded == set(DOCUMENTED)
    for ep in ENDPOINTS:
        if not ep.auth:
            continue
        for role, name in ROLE_USER.items():
            subject = env.users.get(name).subject
            owner = ANNAS_CALL if ep.resource else None
            expected = role in DOCUMENTED[(ep.method, ep.path)]
            assert (allowed_any(subject, ep.permissions, owner) or not ep.permissions) \
                == expected, (ep.path, role)


@pytest.mark.parametrize("role", [r.value for r in Role])
async def test_every_endpoint_admits_exactly_the_documented_roles(env: WebEnv,
                                                                  role: str) -> None:
    name = ROLE_USER[role]
    headers = await env.login(name)
    logout = next(ep for ep in ENDPOINTS if ep.path == "/api/v1/logout")
    for ep in [ep for ep in ENDPOINTS if ep.auth and ep is not logout] + [logout]:
        status, data = await call_endpoint(env, ep, name, headers)
        if role in DOCUMENTED[(ep.method, ep.path)]:
            assert status in (200, 201, 202), (ep.method, ep.path, status, data)
        else:
            assert status == 403, (ep.method, ep.path, status, data)
            assert data["error_id"] == "forbidden"
    assert (await env.client.get("/api/v1/me", headers=headers)).status == 401


@pytest.mark.parametrize("intruder", ["ben", "carla", "rita"])
async def test_staff_cannot_act_on_a_call_of_another_agent_or_team(env: WebEnv,
                                                                   intruder: str) -> None:
    """Denied either way: 403 when the role lacks the permission altogether, 404 (exactly
    what an unknown id answers) when it holds it but the call is not the intruder's to see."""
    headers = await env.login(intruder)
    subject = env.users.get(intruder).subject
    for ep in ENDPOINTS:
        if ep.resource is None:
            continue
        status, data = await call_endpoint(env, ep, intruder, headers)
        expected = (404, "not_found") if allowed_any(subject, ep.permissions) \
            else (403, "forbidden")
        assert (status, data["error_id"]) == expected, (intruder, ep.method, ep.path, data)
    assert env.captures.requests == [] and env.captures.reveals == []
    denied = [e for e in env.store.audit.tail(limit=1000) if e.action == "access.denied"]
    assert {e.actor for e in denied} == {f"user:{intruder}"}


async def test_each_user_lists_only_the_calls_they_may_see(env: WebEnv) -> None:
    env.start_call("C-101", "PJSIP/agent101")
    seen = {}
    for name in ("anna", "ben", "carla", "sven", "rita"):
        resp = await env.client.get("/api/v1/calls", headers=await env.login(name))
        seen[name] = sorted(c["call_id"] for c in (await resp.json())["calls"])
    assert seen == {"anna": ["C-100"], "ben": ["C-101"], "carla": ["C-102"],
                    "sven": ["C-100", "C-101"], "rita": ["C-102"]}


async def test_call_list_shows_masked_caller_and_verification_never_digits(env: WebEnv
                                                                           ) -> None:
    env.start_call("C-103", "agent100", caller_masked="+4915112345678", verification=None)
    resp = await env.client.get("/api/v1/calls", headers=await env.login("anna"))
    calls = {c["call_id"]: c for c in (await resp.json())["calls"]}
    assert calls["C-100"]["caller"] == "+49…78"
    assert calls["C-100"]["verification"] == "verified"
    assert calls["C-100"]["agent"] == "agent100" and calls["C-100"]["agent_user"] == "anna"
    assert calls["C-103"]["caller"] is None and calls["C-103"]["verification"] is None
    assert "12345678" not in json.dumps(calls)


async def test_capture_routes_answer_503_until_the_capture_feature_is_plugged_in(
        tmp_path: Path) -> None:
    async with web_env(tmp_path, with_captures=False) as env:
        resp = await env.client.post("/api/v1/calls/C-100/captures", json={"fields": ["iban"]},
                                     headers=await env.login("anna"))
        assert resp.status == 503
        assert (await resp.json())["error_id"] == "capture_unavailable"


async def test_capture_request_validates_fields(env: WebEnv) -> None:
    headers = await env.login("anna")
    for fields in ([], ["pin"], ["iban", "iban"], "iban"):
        resp = await env.client.post("/api/v1/calls/C-100/captures", json={"fields": fields},
                                     headers=headers)
        assert resp.status == 422 and (await resp.json())["error_id"] == "invalid_input"
    resp = await env.client.post("/api/v1/calls/C-100/captures", data="fields=iban",
                                 headers=headers)
    assert resp.status == 422
    resp = await env.client.post("/api/v1/calls/C-999/captures", json={"fields": ["iban"]},
                                 headers=headers)
    assert resp.status == 404 and (await resp.json())["error_id"] == "not_found"


# -- login, lockout, sessions -------------------------------------------------------------

async def login(env: WebEnv, name: str, password: str = PASSWORD, otp: str | None = None,
                **extra: Any) -> Any:
    return await env.client.post("/api/v1/login", json={
        "username": name, "password": password, "otp": otp or env.code(name), **extra})


async def test_password_brute_force_makes_the_account_wait(env: WebEnv) -> None:
    for _ in range(5):
        resp = await login(env, "anna", password="wrong password 123", otp="000000")
        assert resp.status == 401 and (await resp.json())["error_id"] == "invalid_credentials"
    resp = await login(env, "anna", otp="000000")  # right password: refused, not checked
    assert resp.status == 429 and (await resp.json())["error_id"] == "login_delayed"
    assert int(resp.headers["Retry-After"]) == 2
    actions = [e.action for e in env.store.audit.tail(limit=1000)]
    assert actions.count("login.failed") == 5 and "auth.login_refused" in actions
    assert (await login(env, "anna")).status == 200  # the code moves the clock past 2 s


async def test_totp_brute_force_makes_the_account_wait(env: WebEnv) -> None:
    for guess in range(5):
        resp = await login(env, "ben", otp=f"{guess:06d}")
        assert resp.status == 401 and (await resp.json())["error_id"] == "invalid_credentials"
    resp = await login(env, "ben", otp="000005")
    assert resp.status == 429 and (await resp.json())["error_id"] == "login_delayed"
    actions = [e.action for e in env.store.audit.tail(limit=1000)]
    assert actions.count("login.mfa_failed") == 5 and "auth.login_refused" in actions


async def test_one_address_guessing_many_usernames_is_rate_limited(env: WebEnv) -> None:
    for n in range(20):  # 4 x login_max_failures, never 5 on one name
        resp = await login(env, f"guess{n % 5}x{n // 5}", otp="123456")
        assert resp.status == 401
    resp = await login(env, "anna")
    assert resp.status == 429 and (await resp.json())["error_id"] == "rate_limited"
    refused = [e for e in env.store.audit.tail(limit=1000) if e.action == "auth.login_refused"]
    assert refused and refused[-1].details["by"] == "address"


async def test_a_totp_code_is_accepted_only_once(env: WebEnv) -> None:
    code = env.code("anna")
    assert (await login(env, "anna", otp=code)).status == 200
    resp = await login(env, "anna", otp=code)
    assert resp.status == 401


async def test_unknown_and_disabled_users_get_the_same_answer(env: WebEnv) -> None:
    env.users.set_disabled("carla", True, actor="test")
    for name in ("nobody", "carla"):
        resp = await env.client.post("/api/v1/login", json={
            "username": name, "password": PASSWORD, "otp": "123456"})
        assert resp.status == 401 and (await resp.json())["error_id"] == "invalid_credentials"


async def test_login_rejects_malformed_input(env: WebEnv) -> None:
    for body in ({"username": "anna"}, {"username": 5, "password": "x", "otp": "1"},
                 {"username": "anna", "password": PASSWORD, "otp": "1", "session": "jwt"}):
        resp = await env.client.post("/api/v1/login", json=body)
        assert resp.status == 422 and (await resp.json())["error_id"] == "invalid_input"


async def test_session_tokens_expire_and_logout_ends_them(env: WebEnv) -> None:
    headers = await env.login("anna")
    assert (await env.client.get("/api/v1/me", headers=headers)).status == 200
    env.clock.advance(3601)
    resp = await env.client.get("/api/v1/me", headers=headers)
    assert resp.status == 401 and (await resp.json())["error_id"] == "session_invalid"
    headers = await env.login("anna")
    assert (await env.client.post("/api/v1/logout", headers=headers)).status == 200
    assert (await env.client.get("/api/v1/me", headers=headers)).status == 401
    assert (await env.client.get("/api/v1/me")).status == 401


async def test_only_a_hash_of_the_session_token_is_stored(env: WebEnv) -> None:
    headers = await env.login("anna")
    token = headers["Authorization"].split()[1]
    raw = (Path(env.config_path).parent / "callsec.db").read_bytes()
    assert token.encode() not in raw and env.secrets["anna"].encode() not in raw


async def test_cookie_sessions_need_the_csrf_header(env: WebEnv) -> None:
    resp = await login(env, "anna", session="cookie")
    assert resp.status == 200
    body = await resp.json()
    assert "token" not in body
    cookie = resp.headers.getall("Set-Cookie")
    session_cookie = next(c for c in cookie if c.startswith("callsec_session="))
    assert "HttpOnly" in session_cookie and "SameSite=Strict" in session_cookie
    assert "Secure" not in session_cookie  # [web] secure_cookies = no in this test
    assert (await env.client.get("/api/v1/me")).status == 200  # safe method: no token needed
    resp = await env.client.post("/api/v1/calls/C-100/captures", json={"fields": ["iban"]})
    assert resp.status == 403 and (await resp.json())["error_id"] == "csrf_failed"
    resp = await env.client.post("/api/v1/calls/C-100/captures", json={"fields": ["iban"]},
                                 headers={"X-CSRF-Token": "forged"})
    assert resp.status == 403
    resp = await env.client.post("/api/v1/calls/C-100/captures", json={"fields": ["iban"]},
                                 headers={"X-CSRF-Token": body["csrf_token"]})
    assert resp.status == 201


async def test_secure_cookies_flag_follows_the_config(tmp_path: Path) -> None:
    async with web_env(tmp_path, "secure_cookies = yes\n") as env:
        resp = await login(env, "anna", session="cookie")
        cookies = resp.headers.getall("Set-Cookie")
        assert all("Secure" in c for c in cookies)
        assert "Strict-Transport-Security" in resp.headers


async def test_oversized_bodies_get_a_413_json_error(env: WebEnv) -> None:
    big = {"username": "anna", "password": "x" * 5000, "otp": "123456"}
    resp = await env.client.post("/api/v1/login", json=big)
    assert resp.status == 413 and (await resp.json())["error_id"] == "payload_too_large"

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"username": "anna", "password": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'", "otp": "123456"}'
    resp = await env.client.post("/api/v1/login", data=chunks(),
                                 headers={"Content-Type": "application/json"})
    assert resp.status == 413 and (await resp.json())["error_id"] == "payload_too_large"


async def test_errors_are_json_and_pages_carry_security_headers(env: WebEnv) -> None:
    resp = await env.client.get("/api/v1/nothing-here")
    assert resp.status == 404 and (await resp.json())["error_id"] == "not_found"
    resp = await env.client.put("/api/v1/me")
    assert resp.status == 405 and (await resp.json())["error_id"] == "method_not_allowed"
    for path in ("/", "/static/desk.js", "/api/v1/me"):
        resp = await env.client.get(path)
        csp = resp.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
    html = await (await env.client.get("/")).text()
    assert re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html) is None  # no inline scripts
    assert " style=" not in html and "<style" not in html


# -- reveal ---------------------------------------------------------------------------------

async def test_reveal_needs_a_fresh_totp_and_is_audited(env: WebEnv) -> None:
    headers = await env.login("sven")
    url = "/api/v1/captures/CAP-1/reveal"
    resp = await env.client.post(url, json={"reason": "refund to customer"}, headers=headers)
    assert resp.status == 401 and (await resp.json())["error_id"] == "mfa_required"
    resp = await env.client.post(url, json={"reason": "refund to customer", "otp": "000000"},
                                 headers=headers)
    assert resp.status == 403 and (await resp.json())["error_id"] == "mfa_failed"
    resp = await env.client.post(url, json={"reason": "no", "otp": env.code("sven")},
                                 headers=headers)
    assert resp.status == 422  # a reason is required
    code = env.code("sven")
    resp = await env.client.post(url, json={"reason": "refund to customer", "otp": code},
                                 headers=headers)
    assert resp.status == 200
    assert (await resp.json())["values"] == {"iban": "DE89370400440532013000"}
    assert env.captures.reveals == [("CAP-1", frozenset({"iban", "national_id"}), "user:sven")]
    resp = await env.client.post(url, json={"reason": "refund to customer", "otp": code},
                                 headers=headers)
    assert resp.status == 403  # the same code twice is not fresh
    entries = env.store.audit.tail(limit=1000)
    reveals = [e for e in entries if e.action == "capture.reveal"]
    assert len(reveals) == 1 and reveals[0].details["reason"] == "refund to customer"
    assert reveals[0].actor == "user:sven" and reveals[0].target == "CAP-1"
    assert [e.action for e in entries].count("reveal.mfa_failed") == 2


async def test_fresh_totp_brute_force_makes_reveals_wait_but_keeps_the_session(
        env: WebEnv) -> None:
    headers = await env.login("sven")
    for guess in range(6):
        resp = await env.client.post("/api/v1/captures/CAP-1/reveal", headers=headers,
                                     json={"reason": "guessing codes", "otp": f"{guess:06d}"})
        assert resp.status == (403 if guess < 5 else 429)
    assert (await resp.json())["error_id"] == "login_delayed"
    assert (await env.client.get("/api/v1/me", headers=headers)).status == 200
    assert (await login(env, "sven")).status == 200  # the login door counts apart
    assert env.captures.reveals == []


async def test_card_numbers_are_revealable_only_when_configured(tmp_path: Path) -> None:
    async with web_env(tmp_path, "reveal_kinds = iban,card_number\n") as env:
        env.captures.add("CAP-9", "C-100", "agent100")
        headers = await env.login("sven")
        me = await (await env.client.get("/api/v1/me", headers=headers)).json()
        assert me["reveal_kinds"] == ["card_number", "iban"]
        resp = await env.client.post("/api/v1/captures/CAP-9/reveal", headers=headers, json={
            "reason": "chargeback dispute", "otp": env.code("sven")})
        assert resp.status == 200
        assert env.captures.reveals[0][1] == frozenset({"iban", "card_number"})


# -- SSE, health, metrics, audit --------------------------------------------------------

async def read_events(resp: Any, count: int) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    while len(out) < count:
        block = (await resp.content.readuntil(b"\n\n")).decode()
        if block.startswith(":"):
            continue
        fields = dict(line.split(": ", 1) for line in block.strip().splitlines())
        out.append((fields["event"], json.loads(fields["data"])))
    return out


async def test_progress_stream_relays_only_this_calls_masked_events(env: WebEnv) -> None:
    resp = await env.client.get("/api/v1/calls/C-100/events", headers=await env.login("anna"))
    assert resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream"
    (kind, snapshot), = await read_events(resp, 1)
    assert kind == "snapshot" and snapshot["call_id"] == "C-100"
    env.bus.publish("C-102", "capture", {"field": "card_number", "count": 3, "dots": "•••"})
    env.bus.publish("C-100", "capture", {"field": "card_number", "count": 4, "dots": "••••",
                                         "note": "typed 4111111111111111"})
    env.bus.publish("C-100", "capture", {"field": "card_number", "valid": True, "brand": "visa",
                                         "last_digits": "1111", "length": 16})
    env.bus.publish("C-100", "capture", {"field": "iban", "last_digits": "12345"})
    events = await read_events(resp, 3)
    resp.close()
    assert [e[1]["call_id"] for e in events] == ["C-100"] * 3
    assert events[0][1]["dots"] == "••••" and "4111" not in json.dumps(events)
    assert events[1][1]["brand"] == "visa" and events[1][1]["last_digits"] == "1111"
    assert "last_digits" not in events[2][1]


async def test_progress_stream_ends_when_the_call_ends(env: WebEnv) -> None:
    call = env.start_call("C-200", "agent100")
    resp = await env.client.get("/api/v1/calls/C-200/events", headers=await env.login("anna"))
    await read_events(resp, 1)
    assert call.task is not None
    call.task.cancel()
    (kind, data), = await read_events(resp, 1)
    assert kind == "end" and data == {"call_id": "C-200"}


async def test_open_progress_streams_do_not_delay_shutdown(env: WebEnv) -> None:
    server = WebServer(build_web_app(env.deps), "127.0.0.1", 0)
    await server.start()
    headers = await env.login("anna")
    async with aiohttp.ClientSession() as session:
        resp = await session.get(f"http://127.0.0.1:{server.port}/api/v1/calls/C-100/events",
                                 headers=headers)
        await read_events(resp, 1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await server.stop()
        assert loop.time() - started < 1.5
        assert await resp.content.read() == b""  # the stream was closed by the server
        resp.close()


async def test_healthz_reports_ari_and_database(env: WebEnv) -> None:
    resp = await env.client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok", "db": True, "ari": {"asterisk1": True}}
    env.links[0].connected.clear()
    resp = await env.client.get("/healthz")
    assert resp.status == 503 and (await resp.json())["ari"] == {"asterisk1": False}


async def test_metrics_expose_calls_results_reconnects_and_latency(env: WebEnv) -> None:
    assert (await env.client.get("/metrics")).status == 401
    env.bus.publish("C-100", "verification", {"stage": "finished", "result": "verified"})
    env.bus.publish("C-102", "verification", {"stage": "finished", "result": "failed"})
    env.bus.publish("C-100", "capture", {"result": "captured"})
    env.links[0].client.reconnects = 3
    assert env.deps.latency is not None
    env.deps.latency.observe("outbox", 0.02, True)
    env.deps.latency.observe("outbox", 3.0, False)
    resp = await env.client.get("/metrics",
                                headers={"Authorization": "Bearer scrape-me-please"})
    assert resp.status == 200 and resp.content_type == "text/plain"
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(await resp.text())
               for s in family.samples}
    assert samples[("callsec_active_calls", ())] == 2
    assert samples[("callsec_verifications_total", (("result", "verified"),))] == 1
    assert samples[("callsec_verifications_total", (("result", "failed"),))] == 1
    assert samples[("callsec_captures_total", (("result", "captured"),))] == 1
    assert samples[("callsec_ari_reconnects_total", (("server", "asterisk1"),))] == 3
    assert samples[("callsec_ari_connected", (("server", "asterisk1"),))] == 1
    outbox = ("backend", "outbox")
    assert samples[("callsec_delivery_latency_seconds_bucket", (outbox, ("le", "0.05")))] == 1
    assert samples[("callsec_delivery_latency_seconds_bucket", (outbox, ("le", "+Inf")))] == 2
    assert samples[("callsec_delivery_latency_seconds_count", (outbox,))] == 2
    assert samples[("callsec_delivery_failures_total", (outbox,))] == 1
    wrong = await env.client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401


async def test_metrics_count_the_asyncio_tasks_alive(env: WebEnv) -> None:
    scraper = {"Authorization": "Bearer scrape-me-please"}

    async def tasks() -> int:
        text = await (await env.client.get("/metrics", headers=scraper)).text()
        found = re.search(r"^callsec_asyncio_tasks (\d+)(\.0)?$", text, re.M)
        assert found is not None, text
        return int(found.group(1))

    before = await tasks()
    env.start_call("C-300", "agent100")  # one more call: one more worker task
    assert await tasks() == before + 1


async def test_audit_api_reads_since_a_sequence_number(env: WebEnv) -> None:
    headers = await env.login("olga")
    resp = await env.client.get("/api/v1/audit", headers=headers)
    entries = (await resp.json())["entries"]
    assert [e["action"] for e in entries][:7] == ["user.add"] * 7
    assert entries[-1]["action"] == "login.ok" and entries[-1]["actor"] == "user:olga"
    resp = await env.client.get("/api/v1/audit?since=5", headers=headers)
    assert next(e["seq"] for e in (await resp.json())["entries"]) == 6
    resp = await env.client.get("/api/v1/audit?limit=2", headers=headers)  # the newest two
    newest = (await resp.json())["entries"]
    assert [e["seq"] for e in newest] == [entries[-2]["seq"], entries[-1]["seq"]]
    resp = await env.client.get("/api/v1/audit?since=yesterday", headers=headers)
    assert resp.status == 422


async def test_team_audit_shows_only_the_supervisors_team(env: WebEnv) -> None:
    await env.login("anna")
    await env.login("carla")
    resp = await env.client.get("/api/v1/team/audit", headers=await env.login("sven"))
    targets = {e["target"] for e in (await resp.json())["entries"]}
    assert {"anna", "sven"} <= targets and "carla" not in targets


async def test_audit_verify_catches_a_row_tampered_after_api_activity(
        env: WebEnv, capsys: pytest.CaptureFixture[str]) -> None:
    await env.login("anna")
    await env.login("sven")
    assert cli_main(["-c", str(env.config_path), "audit", "verify"]) == 0
    login_ok = next(e for e in env.store.audit.tail(limit=1000) if e.action == "login.ok")
    with env.store.db.session() as s:
        s.execute(update(AuditRow).where(AuditRow.seq == login_ok.seq)
                  .values(actor="user:mallory"))
    capsys.readouterr()
    assert cli_main(["-c", str(env.config_path), "audit", "verify"]) == 1
    assert f"entry {login_ok.seq}" in capsys.readouterr().err


async def test_users_add_prints_a_usable_otpauth_uri_line(
        env: WebEnv, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    code = cli_main(["-c", str(env.config_path), "users", "add", "dora", "--role", "agent",
                     "--endpoint", "agent105", "--team", "blue", "--password-stdin"])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    uris = [line for line in lines if line.startswith("otpauth://")]
    assert len(uris) == 1 and uris[0].startswith("otpauth://totp/") and " " not in uris[0]
    assert sum("#" * 14 in line for line in lines) >= 4  # the QR code's finder patterns
    secret = re.search(r"secret=([A-Z2-7]+)", uris[0])
    assert secret is not None
    env.secrets["dora"] = secret.group(1)
    resp = await login(env, "dora")
    assert resp.status == 200
    assert (await resp.json())["user"] == {**(await resp.json())["user"], "role": "agent",
                                           "endpoint": "agent105", "team": "blue"}
    assert set(STAFF) | {"dora"} == {u.name for u in env.users.all()}
