"""Outside review of #14 point 6 (HTTP API behind a trusted proxy): the per-address login
limit cannot be escaped by rotating IPv6 addresses. One subscriber gets a whole /64 (2^64
addresses), so a password spray across many user names from a new address each time would
never meet the per-address limit; IPv6 clients are counted per /64 (IPv4 per address)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_staff_login import attempt, good_login
from tests.integration.web_env import web_env

pytestmark = pytest.mark.asyncio


async def test_a_spray_from_rotating_ipv6_addresses_of_one_prefix_is_rate_limited(
        tmp_path: Path) -> None:
    async with web_env(tmp_path, "trusted_proxies = 127.0.0.1/32\n") as env:
        for n in range(25):
            resp = await attempt(env, f"guess{n}", forwarded=f"2001:db8:1:2::{n + 1:x}")
            assert resp.status in (401, 429)
        assert resp.status == 429 and (await resp.json())["error_id"] == "rate_limited"
        resp = await good_login(env, "anna", forwarded="2001:db8:1:2:a:b:c:d")
        assert resp.status == 429  # anywhere in the attacker's /64
        resp = await good_login(env, "anna", forwarded="2001:db8:1:3::1")
        assert resp.status == 200, await resp.text()  # the next /64 is someone else
