"""Hostile HTTP against the web layer on a real aiohttp server (loopback, real SQLite store,
real users): oversized and malformed bodies, wrong JSON types, missing / forged / expired
tokens, CSRF on cookie sessions, another agent's call and capture, path traversal on the
static files, SSE for calls that do not exist. Every refusal is a JSON error with the fitting
status; no request ever gets a 500 or a file from outside the static directory.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from callsec_ari.access.roles import ENDPOINTS
from tests.integration.web_env import WebEnv, web_env

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[WebEnv]:
    async with web_env(tmp_path) as e:
        e.captures.add("CAP-1", "C-100", "agent100")
        e.captures.add("CAP-2", "C-102", "agent102")
        yield e


async def answer(resp: aiohttp.ClientResponse) -> tuple[int, dict[str, Any]]:
    assert resp.content_type == "application/json", (resp.status, await resp.text())
    body = await resp.json()
    assert set(body) == {"error_id", "message", "details"}, body
    return resp.status, body


def guarded_paths() -> list[tuple[str, str]]:
    ids = {"call_id": "C-100", "capture_id": "CAP-1", "approval_id": "AP-1", "field": "expiry"}
    return [(ep.method, ep.path.format_map(ids)) for ep in ENDPOINTS if ep.permissions]


# --- bodies ---------------------------------------------------------------------------------

async def test_oversized_bodies_on_guarded_routes_get_413_before_any_work(env: WebEnv) -> None:
    headers = await env.login("anna")
    big = json.dumps({"fields": ["iban"], "pad": "x" * 10_000})
    resp = await env.client.post("/api/v1/calls/C-100/captures", data=big,
                                 headers={**headers, "Content-Type": "application/json"})
    status, body = await answer(resp)
    assert (status, body["error_id"]) == (413, "payload_too_large")
    assert env.captures.requests == []


@pytest.mark.parametrize("body", [
    {"username": 7, "password": "x", "otp": "123456"},
    {"username": "anna", "password": ["x"], "otp": "123456"},
    {"username": "anna", "password": "x", "otp": 123456},
    {"username": None, "password": None, "otp": None},
    {"username": "anna" * 100, "password": "x", "otp": "123456"},
    [], "just a string", 3, None,
])
async def test_login_with_wrong_json_types_gets_422(env: WebEnv, body: Any) -> None:
    status, data = await answer(await env.client.post("/api/v1/login", json=body))
    assert (status, data["error_id"]) == (422, "invalid_input")


@pytest.mark.parametrize("raw", [b"{", b"\xff\xfe{}", b'{"fields": ["iban"]', b"NaN",
                                 b'{"fields": {"iban": true}}', b'{"fields": [1, 2]}',
                                 b'{"fields": [null]}', b'{"fields": [["iban"]]}'])
async def test_capture_requests_with_broken_or_mistyped_json_get_422(env: WebEnv,
                                                                     raw: bytes) -> None:
    headers = {**await env.login("anna"), "Content-Type": "application/json"}
    resp = await env.client.post("/api/v1/calls/C-100/captures", data=raw, headers=headers)
    status, data = await answer(resp)
    assert (status, data["error_id"]) == (422, "invalid_input")
    assert env.captures.requests == []


async def test_reveal_with_mistyped_reason_or_otp_gets_422(env: WebEnv) -> None:
    headers = await env.login("sven")
    for body in ({"reason": 5, "otp": "123456"}, {"reason": "r" * 5000, "otp": "1"},
                 {"reason": "refund", "otp": ["1"]}, {}):
        resp = await env.client.post("/api/v1/captures/CAP-1/reveal", json=body,
                                     headers=headers)
        status, data = await answer(resp)
        assert status in (413, 422), (body, status, data)
    assert env.captures.reveals == []


# --- tokens ---------------------------------------------------------------------------------

@pytest.mark.parametrize("authorization", [
    None, "", "Bearer", "Bearer ", "Bearer forged-token", "Bearer " + "A" * 4000,
    "Basic YW5uYTpwYXNzd29yZA==", "bearer\tx", "Bearer ../../etc/passwd", "Bearer \u00e4\u00f6",
])
async def test_missing_or_forged_tokens_get_401_on_every_guarded_route(
        env: WebEnv, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path in guarded_paths():
        resp = await env.client.request(method, path, headers=headers)
        status, data = await answer(resp)
        assert status == 401, (method, path, status, data)


async def test_expired_and_logged_out_tokens_get_401(env: WebEnv) -> None:
    old = await env.login("anna")
    env.clock.advance(3600 + 1)  # session_ttl_seconds = 3600 in the test config
    status, _ = await answer(await env.client.get("/api/v1/calls", headers=old))
    assert status == 401
    fresh = await env.login("anna")
    assert (await env.client.post("/api/v1/logout", headers=fresh)).status == 200
    for method, path in guarded_paths():
        status, _ = await answer(await env.client.request(method, path, headers=fresh))
        assert status == 401, (method, path)


async def test_a_token_with_one_character_changed_is_refused(env: WebEnv) -> None:
    headers = await env.login("anna")
    token = headers["Authorization"].split(" ", 1)[1]
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    resp = await env.client.get("/api/v1/me", headers={"Authorization": f"Bearer {flipped}"})
    assert (await answer(resp))[0] == 401


# --- CSRF on cookie sessions ------------------------------------------------------------------

async def test_cookie_sessions_refuse_unsafe_requests_without_the_csrf_token(
        env: WebEnv) -> None:
    resp = await env.client.post("/api/v1/login", json={
        "username": "anna", "password": "correct horse battery staple",
        "otp": env.code("anna"), "session": "cookie"})
    assert resp.status == 200
    csrf = (await resp.json())["csrf_token"]
    attempts: list[dict[str, str]] = [{}, {"X-CSRF-Token": ""}, {"X-CSRF-Token": "x"},
                                      {"X-CSRF-Token": csrf + "x"}, {"X-CSRF-Token": csrf[:-1]}]
    for headers in attempts:
        for method, path in (("POST", "/api/v1/calls/C-100/captures"),
                             ("DELETE", "/api/v1/calls/C-100/captures/CAP-1"),
                             ("POST", "/api/v1/logout")):
            resp = await env.client.request(method, path, json={"fields": ["iban"]},
                                            headers=headers)
            status, data = await answer(resp)
            assert (status, data["error_id"]) == (403, "csrf_failed"), (method, path, headers)
    assert env.captures.requests == []
    env.client.session.cookie_jar.update_cookies({"callsec_csrf": "attacker-chosen"})
    resp = await env.client.post("/api/v1/calls/C-100/captures", json={"fields": ["iban"]},
                                 headers={"X-CSRF-Token": "attacker-chosen"})
    assert (await answer(resp))[0] == 403  # double submit is signed: a set cookie is not enough


# --- another agent's call and capture ---------------------------------------------------------

OTHERS_RESOURCES = (
    ("GET", "/api/v1/calls/{call}/events", None),
    ("POST", "/api/v1/calls/{call}/captures", {"fields": ["iban"]}),
    ("DELETE", "/api/v1/calls/{call}/captures/{capture}", None),
    ("GET", "/api/v1/captures/{capture}", None),
)


async def test_an_agent_cannot_reach_another_agents_call_capture_or_stream(env: WebEnv) -> None:
    headers = await env.login("anna")
    for method, path, body in OTHERS_RESOURCES:
        resp = await env.client.request(method, path.format(call="C-102", capture="CAP-2"),
                                        json=body, headers=headers)
        status, data = await answer(resp)
        assert (status, data["error_id"]) == (404, "not_found"), (method, path)
    assert env.captures.requests == []
    denied = [e.target for e in env.store.audit.tail(limit=100) if e.action == "access.denied"]
    assert denied == ["call C-102"] * 3 + ["capture CAP-2"]  # still on the audit trail


@pytest.mark.parametrize("user", ["anna", "rita"])
async def test_another_agents_call_answers_exactly_like_a_call_that_does_not_exist(
        env: WebEnv, user: str) -> None:
    """No probing: an id that exists but is not the user's to see, and an id that does not
    exist, get the same status, error id, message and details (up to the id itself)."""
    headers = await env.login(user)
    other = {"anna": ("C-102", "CAP-2"), "rita": ("C-100", "CAP-1")}[user]
    for method, path, body in OTHERS_RESOURCES:
        answers = []
        for call, capture in (other, ("C-777", "CAP-7")):
            resp = await env.client.request(method, path.format(call=call, capture=capture),
                                            json=body, headers=headers)
            status, data = await answer(resp)
            text = json.dumps(data).replace(call, "{call}").replace(capture, "{capture}")
            answers.append((status, text))
        assert answers[0] == answers[1], (user, method, path, answers)
        assert answers[0][0] == 404
    assert env.captures.requests == []


# --- static files and SSE -----------------------------------------------------------------------

@pytest.mark.parametrize("path", [
    "/static/../callsec.db", "/static/%2e%2e/callsec.db", "/static/..%2fcallsec.db",
    "/static/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/static/....//....//etc/passwd",
    "/static/..\\..\\etc\\passwd", "/static//etc/passwd", "/static/%252e%252e/callsec.db",
    "/static/desk.js%00.png", "/static/./../../keys/kek-1.key", "/static/",
    "/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2fapp.py", "/static/..%5capp.py",
    "/static/%2e%2e%2f%2e%2e%2fconfig.py", "/static/../../config.py",
])
async def test_path_traversal_on_static_files_never_leaves_the_static_dir(
        env: WebEnv, path: str) -> None:
    status, body = await raw_get(env, path)
    assert status in (400, 403, 404), (path, status)
    assert b"root:" not in body and b"SQLite format" not in body and b"import" not in body
    assert (await raw_get(env, "/static/desk.js"))[0] == 200  # the control


async def raw_get(env: WebEnv, target: str) -> tuple[int, bytes]:
    """A request line sent byte for byte (an HTTP client would normalise ``..`` away)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", env.client.port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                 .encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.mark.parametrize("call_id", ["C-999", "x" * 500, "%00", "..", "C-100%2F..",
                                     "\u00e4\u00f6\u00fc", "C-100;DROP"])
async def test_progress_stream_for_a_call_that_does_not_exist_is_a_404(env: WebEnv,
                                                                       call_id: str) -> None:
    resp = await env.client.get(f"/api/v1/calls/{call_id}/events",
                                headers=await env.login("anna"))
    status, data = await answer(resp)
    assert status == 404, (call_id, status, data)
