"""The verification service: carries out the flow's service commands.

``LookupCustomer`` (blind-index search, lockout, per-caller rate limit), ``DeliverCode`` (the
message bound to the call, through the configured SMS / e-mail backend), ``CheckTotp``
(authenticator apps, replay-protected), ``RecordVerification`` (encrypted record + audit
entry; with the database down, written later by :mod:`callsec_ari.verification.late`) and
``Publish`` (masked progress for the desk). Blocking store calls run in worker threads.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from callsec_ari.config import Settings
from callsec_ari.core.errors import CallsecError, InvalidInput, Unavailable
from callsec_ari.core.events import Event
from callsec_ari.logs import last_digits
from callsec_ari.runtime.dispatcher import CallHandle
from callsec_ari.runtime.executor import CallExecutor
from callsec_ari.store.context import Store
from callsec_ari.store.customers import Customer
from callsec_ari.verification import protocol as p
from callsec_ari.verification.codes import match_totp
from callsec_ari.verification.delivery.base import DeliveryFailed, Kind, OutgoingMessage
from callsec_ari.verification.delivery.factory import Deliveries
from callsec_ari.verification.late import LateRecords
from callsec_ari.verification.limits import LockoutPolicy, RateLimiter
from callsec_ari.verification.messages import call_reference, render_code_message

log = logging.getLogger(__name__)
FAILURES = ("failed", "locked")


def customer_view(customer: Customer, locked: bool) -> p.CustomerView:
    phone = customer.code_phone
    return p.CustomerView(
        ref=customer.ref, language=customer.language,
        preferred_method=customer.preferred_method, has_mobile=phone is not None,
        has_email=bool(customer.email), has_totp=bool(customer.totp_secret),
        mobile_tail=last_digits(phone.number, 2) if phone else "", locked=locked)


class VerificationService:
    def __init__(self, settings: Settings, store: Store, deliveries: Deliveries,
                 late: LateRecords) -> None:
        v = settings.verification
        #: results the database could not take when their call finished (run by the app)
        self.late = late
        self.settings = settings
        self.store = store
        self.deliveries = deliveries
        self.lockout = LockoutPolicy(failures=v.lockout_failures, window=v.lockout_window_seconds,
                                     lockout=v.lockout_seconds)
        self.rate = RateLimiter(v.caller_rate_limit_per_hour, 3600.0)
        self._rate_key = hashlib.sha256(b"callsec-rate" + store.keyring.blind_index_key()).digest()
        self._totp_steps: dict[str, int] = {}

    def register(self, executor: CallExecutor) -> None:
        executor.register(p.LookupCustomer, self.lookup)
        executor.register(p.DeliverCode, self.deliver)
        executor.register(p.CheckTotp, self.check_totp)
        executor.register(p.RecordVerification, self.record)

    # -- lookup -----------------------------------------------------------------------------
    async def lookup(self, call: CallHandle, cmd: p.LookupCustomer) -> Sequence[Event]:
        now = time.time()
        at = asyncio.get_running_loop().time()
        if cmd.caller_number:
            key = hmac.new(self._rate_key, cmd.caller_number.encode(), "sha256").hexdigest()
            if not self.rate.allow(key, now):
                call.log.warning("caller number over its rate limit; verification refused")
                return [p.CustomerResult(customer=None, rate_limited=True, at=at)]
        view = await asyncio.to_thread(self._lookup_sync, cmd.by, cmd.value, now)
        if view is None:
            call.log.info("no customer found by %s", cmd.by)
        else:
            call.data["customer_ref"] = view.ref
            call.log.info("customer %s found by %s%s", view.ref, cmd.by,
                          " (locked out)" if view.locked else "")
        await self._open_record(call, cmd, view)
        return [p.CustomerResult(customer=view, at=asyncio.get_running_loop().time())]

    async def _open_record(self, call: CallHandle, cmd: p.LookupCustomer,
                           view: p.CustomerView | None) -> None:
        """The attempt is on record from its first look-up on (closed by ``record``), so a
        callsec that dies mid-verification leaves an open record. A record of this call still
        open at its first look-up in this process is such a dead process's attempt (call ids
        are channel ids): it is closed as ``error``, reason ``interrupted``. A store failure
        here is logged; the verification goes on and ``record`` writes the row at the end."""
        first = "verification_opened" not in call.data
        call.data["verification_opened"] = True
        try:
            if first:
                closed = await asyncio.to_thread(self._close_interrupted_sync, call.call_id)
                if closed:
                    call.log.warning("closed %d verification record(s) a previous callsec "
                                     "left open: error, interrupted", len(closed))
            if view is not None and "verification_id" not in call.data:
                call.data["verification_id"] = await asyncio.to_thread(
                    self.store.records.start_verification, call.call_id,
                    caller_number=cmd.caller_number or None, customer_ref=view.ref)
        except CallsecError as exc:
            call.log.error("verification record could not be opened: %s", exc.error_id)

    def _close_interrupted_sync(self, call_id: str) -> list[str]:
        def audit(session: Session, vid: str) -> None:
            self.store.audit.append("system", "verification.finished", call_id, {
                "verification_id": vid, "result": "error", "reason": "interrupted"},
                session=session)

        return self.store.records.close_open_verifications(call_id, result="error", audit=audit)

    def _lookup_sync(self, by: str, value: str, now: float) -> p.CustomerView | None:
        customers = self.store.customers
        try:
            if by == "caller_id":
                customer = customers.find_by_phone(value)
            else:
                customer = customers.find_by_customer_number(value)
        except InvalidInput:
            return None  # not a valid number (withheld, malformed): an unknown caller
        if customer is None:
            return None
        since = datetime.fromtimestamp(now - self.lockout.horizon, UTC)
        failures = self.store.records.failure_times(customer.ref, since, FAILURES)
        return customer_view(customer, self.lockout.is_locked(failures, now))

    # -- delivery ---------------------------------------------------------------------------
    async def deliver(self, call: CallHandle, cmd: p.DeliverCode) -> Sequence[Event]:
        customer = await asyncio.to_thread(self.store.customers.get, cmd.customer_ref)
        kind: Kind = "sms" if cmd.method == "sms" else "email"
        to = customer.code_phone.number if kind == "sms" and customer.code_phone else \
            (customer.email or "")
        ref = call_reference(call.call_id)
        subject, body = render_code_message(cmd.language, kind, cmd.code, ref,
                                            datetime.now(UTC), self.settings.verification)
        try:
            message = OutgoingMessage(to=to, body=body, kind=kind, call_ref=ref, subject=subject)
            receipt = await self.deliveries.for_kind(kind).send(message)
        except (DeliveryFailed, InvalidInput) as exc:
            reason = exc.reason if isinstance(exc, DeliveryFailed) else "invalid_recipient"
            call.log.warning("code delivery by %s failed: %s", kind, reason)
            await asyncio.to_thread(
                self.store.audit.append, "system", "verification.delivery_failed", call.call_id,
                {"customer_ref": cmd.customer_ref, "method": kind, "reason": reason})
            return [p.CodeDeliveryFailed(method=kind, reason=reason,
                                         at=asyncio.get_running_loop().time())]
        call.log.info("code %s by %s in %.3fs (%d attempt(s))",
                      "re-sent" if cmd.resend else "sent", receipt.backend, receipt.elapsed,
                      receipt.attempts)
        return [p.CodeDelivered(method=kind, at=asyncio.get_running_loop().time())]

    # -- TOTP ---------------------------------------------------------------------------------
    async def check_totp(self, call: CallHandle, cmd: p.CheckTotp) -> Sequence[Event]:
        customer = await asyncio.to_thread(self.store.customers.get, cmd.customer_ref)
        ok = False
        if customer.totp_secret:
            step = match_totp(customer.totp_secret, cmd.candidate, time.time(),
                              after_step=self._totp_steps.get(customer.ref))
            if step is not None:
                self._totp_steps[customer.ref] = step
                ok = True
        return [p.TotpChecked(ok=ok, at=asyncio.get_running_loop().time())]

    # -- records ------------------------------------------------------------------------------
    async def record(self, call: CallHandle, cmd: p.RecordVerification) -> Sequence[Event]:
        opened, finished = call.data.get("verification_id"), datetime.now(UTC)
        try:
            await asyncio.to_thread(self._record_sync, call.call_id, cmd, opened, finished)
        except CallsecError as exc:
            late = isinstance(exc, Unavailable)
            call.log.error("verification result %s could not be recorded: %s%s", cmd.result,
                           exc.error_id, "; written once the database is back" if late else "")
            if late:
                self.late.add(call.call_id, functools.partial(
                    self._record_sync, call.call_id, cmd, opened, finished, late=True))
            raise
        call.data["verification"] = cmd.result
        return ()

    def _record_sync(self, call_id: str, cmd: p.RecordVerification, opened: str | None,
                     finished: datetime, *, late: bool = False) -> None:
        ref = cmd.customer_ref or None

        def audit(session: Session, vid: str) -> None:
            self.store.audit.append("system", "verification.finished", call_id, {
                "verification_id": vid, "customer_ref": ref, "result": cmd.result,
                "method": cmd.method, "attempts": cmd.checks, "sends": cmd.sends,
                "caller_id_matched": cmd.caller_id_matched,
                **({"recorded_late": True} if late else {})}, session=session)

        # One transaction for the record and its audit entry (was three).
        if opened is not None:
            self.store.records.finish_verification(
                opened, result=cmd.result, attempts=cmd.checks, sends=cmd.sends,
                method=cmd.method, customer_ref=ref, audit=audit, finished_at=finished)
            return
        self.store.records.record_verification(
            call_id, caller_number=cmd.caller_number or None, customer_ref=ref,
            method=cmd.method, result=cmd.result, attempts=cmd.checks, sends=cmd.sends,
            audit=audit, finished_at=finished)
