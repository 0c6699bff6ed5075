"""``POST /api/v1/calls/{call_id}/captures/{capture_id}/fields/{field}`` (issue #18, a CONTRACT
addition): ``{"action": "rerequest" | "cancel" | "skip"}`` for one field of a running capture,
only on the agent's own call, validated, audited; ``optional`` on the capture request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.web_env import WebEnv, web_env


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[WebEnv]:
    async with web_env(tmp_path) as e:
        yield e


async def _capture(env: WebEnv, headers: dict[str, str], **extra: object) -> str:
    resp = await env.client.post("/api/v1/calls/C-100/captures", headers=headers,
                                 json={"fields": ["card_number", "expiry", "cvv"], **extra})
    assert resp.status == 201, await resp.text()
    return str((await resp.json())["capture_id"])


async def test_the_agent_rerequests_one_field_of_their_running_capture(env: WebEnv) -> None:
    headers = await env.login("anna")
    capture_id = await _capture(env, headers, optional=["cvv"])
    url = f"/api/v1/calls/C-100/captures/{capture_id}/fields/expiry"
    resp = await env.client.post(url, json={"action": "rerequest"}, headers=headers)
    assert resp.status == 202, await resp.text()
    assert await resp.json() == {"capture_id": capture_id, "field": "expiry",
                                 "action": "rerequest"}
    assert env.captures.controls == [(capture_id, "expiry", "rerequest")]
    audit = await env.client.get("/api/v1/audit", headers=await env.login("olga"))
    assert audit.status == 200
    actions = [e["action"] for e in (await audit.json())["entries"]]
    assert "capture.field_rerequest" in actions


async def test_a_bad_action_field_or_optional_list_is_refused(env: WebEnv) -> None:
    headers = await env.login("anna")
    capture_id = await _capture(env, headers)
    base = f"/api/v1/calls/C-100/captures/{capture_id}/fields"
    for field, body in (("expiry", {"action": "again"}), ("expiry", {}),
                        ("pin", {"action": "cancel"})):
        resp = await env.client.post(f"{base}/{field}", json=body, headers=headers)
        assert resp.status == 422, (field, body)
    resp = await env.client.post("/api/v1/calls/C-100/captures", headers=headers,
                                 json={"fields": ["iban"], "optional": ["cvv"]})
    assert resp.status == 422
    assert env.captures.controls == []


async def test_another_agents_call_is_not_found(env: WebEnv) -> None:
    anna = await env.login("anna")
    capture_id = await _capture(env, anna)
    ben = await env.login("ben")
    resp = await env.client.post(f"/api/v1/calls/C-100/captures/{capture_id}/fields/expiry",
                                 json={"action": "cancel"}, headers=ben)
    assert resp.status == 404
    assert env.captures.controls == []
