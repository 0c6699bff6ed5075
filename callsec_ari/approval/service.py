"""The approval service: the API's ``request`` / ``get`` and the flow's service commands.

``request``: the call must be connected, no capture or approval running, its caller verified
(the customer ref is the verified one) and not locked out. A fresh code (``verification/
codes.py``: uniform, ``[approval] code_ttl_seconds``, one success) is sent with the terms by
SMS to the customer's code phone (else by e-mail) through the verification's delivery backends,
counted against the customer's and the caller's send limits (``store/abuse.py``). The pending
row is written, ``approval.requested`` audited, then the call's flow steers the caller.

``CheckApprovalCode``: the terms are read back from the row and their digest compared with the
one the code was issued for (a changed row cannot be approved with the code), then the code is
checked; every check counts against the customer's and the caller's check limits and a wrong
one towards the customer's wrong-code lockout, as verification codes do. ``FinishApproval``
signs the record (HMAC-SHA256 under a key derived from the audit key), stores it, audits
``approval.finished`` and emits ``approval.finished`` to the webhooks. The code lives in process
memory only, for the life of the approval; it is never logged or stored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import select

from callsec_ari.access.models import UserRow
from callsec_ari.access.users import endpoint_name
from callsec_ari.approval import flow as af
from callsec_ari.approval.errors import (
    ApprovalDeliveryFailed,
    ApprovalNotFound,
    ApprovalNotPossible,
)
from callsec_ari.approval.messages import render_approval_message
from callsec_ari.approval.record import Terms, record_key, sign_record, terms_digest
from callsec_ari.capture import protocol as cp
from callsec_ari.capture.handlers import active_capture
from callsec_ari.capture.protocol import new_capture_id
from callsec_ari.capture.service import CaptureFeature
from callsec_ari.config import Settings
from callsec_ari.connect.flow import ConnectFlow, K
from callsec_ari.core.errors import InvalidInput
from callsec_ari.core.events import ApprovalChecked, Event
from callsec_ari.core.ports import CallDirectory, CallHandle, ServiceRegistry
from callsec_ari.store.abuse import Bucket
from callsec_ari.store.approvals import ApprovalRow
from callsec_ari.store.context import Store
from callsec_ari.verification.codes import CheckResult, OneTimeCode
from callsec_ari.verification.confirm import ConfirmationService
from callsec_ari.verification.delivery.base import DeliveryFailed, Kind, OutgoingMessage
from callsec_ari.verification.delivery.factory import Deliveries
from callsec_ari.verification.limits import (
    AbuseStore,
    LockoutPolicy,
    caller_subject,
    customer_subject,
)
from callsec_ari.verification.messages import call_reference

log = logging.getLogger(__name__)
_KEEP = 200
#: Seconds beyond code TTL + entry timeout after which a pending approval is dead.
STALE_SLACK = 60


class Notifier(Protocol):
    """The webhooks' port (``callsec_ari/webhooks/port.py``: ``WebhookNotifier``)."""

    def emit(self, event_type: str, call_id: str, payload: Mapping[str, object]) -> None: ...


@dataclass(eq=False)
class Pending:
    code: OneTimeCode
    digest: str
    call_id: str
    customer_ref: str
    caller: str


def new_approval_id() -> str:
    return "AP-" + new_capture_id()[3:]


def record_of(row: ApprovalRow) -> dict[str, Any]:
    """The signed fields of a decided approval."""
    return {"approval_id": row.approval_id, "call_id": row.call_id,
            "customer_ref": row.customer_ref, "amount": row.amount, "currency": row.currency,
            "payee": row.payee, "digest": row.digest, "requested_by": row.requested_by,
            "result": row.result, "reason": row.reason or "",
            "created_at": _iso(row.created_at), "decided_at": _iso(row.decided_at)}


def _iso(when: datetime | None) -> str | None:
    if when is None:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).isoformat(timespec="seconds")


