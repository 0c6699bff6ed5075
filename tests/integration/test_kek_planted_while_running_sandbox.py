"""Outside review of #14 point 1: a KEK that appears in the key ring while ``callsec run`` runs
(a file nobody created with ``keys init`` or ``keys rotate``) is not used for new data keys.
The key ring looks for new KEK versions every second and wraps new data keys with the newest;
the fingerprint check at start cannot see one planted later. Real SIP call (B's carrier calls
A's 2100, the agent asks for an IBAN over the HTTP API)."""

from __future__ import annotations

import asyncio
import base64
import os
import sqlite3
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest

from tests.harness.agent import AgentPhones
from tests.harness.carrier import Carrier
from tests.harness.sandbox import Sandbox
from tests.integration.capture_env import (
    Product,
    connected_call,
    german_iban_digits,
    running_product,
    type_fields,
)

pytestmark = pytest.mark.sandbox


@pytest.fixture(scope="module")
async def product(sandbox: Sandbox) -> AsyncIterator[Product]:
    async with running_product("kek-planted") as running:
        yield running


def kek_versions(product: Product) -> set[int]:
    with sqlite3.connect(product.workdir / "callsec.db") as db:
        return {int(v) for (v,) in db.execute("SELECT DISTINCT kek_version FROM keys")}


async def test_a_kek_planted_while_callsec_runs_wraps_no_new_data_key(
        product: Product, carrier: Carrier, agents: AgentPhones, ari_a: aiohttp.ClientSession,
        register_secret: Callable[[str], None]) -> None:
    assert kek_versions(product) == {1}
    planted = product.workdir / "keys" / "kek-0002.key"
    fd = os.open(planted, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(base64.b64encode(os.urandom(32)).decode() + "\n")
    await asyncio.sleep(2.5)  # the key ring has looked again
    iban_digits = german_iban_digits()
    register_secret(iban_digits)
    async with connected_call(product.desk, carrier, agents, ari_a, product.sse_dir) as live:
        capture_id = await product.desk.request_capture(live.call_id, ["iban"])
        await type_fields(live, capture_id, [("iban", iban_digits)])
        try:
            await asyncio.wait_for(live.sse.wait_stage(capture_id, "finished"), 20)
        except TimeoutError:
            pass
    assert 2 not in kek_versions(product)
    assert "KEK version 2 is in the key ring but the database never recorded it" in \
        product.proc.log_text()
