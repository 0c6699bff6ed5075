"""Confirm without typing, and "this is not me": the customer's answer to the code message.

:meth:`ConfirmationService.issue` (called while the code message is made) stores a pending
confirmation for the call: a one-time link token (its hash only) and/or the blind index of the
number the SMS went to. The customer answers by the link page (``web/confirm.py``) or an SMS
reply (inbound webhook); :meth:`answer` closes the confirmation (single use, not after the
code's expiry), audits the answer, posts :class:`ConfirmationAnswered` to the call's worker
(the caller waiting at the code prompt is moved on at once) and, for "this is not me", shows
the agent a fraud warning (bus topic ``verification``, ``fraud_warning``) and raises the
webhook event ``verification.denied``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from callsec_ari.config import Settings
from callsec_ari.core.errors import CallsecError, InvalidInput
from callsec_ari.core.events import ApprovalChecked, Event
from callsec_ari.core.ports import CallDirectory, CallHandle, Publisher
from callsec_ari.store.confirmations import Confirmation, Confirmations
from callsec_ari.store.context import Store
from callsec_ari.verification import confirm_links as links
from callsec_ari.verification.messages import call_reference
from callsec_ari.verification.protocol import ConfirmationAnswered
from callsec_ari.webhooks.port import WebhookNotifier

log = logging.getLogger(__name__)
#: Verification states in which the caller still waits for the code (flow ``V`` names).
WAITING = frozenset({"SENDING", "COLLECT", "CHECK_CODE"})
#: Approval entry stages (``approval/flow.py``) in which an answer is taken.
APPROVAL_WAITING = frozenset({"entering", "checking"})


@dataclass(frozen=True, kw_only=True)
class PageView:
    """What the link page may show: no name, number or address of the customer."""

    company: str
    time: str
    call_ref: str
    language: str
    open: bool
    #: the caller still waits in verification ("This is not me" counts until the expiry)
    can_confirm: bool = False
    kind: str = "verification"
    #: approvals: what the customer approves (amount and currency, payee)
    amount: str = ""
    payee: str = ""


def waiting(call: CallHandle | None, approval_id: str | None = None) -> bool:
    """Whether the call's caller still waits in verification (verify or connect flow), or,
    for ``approval_id``, at that approval's code entry."""
    if call is None:
        return False
    if approval_id is not None:
        entry = getattr(call.flow, "capture", None)
        return getattr(entry, "approval_id", None) == approval_id and \
            getattr(entry, "stage", "") in APPROVAL_WAITING
    flow = getattr(call.flow, "verification", call.flow)
    state = getattr(flow, "state", None)
    return getattr(state, "name", "") in WAITING