class ApprovalFeature:
    def __init__(self, settings: Settings, store: Store, dispatcher: CallDirectory,
                 deliveries: Deliveries, limits: AbuseStore, captures: CaptureFeature,
                 notifier: Notifier | None = None) -> None:
        self.settings = settings
        self.a = settings.approval
        self.store = store
        self.dispatcher = dispatcher
        self.deliveries = deliveries
        self.limits = limits
        self.captures = captures
        self.notifier = notifier
        v = settings.verification
        self.wrong_codes = LockoutPolicy(failures=v.lockout_wrong_codes,
                                         window=v.lockout_window_seconds, lockout=v.lockout_seconds)
        self._key = record_key(store.keyring.audit_key())
        self._pending: dict[str, Pending] = {}
        #: one-time link / SMS reply to approve without typing (set by the app; #18.7)
        self.confirmations: ConfirmationService | None = None

    @property
    def currencies(self) -> tuple[str, ...]:
        return self.a.currencies

    def register(self, executor: ServiceRegistry) -> None:
        executor.register(af.MuteForApproval, self.mute)
        executor.register(af.CheckApprovalCode, self.check)
        executor.register(af.FinishApproval, self.finish)

    # -- request (the API) -------------------------------------------------------------------
    def _connected(self, call: CallHandle) -> tuple[ConnectFlow, str]:
        flow = call.flow
        if not isinstance(flow, ConnectFlow) or flow.state is not K.CONNECTED \
                or flow.o.captures is None:
            raise ApprovalNotPossible("approvals need a connected call with captures",
                                      details={"call_id": call.call_id, "reason": "not_connected"})
        if active_capture(call) is not None:
            raise ApprovalNotPossible("a capture or approval is running on this call",
                                      details={"call_id": call.call_id, "reason": "busy"})
        ref = flow.verification.verified_customer
        if not ref:
            raise ApprovalNotPossible("the caller is not verified", details={
                "call_id": call.call_id, "reason": "not_verified"})
        return flow, ref

    async def request(self, call: CallHandle, terms: Terms, *, actor: str) -> str:
        flow, ref = self._connected(call)
        approval_id = new_approval_id()
        now = time.time()
        code = OneTimeCode.issue(now, digits=self.a.code_digits, ttl=self.a.code_ttl_seconds,
                                 max_checks=self.a.max_attempts, max_sends=1)
        digest = terms_digest(terms, call.call_id)
        caller = caller_subject(flow.verification.caller_number,
                                self.settings.verification.default_region)
        await self._send(call, ref, caller, flow.verification.language, code, terms,
                         approval_id=approval_id)
        closed = await asyncio.to_thread(self._save_requested, approval_id, call, ref, terms,
                                         digest, actor)
        for record in closed:
            self._emit("approval.finished", str(record["call_id"]), record)
        self._pending[approval_id] = Pending(code, digest, call.call_id, ref, caller)
        while len(self._pending) > _KEEP:
            self._pending.pop(next(iter(self._pending))).code.discard()
        self.dispatcher.post(call.call_id, af.ApprovalRequested(
            approval_id=approval_id, requested_by=actor, at=asyncio.get_running_loop().time()))
        call.log.info("approval %s requested by %s; code sent", approval_id, actor)
        self._emit("approval.requested", call.call_id, {"approval_id": approval_id,
                                                        "customer_ref": ref})
        return approval_id

    async def _send(self, call: CallHandle, ref: str, caller: str, language: str,
                    code: OneTimeCode, terms: Terms, *, approval_id: str = "") -> None:
        v = self.settings.verification
        over = await asyncio.to_thread(lambda: self.limits.take([
            Bucket("send", customer_subject(ref), v.customer_code_sends_per_hour),
            Bucket("send", caller, v.caller_code_sends_per_hour)], time.time()).over)
        locked = await asyncio.to_thread(self._locked, ref)
        if over or locked:
            raise ApprovalNotPossible("the customer is locked out or over a send limit",
                                      details={"call_id": call.call_id, "reason": "limited"})
        customer = await asyncio.to_thread(self.store.customers.get, ref)
        kind: Kind = "sms" if customer.code_phone is not None else "email"
        to = customer.code_phone.number if customer.code_phone is not None \
            else (customer.email or "")
        call_ref = call_reference(call.call_id)
        subject, body = render_approval_message(
            language, kind, code.code, terms, call_ref, datetime.now(UTC), v, self.a)
        if self.confirmations is not None and approval_id:
            body = await self.confirmations.with_lines(
                call, body, kind, customer_ref=ref, language=language, to=to,
                methods=self.settings.policy(None).methods, approval_id=approval_id,
                ttl_seconds=float(self.a.code_ttl_seconds),
                terms=f"{terms.amount} {terms.currency}\n{terms.payee}")
        try:
            await self.deliveries.for_kind(kind).send(OutgoingMessage(
                to=to, body=body, kind=kind, call_ref=call_ref, subject=subject))
        except (DeliveryFailed, InvalidInput) as exc:
            reason = exc.reason if isinstance(exc, DeliveryFailed) else "invalid_recipient"
            call.log.warning("approval code delivery by %s failed: %s", kind, reason)
            raise ApprovalDeliveryFailed("the approval message could not be sent",
                                         details={"reason": reason}) from None

    def _locked(self, ref: str) -> bool:
        now = time.time()
        failures = self.limits.failures(customer_subject(ref), now - self.wrong_codes.horizon)
        return self.wrong_codes.is_locked(failures, now)

    def _save_requested(self, approval_id: str, call: CallHandle, ref: str, terms: Terms,
                        digest: str, actor: str) -> list[dict[str, Any]]:
        """Write the pending row (and close stale ones: their records are returned)."""
        closed = self._close_stale(datetime.now(UTC))
        with self.store.db.session() as s:
            s.add(ApprovalRow(approval_id=approval_id, call_id=call.call_id, customer_ref=ref,
                              amount=terms.amount, currency=terms.currency, payee=terms.payee,
                              digest=digest, requested_by=actor))
            name = endpoint_name(call.context.agent_endpoint)
            user = s.scalar(select(UserRow.name).where(UserRow.endpoint == name)) \
                if name else None
            self.store.audit.append(actor, "approval.requested", approval_id, {
                "call_id": call.call_id, "customer_ref": ref, "digest": digest,
                **({"agent_user": user} if user else {})}, session=s)
        return closed

    # -- flow commands -----------------------------------------------------------------------
    async def mute(self, call: CallHandle, cmd: af.MuteForApproval) -> Sequence[Event]:
        count = await self.captures.mute_leg(call, "caller", cmd.mute)
        call.log.info("approval %s: recordings of the caller %s: %d", cmd.approval_id,
                      "muted" if cmd.mute else "unmuted", count)
        return [cp.RecordingMuted(mute=cmd.mute, count=count,
                                  at=asyncio.get_running_loop().time())]

    async def check(self, call: CallHandle, cmd: af.CheckApprovalCode) -> Sequence[Event]:
        try:
            candidate = cmd.candidate.reveal()
        finally:
            cmd.candidate.wipe()
        result = await asyncio.to_thread(self._check_sync, call, cmd.approval_id, candidate,
                                         time.time())
        call.log.info("approval %s: code check %s", cmd.approval_id, result)
        return [ApprovalChecked(approval_id=cmd.approval_id, result=result,
                                   at=asyncio.get_running_loop().time())]

    def _check_sync(self, call: CallHandle, approval_id: str, candidate: str,
                    now: float) -> str:
        pending = self._pending.get(approval_id)
        if pending is None or pending.call_id != call.call_id:
            return "used"
        with self.store.db.session() as s:
            row = s.get(ApprovalRow, approval_id)
            if row is None or row.result is not None:
                return "used"
            terms = Terms(amount=row.amount, currency=row.currency, payee=row.payee)
            if terms_digest(terms, row.call_id) != pending.digest:
                return "terms_changed"
        outcome = pending.code.check(candidate, now)
        if outcome in (CheckResult.USED, CheckResult.EXPIRED, CheckResult.EXHAUSTED):
            return outcome.value
        v = self.settings.verification
        subject = customer_subject(pending.customer_ref)
        wrong = outcome is not CheckResult.OK
        taken = self.limits.take([
            Bucket("check", subject, v.customer_code_checks_per_hour),
            Bucket("check", pending.caller, v.caller_code_checks_per_hour),
        ], now, failures_of=subject, failed=wrong, since=now - self.wrong_codes.horizon)
        if taken.over or (wrong and self.wrong_codes.is_locked(taken.failures, now + 0.001)):
            return "locked"
        return "ok" if not wrong else "wrong"

    async def finish(self, call: CallHandle, cmd: af.FinishApproval) -> Sequence[Event]:
        pending = self._pending.pop(cmd.approval_id, None)
        if pending is not None:
            pending.code.discard()
        record = await asyncio.to_thread(self._finish_sync, cmd)
        call.log.info("approval %s ended: %s%s", cmd.approval_id, cmd.result,
                      f" ({cmd.reason})" if cmd.reason else "")
        if record is not None:
            self._emit("approval.finished", call.call_id, record)
        return ()

    def _finish_sync(self, cmd: af.FinishApproval) -> dict[str, Any] | None:
        with self.store.db.session() as s:
            row = s.get(ApprovalRow, cmd.approval_id)
            if row is None or row.result is not None:
                return None
            row.result, row.reason = cmd.result, cmd.reason or None
            row.decided_at = datetime.now(UTC).replace(microsecond=0)
            record = record_of(row)
            row.signature = sign_record(record, self._key)
            self.store.audit.append("system", "approval.finished", cmd.approval_id, {
                "call_id": row.call_id, "customer_ref": row.customer_ref,
                "result": cmd.result, "reason": cmd.reason, "digest": row.digest,
                "signature": row.signature}, session=s)
            return {**record, "signature": row.signature}

    def _close_stale(self, now: datetime) -> list[dict[str, Any]]:
        """Approvals still pending long after their code and entry could have ended (their
        process died; the code lived in its memory only) end as ``failed``, ``interrupted``:
        signed, audited and emitted like any other. Safe with several nodes: no approval on
        any node can still be running by then."""
        horizon = now - timedelta(seconds=self.a.code_ttl_seconds + self.a.entry_timeout_seconds
                                  + STALE_SLACK)
        with self.store.db.session() as s:
            stale = list(s.scalars(select(ApprovalRow.approval_id).where(
                ApprovalRow.result.is_(None), ApprovalRow.created_at < horizon).limit(50)))
        closed = []
        for approval_id in stale:
            record = self._finish_sync(af.FinishApproval(
                approval_id=approval_id, result="failed", reason="interrupted"))
            if record is not None:
                log.warning("approval %s closed as failed (interrupted)", approval_id,
                            extra={"call_id": record["call_id"]})
                closed.append(record)
        return closed

    def _emit(self, event_type: str, call_id: str, payload: Mapping[str, object]) -> None:
        if self.notifier is not None:
            self.notifier.emit(event_type, call_id, payload)

    # -- the web layer -----------------------------------------------------------------------
    async def get(self, approval_id: str) -> tuple[dict[str, Any], str | None]:
        """The approval as the agent sees it, and the endpoint of the call's agent."""
        found = await asyncio.to_thread(self._load, approval_id)
        if found is None:
            raise ApprovalNotFound("no such approval", details={"approval_id": approval_id})
        return found

    def _load(self, approval_id: str) -> tuple[dict[str, Any], str | None] | None:
        with self.store.db.session() as s:
            row = s.get(ApprovalRow, approval_id)
            if row is None:
                return None
            endpoint = None
            for entry in self.store.audit.for_target(approval_id, session=s):
                user = entry.details.get("agent_user")
                if entry.action == "approval.requested" and isinstance(user, str):
                    endpoint = s.scalar(select(UserRow.endpoint).where(UserRow.name == user))
            call = self.dispatcher.get(row.call_id)
            if call is not None:
                endpoint = call.context.agent_endpoint or endpoint
            return {"approval_id": row.approval_id, "call_id": row.call_id,
                    "status": row.result or "pending", "amount": row.amount,
                    "currency": row.currency, "payee": row.payee,
                    "created_at": _iso(row.created_at),
                    "decided_at": _iso(row.decided_at)}, endpoint
