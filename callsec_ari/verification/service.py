"""The verification service: carries out the flow's service commands.

``LookupCustomer`` (blind-index search, lockout, per-caller rate limit), ``DeliverCode`` (the
message bound to the call, through the configured SMS / e-mail backend; per-customer and
per-caller send limits), ``CountCheck`` (every compared code counted at once: check limits,
wrong codes towards the lockout), ``CheckTotp`` (authenticator apps, replay-protected in the
database, counted like codes), ``RecordVerification`` (encrypted record + audit entry; with the
database down, written later by :mod:`callsec_ari.verification.late`) and ``Publish`` (masked
progress for the desk). Limits, lockout counts and TOTP steps are kept behind the
:class:`~callsec_ari.verification.limits.AbuseStore` port (in the database: shared by every
node, kept across restarts). Blocking store calls run in worker threads.

With the database down, sends fail closed (as the customer look-up does: ``delivery_failed``)
and so does a TOTP check; a one-time code already sent can still be checked (as its result is
recorded later), its count is then written by :class:`LateRecords` once the database is back.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from callsec_ari.config import Settings
from callsec_ari.core.errors import CallsecError, InvalidInput, Unavailable
from callsec_ari.core.events import Event
from callsec_ari.core.masking import last_digits
from callsec_ari.core.ports import CallHandle, ServiceRegistry
from callsec_ari.store.abuse import Bucket
from callsec_ari.store.context import Store
from callsec_ari.store.customers import Customer
from callsec_ari.store.db import Executor
from callsec_ari.verification import protocol as p
from callsec_ari.verification.codes import match_totp
from callsec_ari.verification.confirm import ConfirmationService
from callsec_ari.verification.delivery.base import DeliveryFailed, Kind, OutgoingMessage
from callsec_ari.verification.delivery.factory import Deliveries
from callsec_ari.verification.late import LateRecords
from callsec_ari.verification.limits import (
    AbuseStore,
    LockoutPolicy,
    caller_subject,
    customer_subject,
)
from callsec_ari.verification.messages import call_reference, render_code_message

log = logging.getLogger(__name__)
FAILURES = ("failed", "locked")
#: Seconds a time may move by on its way through the database (microsecond rounding).
CLOCK_SLACK = 0.001


def customer_view(customer: Customer, locked: bool) -> p.CustomerView:
    phone = customer.code_phone
    return p.CustomerView(
        ref=customer.ref, language=customer.language,
        preferred_method=customer.preferred_method, has_mobile=phone is not None,
        has_email=bool(customer.email), has_totp=bool(customer.totp_secret),
        mobile_tail=last_digits(phone.number, 2) if phone else "", locked=locked)


@dataclass(slots=True)
class _Found:
    """What one look-up trip to the worker thread brings back."""

    limited: bool = False
    view: p.CustomerView | None = None
    #: verification records of this call a previous callsec left open, now closed
    closed: int = 0
    verification_id: str | None = None
    record_error: str = ""


class VerificationService:
    def __init__(self, settings: Settings, store: Store, deliveries: Deliveries,
                 late: LateRecords, limits: AbuseStore,
                 confirmations: ConfirmationService | None = None) -> None:
        v = settings.verification
        #: one-time links and SMS replies offered with the code (``DeliverCode.confirm``)
        self.confirmations = confirmations
        #: results the database could not take when their call finished (run by the app)
        self.late = late
        self.settings = settings
        self.store = store
        self.deliveries = deliveries
        self.lockout = LockoutPolicy(failures=v.lockout_failures, window=v.lockout_window_seconds,
                                     lockout=v.lockout_seconds)
        #: wrong code checks (any call, any ending) that lock a customer
        self.wrong_codes = LockoutPolicy(failures=v.lockout_wrong_codes,
                                         window=v.lockout_window_seconds, lockout=v.lockout_seconds)
        self.limits = limits

    def register(self, executor: ServiceRegistry) -> None:
        executor.register(p.LookupCustomer, self.lookup)
        executor.register(p.DeliverCode, self.deliver)
        executor.register(p.CheckTotp, self.check_totp)
        executor.register(p.CountCheck, self.count_check)
        executor.register(p.RecordVerification, self.record)

    # -- lookup -----------------------------------------------------------------------------
    async def lookup(self, call: CallHandle, cmd: p.LookupCustomer) -> Sequence[Event]:
        """The customer, and the attempt on record from its first look-up on (closed by
        ``record``), so a callsec that dies mid-verification leaves an open record. A record
        of this call still open at its first look-up in this process is such a dead process's
        attempt (call ids are channel ids): it is closed as ``error``, reason ``interrupted``.
        A store failure of the record is logged; the verification goes on and ``record``
        writes the row at the end. One trip to a worker thread for all of it (three queued
        three times behind other calls' work under load, ``make bench``)."""
        first = not call.context.verification_opened
        found = await self.store.db.offload(self._lookup_sync, call.call_id, cmd, time.time(),
                                            first, call.context.verification_id is None)
        if found.limited:
            call.log.warning("caller number over its rate limit; verification refused")
            return [p.CustomerResult(customer=None, rate_limited=True,
                                     at=asyncio.get_running_loop().time())]
        view = found.view
        if view is None:
            call.log.info("no customer found by %s", cmd.by)
        else:
            call.context.customer_ref = view.ref
            call.log.info("customer %s found by %s%s", view.ref, cmd.by,
                          " (locked out)" if view.locked else "")
        call.context.verification_opened = True
        if found.closed:
            call.log.warning("closed %d verification record(s) a previous callsec left open: "
                             "error, interrupted", found.closed)
        if found.record_error:
            call.log.error("verification record could not be opened: %s", found.record_error)
        if found.verification_id is not None:
            call.context.verification_id = found.verification_id
        return [p.CustomerResult(customer=view, at=asyncio.get_running_loop().time())]

    def _lookup_sync(self, call_id: str, cmd: p.LookupCustomer, now: float, first: bool,
                     open_new: bool) -> _Found:
        limited, view = self._find_sync(cmd, now)
        if limited:
            return _Found(limited=True)
        found = _Found(view=view)
        try:
            if first:
                found.closed = len(self._close_interrupted_sync(call_id))
            if view is not None and open_new:
                found.verification_id = self.store.records.start_verification(
                    call_id, caller_number=cmd.caller_number or None, customer_ref=view.ref)
        except CallsecError as exc:
            found.record_error = exc.error_id
        return found

    def _close_interrupted_sync(self, call_id: str) -> list[str]:
        def audit(session: Executor, vid: str) -> None:
            self.store.audit.append("system", "verification.finished", call_id, {
                "verification_id": vid, "result": "error", "reason": "interrupted"},
                session=session)

        return self.store.records.close_open_verifications(call_id, result="error", audit=audit)

    def _caller(self, number: str) -> str:
        """The presented number's rate-limit subject (one per number, whatever its notation)."""
        return caller_subject(number, self.settings.verification.default_region)

    def _find_sync(self, cmd: p.LookupCustomer,
                   now: float) -> tuple[bool, p.CustomerView | None]:
        """(over the caller's rate limit, the customer found). A withheld number is not exempt:
        it shares one bucket with every withheld caller."""
        limit = self.settings.verification.caller_rate_limit_per_hour
        bucket = Bucket("lookup", self._caller(cmd.caller_number), limit)
        if self.limits.take([bucket], now).over:
            return True, None
        customers = self.store.customers
        try:
            if cmd.by == "caller_id":
                customer = customers.find_by_phone(cmd.value)
            else:
                customer = customers.find_by_customer_number(cmd.value)
        except InvalidInput:
            return False, None  # not a valid number (withheld, malformed): an unknown caller
        if customer is None:
            return False, None
        since = datetime.fromtimestamp(now - self.lockout.horizon, UTC)
        failures = self.store.records.failure_times(customer.ref, since, FAILURES)
        wrong = self.limits.failures(customer_subject(customer.ref),
                                     now - self.wrong_codes.horizon)
        locked = self.lockout.is_locked(failures, now) or self.wrong_codes.is_locked(wrong, now)
        return False, customer_view(customer, locked)

    # -- delivery ---------------------------------------------------------------------------
    async def deliver(self, call: CallHandle, cmd: p.DeliverCode) -> Sequence[Event]:
        kind: Kind = "sms" if cmd.method == "sms" else "email"
        over, customer = await self.store.db.offload(self._before_send, cmd)
        if over:
            call.log.warning("code send refused: over the customer's or the caller's send limit")
            return await self._delivery_failed(call, cmd, kind, "rate_limited")
        to = customer.code_phone.number if kind == "sms" and customer.code_phone else \
            (customer.email or "")
        ref = call_reference(call.call_id)
        subject, body = render_code_message(cmd.language, kind, cmd.code, ref,
                                            datetime.now(UTC), self.settings.verification)
        if cmd.confirm and self.confirmations is not None:
            body = await self.confirmations.with_lines(
                call, body, kind, customer_ref=cmd.customer_ref, language=cmd.language,
                methods=cmd.confirm, to=to,
                ttl_seconds=float(self.settings.verification.code_ttl_seconds))
        try:
            message = OutgoingMessage(to=to, body=body, kind=kind, call_ref=ref, subject=subject)
            receipt = await self.deliveries.for_kind(kind).send(message)
        except (DeliveryFailed, InvalidInput) as exc:
            reason = exc.reason if isinstance(exc, DeliveryFailed) else "invalid_recipient"
            call.log.warning("code delivery by %s failed: %s", kind, reason)
            return await self._delivery_failed(call, cmd, kind, reason)
        call.log.info("code %s by %s in %.3fs (%d attempt(s))",
                      "re-sent" if cmd.resend else "sent", receipt.backend, receipt.elapsed,
                      receipt.attempts)
        return [p.CodeDelivered(method=kind, at=asyncio.get_running_loop().time())]

    def _before_send(self, cmd: p.DeliverCode) -> tuple[bool, Customer]:
        """Count the send (fails closed: no database, no send); the customer to send to."""
        v = self.settings.verification
        over = self.limits.take([
            Bucket("send", customer_subject(cmd.customer_ref), v.customer_code_sends_per_hour),
            Bucket("send", self._caller(cmd.caller_number), v.caller_code_sends_per_hour),
        ], time.time()).over
        return over, self.store.customers.get(cmd.customer_ref)

    async def _delivery_failed(self, call: CallHandle, cmd: p.DeliverCode, kind: Kind,
                               reason: str) -> Sequence[Event]:
        await asyncio.to_thread(
            self.store.audit.append, "system", "verification.delivery_failed", call.call_id,
            {"customer_ref": cmd.customer_ref, "method": kind, "reason": reason})
        return [p.CodeDeliveryFailed(method=kind, reason=reason,
                                     at=asyncio.get_running_loop().time())]

    # -- checks -------------------------------------------------------------------------------
    def _count_sync(self, customer_ref: str, caller_number: str, wrong: bool,
                    now: float) -> bool:
        """Count one check (and a wrong one towards the lockout) in one transaction: whether
        the customer is now over a check limit or locked out."""
        v = self.settings.verification
        subject = customer_subject(customer_ref)
        taken = self.limits.take([
            Bucket("check", subject, v.customer_code_checks_per_hour),
            Bucket("check", self._caller(caller_number), v.caller_code_checks_per_hour),
        ], now, failures_of=subject, failed=wrong, since=now - self.wrong_codes.horizon)
        # the stored time of this failure may come back a microsecond later than ``now``
        return taken.over or self.wrong_codes.is_locked(taken.failures, now + CLOCK_SLACK)

    async def count_check(self, call: CallHandle, cmd: p.CountCheck) -> Sequence[Event]:
        now = time.time()
        count = functools.partial(self._count_sync, cmd.customer_ref, cmd.caller_number,
                                  cmd.wrong, now)
        try:
            locked = await self.store.db.offload(count)
        except Unavailable as exc:
            # as the result itself: the check stands, the count is written once the database
            # is back (sends fail closed meanwhile, so no new code reaches the caller)
            call.log.error("code check could not be counted: %s; counted once the database "
                           "is back", exc.error_id)
            self.late.add(call.call_id, functools.partial(self._count_late, count))
            locked = False
        if locked:
            call.log.warning("customer %s over a check limit or locked out after a wrong code",
                             cmd.customer_ref)
        return [p.CheckCounted(locked=locked, at=asyncio.get_running_loop().time())]

    @staticmethod
    def _count_late(count: Callable[[], bool]) -> None:
        count()

    async def check_totp(self, call: CallHandle, cmd: p.CheckTotp) -> Sequence[Event]:
        ok, locked = await self.store.db.offload(self._check_totp_sync, cmd, time.time())
        return [p.TotpChecked(ok=ok, locked=locked, at=asyncio.get_running_loop().time())]

    def _check_totp_sync(self, cmd: p.CheckTotp, now: float) -> tuple[bool, bool]:
        """(verified, locked). The step a code matched is claimed in the database, so the code
        is refused on any node from then on (a replay)."""
        customer = self.store.customers.get(cmd.customer_ref)
        subject = customer_subject(customer.ref)
        ok = False
        if customer.totp_secret:
            step = match_totp(customer.totp_secret, cmd.candidate, now,
                              after_step=self.limits.last_totp_step(subject))
            ok = step is not None and self.limits.claim_totp_step(subject, step)
        locked = self._count_sync(customer.ref, cmd.caller_number, not ok, now)
        return ok and not locked, locked

    # -- records ------------------------------------------------------------------------------
    async def record(self, call: CallHandle, cmd: p.RecordVerification) -> Sequence[Event]:
        opened, finished = call.context.verification_id, datetime.now(UTC)
        try:
            await self.store.db.offload(self._record_sync, call.call_id, cmd, opened, finished)
        except CallsecError as exc:
            late = isinstance(exc, Unavailable)
            call.log.error("verification result %s could not be recorded: %s%s", cmd.result,
                           exc.error_id, "; written once the database is back" if late else "")
            if late:
                self.late.add(call.call_id, functools.partial(
                    self._record_sync, call.call_id, cmd, opened, finished, late=True))
            raise
        call.context.verification = cmd.result
        return ()

    def _record_sync(self, call_id: str, cmd: p.RecordVerification, opened: str | None,
                     finished: datetime, *, late: bool = False) -> None:
        ref = cmd.customer_ref or None

        def audit(session: Executor, vid: str) -> None:
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
