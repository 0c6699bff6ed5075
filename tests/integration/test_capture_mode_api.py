"""``POST /api/v1/calls/{id}/captures`` names the capture mode (an addition to the contract):
``"mode": "talk_through" | "bridge"``, optional (absent: ``[capture] mode``), validated, audited."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.web_env import WebEnv, web_env


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[WebEnv]:
    async with web_env(tmp_path) as e:
        yield e


async def test_the_mode_reaches_the_capture_service_and_absent_means_configured(
        env: WebEnv) -> None:
    headers = await env.login("anna")
    for body in ({"fields": ["iban"], "mode": "talk_through"}, {"fields": ["iban"]},
                 {"fields": ["iban"], "mode": "bridge"}):
        resp = await env.client.post("/api/v1/calls/C-100/captures", json=body,
                                     headers=headers)
        assert resp.status == 201, await resp.text()
    assert env.captures.modes == ["talk_through", "", "bridge"]


async def test_an_unknown_mode_is_refused_before_anything_starts(env: WebEnv) -> None:
    headers = await env.login("anna")
    for mode in ("talkthrough", "", 1, None, ["bridge"]):
        body = {"fields": ["iban"], "mode": mode}
        resp = await env.client.post("/api/v1/calls/C-100/captures", json=body,
                                     headers=headers)
        if mode is None:  # JSON null: as if absent
            assert resp.status == 201
            continue
        assert resp.status == 422, mode
        error = await resp.json()
        assert error["error_id"] == "invalid_input" and error["details"]["field"] == "mode"
    assert env.captures.modes == [""]
