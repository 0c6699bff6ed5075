"""The approval service with a real SQLite store: the message, the pending row and audit, the
code check bound to the stored terms (a changed row cannot be approved), expiry, one success,
the wrong-code lockout shared with verification, the signed record and the webhook event."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from callsec_ari.approval import flow as af
from callsec_ari.approval.errors import ApprovalNotPossible
from callsec_ari.approval.record import Terms, record_key, verify_record
from callsec_ari.approval.service import ApprovalFeature, record_of
from callsec_ari.capture.service import CaptureFeature
from callsec_ari.capture.sinks import VaultSink
from callsec_ari.config import Settings
from callsec_ari.config_check import load_settings
from callsec_ari.connect.flow import ConnectFlow, K
from callsec_ari.core.digits import SensitiveDigits
from callsec_ari.core.events import CallStarted
from callsec_ari.core.ports import CallContext, CallHandle
from callsec_ari.flows import FlowRegistry
from callsec_ari.logs import call_logger
from callsec_ari.runtime.dispatcher import Dispatcher
from callsec_ari.runtime.executor import CallExecutor
from callsec_ari.store.abuse import DbAbuseStore
from callsec_ari.store.approvals import ApprovalRow
from callsec_ari.store.context import Store, init_keys, open_store
from callsec_ari.store.customer_types import CustomerData, Name, Phone
from callsec_ari.verification.delivery.base import DeliveryReceipt, OutgoingMessage
from callsec_ari.verification.delivery.factory import Deliveries

MOBILE = "+4915112345678"
TERMS = Terms(amount="49.90", currency="EUR", payee="ACME Energy")


class Outbox:
    def __init__(self) -> None:
        self.sent: list[OutgoingMessage] = []

    async def send(self, message: OutgoingMessage) -> DeliveryReceipt:
        self.sent.append(message)
        return DeliveryReceipt(backend="test", message_id=str(len(self.sent)), attempts=1,
                               elapsed=0.0)


class Hooks:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, object]]] = []

    def emit(self, event_type: str, call_id: str, payload: Mapping[str, object]) -> None:
        self.events.append((event_type, call_id, dict(payload)))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    config = tmp_path / "callsec.conf"
    config.write_text(f"[database]\nurl = sqlite:///{tmp_path / 'callsec.db'}\n"
                      f"[crypto]\nkeyring_dir = {tmp_path / 'keys'}\n"
                      "[verification]\nlockout_wrong_codes = 3\ncompany_name = Musterbank\n",
                      encoding="utf-8")
    loaded = load_settings(config, env={})
    init_keys(loaded)
    return loaded


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    opened = open_store(settings)
    yield opened
    opened.close()


class World:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.outbox, self.hooks = Outbox(), Hooks()
        self.ref = store.customers.create(CustomerData(
            name=Name(full="Paula Payer"), phones=(Phone(MOBILE, receives_codes=True),))).ref
        dispatcher = Dispatcher(CallExecutor())
        captures = CaptureFeature(store, dispatcher, VaultSink(store.vault, "DE"))
        self.feature = ApprovalFeature(
            settings, store, dispatcher, Deliveries(sms=self.outbox, email=self.outbox),
            DbAbuseStore(store.db, store.keyring.blind_index_key()), captures,
            notifier=self.hooks)
        self.store = store

    def call(self, verified: bool = True) -> CallHandle:
        flow = FlowRegistry(load_settings(None, env={})).connect(
            "call-1", CallStarted(flow="connect", args=("PJSIP/agent100",)))
        assert isinstance(flow, ConnectFlow)
        flow.adopt(result="verified" if verified else "failed",
                   customer_ref=self.ref, language="en")
        assert flow.state is K.CONNECTED
        return CallHandle(call_id="call-1", flow=flow,
                          log=call_logger(logging.getLogger("test"), "call-1"),
                          context=CallContext(channel_name="PJSIP/pstn-1",
                                              endpoints={"agent": "PJSIP/agent100"}))

    def code(self) -> str:
        return next(w for w in self.outbox.sent[-1].body.split() if w.isdigit() and len(w) == 6)

    def check(self, call: CallHandle, approval_id: str, code: str, now: float) -> str:
        return self.feature._check_sync(call, approval_id, code, now)

    def row(self, approval_id: str) -> dict[str, Any]:
        with self.store.db.session() as s:
            row = s.get(ApprovalRow, approval_id)
            assert row is not None
            return {**record_of(row), "signature": row.signature}


@pytest.fixture
def world(settings: Settings, store: Store) -> World:
    return World(settings, store)


async def test_request_sends_amount_payee_company_to_the_code_phone_and_audits(
        world: World) -> None:
    approval_id = await world.feature.request(world.call(), TERMS, actor="anna")
    message = world.outbox.sent[-1]
    assert message.to == MOBILE and message.kind == "sms"
    for part in ("49.90 EUR", "ACME Energy", "Musterbank", world.code()):
        assert part in message.body
    assert world.row(approval_id)["result"] is None
    with world.store.db.session() as s:
        actions = [e.action for e in world.store.audit.for_target(approval_id, session=s)]
    assert actions == ["approval.requested"]
    assert world.hooks.events[0][0] == "approval.requested"


async def test_right_code_once_then_signed_record_and_webhook(world: World) -> None:
    call = world.call()
    approval_id = await world.feature.request(call, TERMS, actor="anna")
    code, now = world.code(), time.time()
    assert world.check(call, approval_id, "000000" if code != "000000" else "111111",
                       now) == "wrong"
    assert world.check(call, approval_id, code, now) == "ok"
    assert world.check(call, approval_id, code, now) == "used"  # one success only
    await world.feature.finish(call, af.FinishApproval(approval_id=approval_id,
                                                       result="approved"))
    row = world.row(approval_id)
    signature = row.pop("signature")
    key = record_key(world.store.keyring.audit_key())
    assert row["result"] == "approved" and verify_record(row, signature, key)
    assert not verify_record({**row, "amount": "4990.00"}, signature, key)
    kind, call_id, payload = world.hooks.events[-1]
    assert (kind, call_id, payload["signature"], payload["amount"]) == (
        "approval.finished", "call-1", signature, "49.90")
    assert world.check(call, approval_id, code, now) == "used"  # after the end too


async def test_a_changed_row_cannot_be_approved_with_the_code(world: World,
                                                              settings: Settings) -> None:
    call = world.call()
    approval_id = await world.feature.request(call, TERMS, actor="anna")
    path = str(settings.database.url).removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        db.execute("UPDATE approvals SET amount = '4990.00' WHERE approval_id = ?",
                   (approval_id,))
    assert world.check(call, approval_id, world.code(),
                       time.time()) == "terms_changed"


async def test_late_code_is_refused(world: World, settings: Settings) -> None:
    call = world.call()
    approval_id = await world.feature.request(call, TERMS, actor="anna")
    late = time.time() + settings.approval.code_ttl_seconds + 1
    assert world.check(call, approval_id, world.code(), late) == "expired"


async def test_wrong_codes_lock_the_customer_for_approvals_too(world: World) -> None:
    call = world.call()
    results = []
    for _ in range(3):
        approval_id = await world.feature.request(call, TERMS, actor="anna")
        wrong = "123456" if world.code() != "123456" else "654321"
        results.append(world.check(call, approval_id, wrong, time.time()))
        await world.feature.finish(call, af.FinishApproval(approval_id=approval_id,
                                                           result="failed"))
    assert results == ["wrong", "wrong", "locked"]
    with pytest.raises(ApprovalNotPossible):
        await world.feature.request(call, TERMS, actor="anna")


async def test_an_unverified_caller_gets_no_approval(world: World) -> None:
    with pytest.raises(ApprovalNotPossible):
        await world.feature.request(world.call(verified=False), TERMS, actor="anna")
    assert world.outbox.sent == []


def test_candidate_holder_is_wiped_after_the_check() -> None:
    holder = SensitiveDigits(6)
    for d in "123456":
        holder.append(d)
    assert "123456" not in repr(af.CheckApprovalCode(approval_id="AP-x", candidate=holder))


async def test_an_approval_left_pending_by_a_dead_process_ends_failed_and_signed(
        world: World, settings: Settings) -> None:
    call = world.call()
    dead = await world.feature.request(call, TERMS, actor="anna")
    world.feature._pending.clear()  # the process that sent its code is gone
    path = str(settings.database.url).removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        db.execute("UPDATE approvals SET created_at = '2026-01-01 00:00:00.000000' "
                   "WHERE approval_id = ?", (dead,))
    await world.feature.request(call, TERMS, actor="anna")
    row = world.row(dead)
    signature = row.pop("signature")
    assert (row["result"], row["reason"]) == ("failed", "interrupted")
    assert verify_record(row, signature, record_key(world.store.keyring.audit_key()))
    assert ("approval.finished", "call-1") in [(k, c) for k, c, _ in world.hooks.events]