class ConfirmationService:
    def __init__(self, settings: Settings, store: Store, calls: CallDirectory, bus: Publisher,
                 webhooks: WebhookNotifier) -> None:
        self.settings = settings
        self.store = store
        self.rows = Confirmations(store.db)
        self.calls = calls
        self.bus = bus
        self.webhooks = webhooks

    # -- issuing (in a worker thread, while the message is made) ---------------------------
    def issue(self, *, call_id: str, call_ref: str, customer_ref: str, language: str,
              methods: tuple[str, ...], sms_to: str | None, ttl_seconds: float,
              approval_id: str | None = None, terms: str | None = None) -> str:
        """Store a pending confirmation; the text to add to the message ("" if none)."""
        token = links.new_token() if "link" in methods and self.settings.web.public_url \
            else None
        phone_bi = None
        if "sms_reply" in methods and sms_to:
            try:
                phone_bi = self.store.blind.phone(sms_to)
            except InvalidInput:
                phone_bi = None
        if token is None and phone_bi is None:
            return ""
        self.rows.add(id="CF-" + secrets.token_hex(8), call_id=call_id, call_ref=call_ref,
                      customer_ref=customer_ref, language=language[:2] or "en",
                      expires_at=datetime.now(UTC) + timedelta(seconds=ttl_seconds),
                      token=token, phone_bi=phone_bi,
                      kind="approval" if approval_id else "verification",
                      approval_id=approval_id, terms=terms)
        link = links.link_for(self.settings.web.public_url, token) if token else ""
        return links.message_lines(language, link=link, reply=phone_bi is not None)

    @staticmethod
    def show_to_agent(call: CallHandle) -> None:
        """A connect call whose customer may now say "this is not me" belongs to the agent it
        is meant for from now on (their desk lists it, and so shows the fraud warning even
        though a denied caller never rings them)."""
        options = getattr(call.flow, "o", None)
        dial = getattr(options, "dial_string", "")
        if isinstance(dial, str) and dial:
            call.context.endpoints.setdefault("agent", dial)

    # -- the link page ---------------------------------------------------------------------
    def _view(self, row: Confirmation, now: datetime) -> PageView:
        v = self.settings.verification
        local = row.created_at.astimezone(ZoneInfo(v.timezone))
        open_ = row.open_at(now)
        amount, _, payee = (row.terms or "").partition("\n")
        return PageView(company=v.company_name, time=f"{local:%H:%M}", call_ref=row.call_ref,
                        language=row.language, open=open_, kind=row.kind, amount=amount,
                        payee=payee, can_confirm=open_ and waiting(
                            self.calls.get(row.call_id), row.approval_id))

    async def page(self, token: str) -> PageView | None:
        """The page for a link (no state change: link scanners fetch it too)."""
        if not links.well_formed_token(token):
            return None
        row = await asyncio.to_thread(self.rows.by_token, token)
        return None if row is None else self._view(row, datetime.now(UTC))

    async def answer_link(self, token: str, confirmed: bool) -> str:
        """``confirmed`` | ``denied`` | ``closed`` (used, expired, no longer waiting) |
        ``unknown``."""
        if not links.well_formed_token(token):
            return "unknown"
        row = await asyncio.to_thread(self.rows.by_token, token)
        if row is None:
            return "unknown"
        return await self.answer(row, confirmed, "link")

    async def answer_reply(self, sender: str, body: str, via: str) -> str:
        """An inbound SMS reply: ``ignored`` (not YES/NO) | ``unknown`` (nothing pending for
        this number) | as :meth:`answer_link`. ``via``: the backend, for the audit."""
        confirmed = links.parse_reply(body)
        if confirmed is None:
            return "ignored"
        now = datetime.now(UTC)
        try:
            phone_bi = self.store.blind.phone(sender)
        except InvalidInput:
            return "unknown"
        row = await asyncio.to_thread(self.rows.latest_for_phone, phone_bi, now)
        if row is None:
            return "unknown"
        return await self.answer(row, confirmed, "sms_reply", via=via)

    # -- answering -------------------------------------------------------------------------
    async def answer(self, row: Confirmation, confirmed: bool, method: str,
                     via: str = "") -> str:
        call = self.calls.get(row.call_id)
        now = datetime.now(UTC)
        if confirmed and not waiting(call, row.approval_id):
            # a confirmation counts only while the caller waits; "not me" always counts
            await asyncio.to_thread(self.rows.answer, row.id, "closed", method, now)
            return "closed"
        outcome = "confirmed" if confirmed else "denied"
        if not await asyncio.to_thread(self.rows.answer, row.id, outcome, method, now):
            return "closed"  # used already, or expired
        await asyncio.to_thread(self.store.audit.append, "customer", f"verification.{outcome}",
                                row.call_id, {"customer_ref": row.customer_ref,
                                              "method": method, "call_ref": row.call_ref,
                                              **({"via": via} if via else {})})
        if call is not None:
            self.calls.post(row.call_id, self._event(row, confirmed, method))
        if confirmed:
            log.info("customer %s confirmed the call by %s", row.customer_ref, method,
                     extra={"call_id": row.call_id})
            return outcome
        log.warning("customer %s says this is not them (%s): fraud warning raised",
                    row.customer_ref, method, extra={"call_id": row.call_id})
        self.bus.publish(row.call_id, "verification", {
            "stage": "fraud_warning", "fraud_warning": True, "method": method})
        self.webhooks.emit("verification.denied", row.call_id, {
            "result": "denied", "method": method, "call_ref": row.call_ref,
            "customer_ref": row.customer_ref,
            **({"approval_id": row.approval_id} if row.approval_id else {})})
        return outcome

    @staticmethod
    def _event(row: Confirmation, confirmed: bool, method: str) -> Event:
        """What the call's worker is told: the verification's event, or an approval's check
        result (``ok`` / ``denied``) for its entry in the capture bridge."""
        at = asyncio.get_running_loop().time()
        if row.approval_id:
            return ApprovalChecked(approval_id=row.approval_id,
                                   result="ok" if confirmed else "denied", at=at)
        return ConfirmationAnswered(confirmed=confirmed, method=method, at=at)

    async def with_lines(self, call: CallHandle, body: str, kind: str, *, customer_ref: str,
                         language: str, methods: tuple[str, ...], to: str, ttl_seconds: float,
                         approval_id: str | None = None, terms: str | None = None) -> str:
        """``body`` with the link / reply lines ``methods`` offer (a reply to an SMS only);
        ``body`` alone if none is offered or the pending confirmation cannot be stored (the
        code alone still works)."""
        issue = functools.partial(
            self.issue, call_id=call.call_id, call_ref=call_reference(call.call_id),
            customer_ref=customer_ref, language=language, ttl_seconds=ttl_seconds,
            methods=tuple(m for m in methods if m != "sms_reply" or kind == "sms"),
            sms_to=to if kind == "sms" else None, approval_id=approval_id, terms=terms)
        try:
            extra = await asyncio.to_thread(issue)
        except CallsecError as exc:
            call.log.error("confirmation could not be stored: %s", exc.error_id)
            return body
        if not extra:
            return body
        self.show_to_agent(call)
        return f"{body.rstrip()} {extra}" if kind == "sms" else f"{body.rstrip()}\n\n{extra}\n"
