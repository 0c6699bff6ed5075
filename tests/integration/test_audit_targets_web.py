"""No secret in the audit trail, through the HTTP API: a card number or a password typed into
the login's user-name field is not stored as the audit target (the trail is append-only and
kept for years); it becomes a keyed marker. A real user name stays readable."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.integration.web_env import WebEnv, web_env

pytestmark = pytest.mark.asyncio

TYPED = ["4111111111111111", "4111 1111 1111 1111", "Hunter2!Passw0rd",
         "correct horse battery staple", "DE89370400440532013000"]


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[WebEnv]:
    async with web_env(tmp_path) as e:
        yield e


def audit_dump(env: WebEnv) -> list[tuple[str, str, str]]:
    with env.store.db.session() as s:
        rows = s.execute(text("SELECT action, target, details FROM audit_log")).all()
    return [(str(a), str(t), str(d)) for a, t, d in rows]


async def test_a_card_number_or_password_typed_as_user_name_is_not_stored_in_the_audit(
        env: WebEnv) -> None:
    for typed in TYPED:
        resp = await env.client.post("/api/v1/login", json={
            "username": typed, "password": "wrong password 123", "otp": "123456"})
        assert resp.status in (401, 429)
    rows = audit_dump(env)
    dump = "\n".join(" ".join(row) for row in rows)
    for typed in TYPED:
        assert typed not in dump and typed.replace(" ", "") not in dump
    assert "4111" not in dump and "Hunter2" not in dump
    login_targets = {target for action, target, _ in rows if action.startswith("login.")}
    assert login_targets and all(":" in target for target in login_targets)


async def test_a_real_user_name_stays_readable_in_the_audit(env: WebEnv) -> None:
    resp = await env.client.post("/api/v1/login", json={
        "username": "anna", "password": "wrong password 123", "otp": "123456"})
    assert resp.status == 401
    assert ("login.failed", "anna") in {(a, t) for a, t, _ in audit_dump(env)}
    assert env.store.audit.verify().ok
