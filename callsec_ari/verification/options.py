"""What a verification may do (the policy, as options) and what the caller hears at its end."""

from __future__ import annotations

from dataclasses import dataclass

from callsec_ari.core.digits import CollectorSpec
from callsec_ari.verification.codes import OneTimeCode
from callsec_ari.verification.protocol import CustomerView

FINAL_PROMPTS = {
    "verified": ("verified",), "failed": ("verification-failed", "goodbye"),
    "locked": ("locked", "goodbye"), "unknown_caller": ("customer-not-found", "goodbye"),
    "no_contact": ("no-contact", "goodbye"), "delivery_failed": ("delivery-failed", "goodbye"),
    "timeout": ("verification-failed", "goodbye"), "denied": ("verification-failed", "goodbye"),
}
#: Policy methods that answer the code message without typing: a one-time link, an SMS reply.
CONFIRM_METHODS = ("link", "sms_reply")


@dataclass(frozen=True, kw_only=True)
class VerificationOptions:
    require_code: str = "always"          # always | risk | never
    trusted_attestation: tuple[str, ...] = ("A",)
    methods: tuple[str, ...] = ("sms", "email", "totp")
    code_digits: int = 6
    code_ttl: float = 600.0
    max_checks: int = 5
    max_sends: int = 5
    customer_number_tries: int = 3
    first_digit_timeout: float = 10.0
    inter_digit_timeout: float = 5.0
    #: ``verify``: continue in the dialplan at the end; ``connect``: stop and let it decide.
    continue_after: bool = True

    def code_spec(self) -> CollectorSpec:
        return CollectorSpec(min_digits=self.code_digits, max_digits=self.code_digits,
                             special_keys=frozenset("*"), restart_key=None,
                             first_digit_timeout=self.first_digit_timeout,
                             inter_digit_timeout=self.inter_digit_timeout)

    def number_spec(self) -> CollectorSpec:
        return CollectorSpec(min_digits=4, max_digits=16,
                             first_digit_timeout=self.first_digit_timeout,
                             inter_digit_timeout=self.inter_digit_timeout)

    def one_time_code(self, code: str, now: float, sends: int = 1) -> OneTimeCode:
        return OneTimeCode(code=code, created_at=now, ttl=self.code_ttl,
                           max_checks=self.max_checks, max_sends=self.max_sends, sends=sends)

    def choose_method(self, customer: CustomerView) -> str | None:
        """The customer's preferred method if the policy allows it, else the policy's first
        method the customer can receive; None: no way to reach them."""
        available = {"sms": customer.has_mobile, "email": customer.has_email,
                     "totp": customer.has_totp}
        order = list(self.methods)
        if customer.preferred_method in order:
            order.remove(customer.preferred_method)
            order.insert(0, customer.preferred_method)
        return next((m for m in order if available.get(m)), None)

    def confirm(self, method: str) -> tuple[str, ...]:
        """The policy's ways to answer a ``method`` message without typing (a reply needs an
        SMS)."""
        return tuple(m for m in CONFIRM_METHODS
                     if m in self.methods and (m != "sms_reply" or method == "sms"))
