"""Fixtures for integration tests against the real-Asterisk sandbox (``tools/sandbox.sh``).

Request ``sandbox`` (or one of the fixtures below, which all depend on it) in any test that
needs Asterisk: the sandbox is started when it is not running; when it cannot start, the
test fails under CI and is skipped elsewhere. Mark such modules ``pytest.mark.sandbox``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.harness.agent import AgentPhones
from tests.harness.carrier import Carrier
from tests.harness.local import LocalCaller
from tests.harness.sandbox import Sandbox, ensure_sandbox


@pytest.fixture(scope="session")
def sandbox() -> Sandbox:
    """Both Asterisk instances are up and answer ARI."""
    return ensure_sandbox()


@pytest.fixture
async def carrier(sandbox: Sandbox) -> AsyncIterator[Carrier]:
    """Places SIP calls from B to A; hangs up whatever is left at the end of the test."""
    async with Carrier(sandbox.b) as sim:
        yield sim


@pytest.fixture
async def agents(sandbox: Sandbox) -> AsyncIterator[AgentPhones]:
    """Answers and records every call to agent100..agent109 (B's app ``agents``)."""
    async with AgentPhones(sandbox.b) as phones:
        yield phones


@pytest.fixture
async def local_caller(sandbox: Sandbox) -> AsyncIterator[LocalCaller]:
    """Places Local-channel calls on A (cheap, no SIP/RTP)."""
    async with LocalCaller(sandbox.a) as caller:
        yield caller


@pytest.fixture
async def ari_a(sandbox: Sandbox) -> AsyncIterator[aiohttp.ClientSession]:
    """A raw aiohttp session on A's ARI (base URL set, basic auth): e.g.
    ``await ari_a.get("/ari/channels/ID/variable", params={"variable": "CALLSEC_RESULT"})``."""
    async with aiohttp.ClientSession(
        base_url=sandbox.a.base_url,
        headers={"Authorization": sandbox.a.basic_auth},
        timeout=aiohttp.ClientTimeout(total=10),
    ) as session:
        yield session
