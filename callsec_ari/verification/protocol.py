"""The verification slice's own events and commands (frozen, keyword-only)."""

from __future__ import annotations

from dataclasses import dataclass, field

from callsec_ari.core.commands import Command
from callsec_ari.core.events import Event


@dataclass(frozen=True, kw_only=True)
class CustomerView:
    """What the flow may know of a customer: a reference and capabilities, no personal data
    except the last two digits of the mobile number the prompt speaks ("ending in 78")."""

    ref: str
    language: str = ""
    preferred_method: str = ""
    has_mobile: bool = False
    has_email: bool = False
    has_totp: bool = False
    mobile_tail: str = field(default="", repr=False)
    #: Locked out after repeated failed verifications (computed by the service).
    locked: bool = False


# --- commands -----------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class LookupCustomer(Command):
    """Find the customer by caller ID (``by="caller_id"``) or typed customer number."""

    by: str
    value: str = field(repr=False)
    #: The presented caller ID, for the per-number rate limit (hashed by the service).
    caller_number: str = field(default="", repr=False)


@dataclass(frozen=True, kw_only=True)
class DeliverCode(Command):
    method: str
    customer_ref: str
    code: str = field(repr=False)
    language: str
    resend: bool = False
    #: The presented caller ID, for the per-number send limit (hashed by the store).
    caller_number: str = field(default="", repr=False)
    #: Ways the customer may answer the message without typing the code, as the policy
    #: allows them: ``link`` (a one-time HTTPS link), ``sms_reply`` (YES / NO to the SMS).
    confirm: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class CheckTotp(Command):
    customer_ref: str
    candidate: str = field(repr=False)
    caller_number: str = field(default="", repr=False)


@dataclass(frozen=True, kw_only=True)
class CountCheck(Command):
    """A one-time code was checked (the flow compared it): count it against the customer's and
    the caller's check limits and, when ``wrong``, towards the customer's lockout."""

    customer_ref: str
    wrong: bool
    caller_number: str = field(default="", repr=False)


@dataclass(frozen=True, kw_only=True)
class RecordVerification(Command):
    result: str
    method: str
    customer_ref: str
    checks: int
    sends: int
    caller_id_matched: bool
    started_at: float
    caller_number: str = field(default="", repr=False)


# --- events -------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class CustomerResult(Event):
    customer: CustomerView | None
    rate_limited: bool = False


@dataclass(frozen=True, kw_only=True)
class CodeDelivered(Event):
    method: str


@dataclass(frozen=True, kw_only=True)
class CodeDeliveryFailed(Event):
    method: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class TotpChecked(Event):
    ok: bool
    #: over a check limit, or locked out by this failure: the verification ends ``locked``
    locked: bool = False


@dataclass(frozen=True, kw_only=True)
class CheckCounted(Event):
    """The answer to :class:`CountCheck`: ``locked`` when a check limit is exceeded or the
    customer is now locked out (the verification ends ``locked``)."""

    locked: bool


@dataclass(frozen=True, kw_only=True)
class ConfirmationAnswered(Event):
    """The customer answered the message without typing the code (delivered from outside the
    call: the link page or an inbound SMS reply). ``confirmed``: "Confirm" / YES ends the
    verification ``verified``; otherwise ("This is not me" / NO) it ends ``denied``."""

    confirmed: bool
    #: ``link`` | ``sms_reply`` (``CALLSEC_METHOD`` when confirmed)
    method: str
