"""Outside review of #14 point 8: no card number reaches the audit trail through an entry's
details (not its target). The reveal's free-text reason is kept in the audit (append-only, kept
for years); a card number glued to a word or after punctuation (``Karte:4111...``,
``Nr.5500...``, ``ref-4012...``) must be blanked like a free-standing one. HTTP API."""

from __future__ import annotations

import re

import pytest

from callsec_ari.store.models import AuditRow
from tests.integration.test_web_api import env as env  # the fixture
from tests.integration.web_env import WebEnv

pytestmark = pytest.mark.asyncio

CARDS = ("4111111111111111", "5500000000000004", "4012888888881881", "378282246310005")


async def test_card_numbers_in_a_reveal_reason_are_not_stored_in_the_audit(
        env: WebEnv) -> None:
    headers = await env.login("sven")
    reason = (f"Karte:{CARDS[0]} Nr.{CARDS[1]} ref-{CARDS[2]} Amex{CARDS[3]}EUR "
              f"card_{CARDS[0][:4]}_{CARDS[0][4:8]}_{CARDS[0][8:12]}_{CARDS[0][12:]}")
    resp = await env.client.post("/api/v1/captures/CAP-1/reveal", headers=headers,
                                 json={"reason": reason, "otp": env.code("sven")})
    assert resp.status == 200
    with env.store.db.session() as s:
        stored = " ".join(f"{r.target} {r.details}" for r in s.query(AuditRow).all())
    compact = re.sub(r"[ _.\-]", "", stored)
    for card in CARDS:
        assert card not in compact, card
    assert "Karte:" in stored and "Nr." in stored  # the reason itself is kept
