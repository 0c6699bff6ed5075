"""``[capture] sink = sealed`` on a real SIP call (sandbox): the agent asks for the card over the
HTTP API, the caller types it (RFC 4733), callsec seals each value to the merchant's public key.
The card opens only with the merchant's private key (``examples/merchant_decrypt.py`` run as a
subprocess, as the merchant would); another key opens nothing; the SQLite file, the logs and the
agent's SSE stream hold no card number or CVV; the sealed CVV is never in the database and is
handed over by exactly one ``GET /api/v1/captures/{id}``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import x25519

from tests.harness.agent import AgentPhones
from tests.harness.callsec_proc import REPO
from tests.harness.carrier import Carrier
from tests.harness.sandbox import Sandbox
from tests.integration.capture_checks import find_leaks, sqlite_dump
from tests.integration.capture_env import (
    Product,
    connected_call,
    expiry,
    rare_number,
    running_product,
    type_fields,
    visa,
    workdir,
)

pytestmark = pytest.mark.sandbox
NAME = "capture-sealed"
EXAMPLE = REPO / "examples" / "merchant_decrypt.py"


def _private_pem(key: x25519.X25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture(scope="module")
def merchant_dir() -> Path:
    """The merchant's key pair (the private key stays with the test, callsec gets the public)."""
    path = workdir(NAME) / "merchant"
    path.mkdir(parents=True, exist_ok=True)
    key = x25519.X25519PrivateKey.generate()
    (path / "merchant-key.pem").write_bytes(_private_pem(key))
    (path / "merchant-pub.pem").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    (path / "other-key.pem").write_bytes(_private_pem(x25519.X25519PrivateKey.generate()))
    return path


@pytest.fixture(scope="module")
async def product(sandbox: Sandbox, merchant_dir: Path) -> AsyncIterator[Product]:
    env = {"CALLSEC_CAPTURE__SINK": "sealed",
           "CALLSEC_CAPTURE__SEALED_PUBLIC_KEY": str(merchant_dir / "merchant-pub.pem")}
    async with running_product(NAME, env) as running:
        yield running


def merchant_decrypt(key: Path, sealed: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(EXAMPLE), "--key", str(key), "--json",
                           str(sealed)], capture_output=True, text=True, timeout=60)


async def test_sealed_card_opens_only_with_the_merchants_key_and_callsec_keeps_no_plaintext(
        product: Product, carrier: Carrier, agents: AgentPhones, ari_a: aiohttp.ClientSession,
        register_secret: Callable[[str], None], merchant_dir: Path) -> None:
    card, exp, cvv = visa(), expiry(), rare_number(3)
    register_secret(card)
    desk = product.desk
    async with connected_call(desk, carrier, agents, ari_a, product.sse_dir) as live:
        capture_id = await desk.request_capture(live.call_id, ["card_number", "expiry", "cvv"])
        await type_fields(live, capture_id, [("card_number", card + "#"), ("expiry", exp),
                                             ("cvv", cvv)])
        finished = await live.sse.wait_stage(capture_id, "finished")
        first = await desk.wait_capture(capture_id, "captured")
        again = await desk.capture(capture_id)
        await asyncio.sleep(0.5)
    assert finished["result"] == "captured" and finished["last4"] == card[-4:]
    assert finished["stored_as"] == "sealed"  # what the desk shows
    assert live.agent.dtmf == []

    # what the API answers: sealed envelopes and masked metadata, never a value
    assert first["stored_as"] == "sealed" and first["vault_refs"] == {}
    fields = first["fields"]
    assert fields["card_number"]["last4"] == card[-4:] and fields["card_number"]["brand"] == "visa"
    assert {k for k, v in fields.items() if "sealed" in v} == {"card_number", "expiry", "cvv"}
    assert fields["cvv"]["sealed"]["once"] is True
    assert "sealed" not in again["fields"].get("cvv", {})  # handed over once, then dropped
    assert again["fields"]["card_number"]["sealed"] == fields["card_number"]["sealed"]

    # the merchant's private key opens it; another key opens nothing
    sealed_file = product.workdir / f"{capture_id}.json"
    sealed_file.write_text(json.dumps(first))
    opened = merchant_decrypt(merchant_dir / "merchant-key.pem", sealed_file)
    assert opened.returncode == 0, opened.stderr
    assert json.loads(opened.stdout) == {"capture_id": capture_id, "values": {
        "card_number": card, "expiry": exp, "cvv": cvv}}
    other = merchant_decrypt(merchant_dir / "other-key.pem", sealed_file)
    assert other.returncode == 1 and card not in other.stdout + other.stderr
    sealed_file.unlink()

    # neither the database nor the logs nor the agent's stream hold the card or the CVV
    database = sqlite_dump(product.workdir / "callsec.db")
    blobs = {"database": database, "sse": live.sse.path.read_bytes(),
             "callsec log": product.proc.log_file.read_bytes(),
             "callsec stderr": (product.workdir / "stderr.log").read_bytes()}
    assert find_leaks([card, cvv], blobs) == []
    assert fields["cvv"]["sealed"]["ct"].encode() not in database  # the sealed CVV neither
    assert fields["card_number"]["sealed"]["ct"].encode() in database  # the stored envelope
    stream = live.sse.path.read_bytes()  # the agent's stream: masked progress, no envelope
    assert all(f["sealed"]["ct"].encode() not in stream for f in fields.values())
