"""The verified customer's display name and verification method go to the agent who handles
the call (issue #18; permission ``calls.customer_name``, scope own), in ``GET /api/v1/calls``
and the SSE snapshot: not to a supervisor watching the call, not for an unverified call."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from callsec_ari.web.customer import NameCache
from tests.integration.web_env import WebEnv, web_env

NAME = "Erika Mustermann"


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[WebEnv]:
    async with web_env(tmp_path) as e:
        looked_up: list[str] = []

        def lookup(ref: str) -> str:
            looked_up.append(ref)
            return NAME
        e.deps.customer_names = NameCache(lookup)
        e.looked_up = looked_up  # type: ignore[attr-defined]
        call = e.start_call("C-200", "agent100", customer_ref="CU-7")
        call.flow.method = "sms"  # type: ignore[attr-defined]
        e.start_call("C-201", "agent100", customer_ref="CU-8", verification="failed")
        yield e


async def calls_of(env: WebEnv, user: str) -> dict[str, dict[str, Any]]:
    resp = await env.client.get("/api/v1/calls", headers=await env.login(user))
    assert resp.status == 200
    return {c["call_id"]: c for c in (await resp.json())["calls"]}


async def test_the_handling_agent_sees_the_verified_customers_name_and_method(
        env: WebEnv) -> None:
    calls = await calls_of(env, "anna")
    assert calls["C-200"]["customer"] == {"name": NAME, "method": "sms"}
    assert calls["C-201"]["customer"] is None  # not verified: no name
    assert calls["C-100"]["customer"] is None  # verified, no customer on record
    await calls_of(env, "anna")
    assert env.looked_up == ["CU-7"]  # type: ignore[attr-defined]  # once per call


async def test_the_sse_snapshot_names_the_customer_to_the_handling_agent(env: WebEnv) -> None:
    resp = await env.client.get("/api/v1/calls/C-200/events", headers=await env.login("anna"))
    assert resp.status == 200
    frame = (await resp.content.readuntil(b"\n\n")).decode()
    resp.close()
    data = json.loads(frame.split("data: ", 1)[1])
    assert data["customer"] == {"name": NAME, "method": "sms"}


async def test_a_supervisor_watching_the_call_does_not_see_the_name(env: WebEnv) -> None:
    calls = await calls_of(env, "sven")
    assert "C-200" in calls and calls["C-200"]["customer"] is None
    assert env.looked_up == []  # type: ignore[attr-defined]
