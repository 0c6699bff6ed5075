"""The approval message (pure): amount, payee, company, call reference and the code.

Languages ``en`` and ``de``; the SMS texts and e-mail subjects can be replaced per language in
``[approval]`` (``sms_template_en`` ...) with the placeholders :data:`PLACEHOLDERS`. Time, zone,
call reference and the "we never ask for this code" warning are those of the verification
message (:mod:`callsec_ari.verification.messages`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from callsec_ari.approval.record import Terms
from callsec_ari.core.errors import ConfigError, InvalidInput
from callsec_ari.verification.messages import (
    WARNINGS,
    Channel,
    _sms,
    _values,
    check_templates,
)

if TYPE_CHECKING:
    from callsec_ari.config.sections import ApprovalSettings, VerificationSettings

PLACEHOLDERS = frozenset({"company", "code", "amount", "currency", "payee", "time", "zone",
                          "ref", "warning"})


@dataclass(frozen=True)
class _Texts:
    sms: str
    subject: str
    email: str


TEXTS: dict[str, _Texts] = {
    "en": _Texts(
        sms="{company}: approve {amount} {currency} to {payee}? Code {code} for your call at "
            "{time} (ref {ref}). {warning}",
        subject="{company}: approve a payment of {amount} {currency}",
        email=(
            "Hello,\n\n"
            "during your call with {company} at {time} ({zone}) you were asked to approve "
            "this payment:\n\n"
            "    {amount} {currency} to {payee}\n\n"
            "To approve it, type this code on your phone's keypad when the call asks for it:"
            "\n\n    {code}\n\n"
            "Call reference: {ref}\n\n"
            "{warning} If the amount or the payee is not what you agreed, do not type the "
            "code: the payment is then not approved.\n\n"
            "{company}\n"
        ),
    ),
    "de": _Texts(
        sms="{company}: {amount} {currency} an {payee} freigeben? Code {code} für Ihren Anruf "
            "um {time} Uhr (Ref. {ref}). {warning}",
        subject="{company}: Zahlung über {amount} {currency} freigeben",
        email=(
            "Guten Tag,\n\n"
            "in Ihrem Anruf bei {company} um {time} Uhr ({zone}) wurden Sie gebeten, diese "
            "Zahlung freizugeben:\n\n"
            "    {amount} {currency} an {payee}\n\n"
            "Zum Freigeben geben Sie diesen Code auf der Tastatur Ihres Telefons ein, wenn der "
            "Anruf Sie dazu auffordert:\n\n    {code}\n\n"
            "Anrufreferenz: {ref}\n\n"
            "{warning} Stimmen Betrag oder Empfänger nicht mit dem überein, was Sie vereinbart "
            "haben, geben Sie den Code nicht ein: die Zahlung ist dann nicht freigegeben.\n\n"
            "{company}\n"
        ),
    ),
}


def check_approval_settings(settings: ApprovalSettings) -> None:
    """Raise :class:`ConfigError` (naming the key) for a bad value or template."""
    if not 4 <= settings.code_digits <= 10:
        raise ConfigError("must be between 4 and 10", section="approval", key="code_digits")
    if settings.code_ttl_seconds < 1 or settings.max_attempts < 1:
        raise ConfigError("must be positive", section="approval",
                          key="code_ttl_seconds" if settings.code_ttl_seconds < 1
                          else "max_attempts")
    if not settings.currencies or any(len(c) != 3 or not c.isascii() or not c.isupper()
                                      for c in settings.currencies):
        raise ConfigError("ISO 4217 codes (EUR, USD ...)", section="approval", key="currencies")
    check_templates(settings, "approval", PLACEHOLDERS, ("code", "amount", "payee"))


def render_approval_message(lang: str, channel: Channel, code: str, terms: Terms,
                            call_ref: str, when: datetime, verification: VerificationSettings,
                            settings: ApprovalSettings) -> tuple[str | None, str]:
    """``(subject, body)``; ``subject`` is ``None`` for SMS."""
    if not code.isdigit():
        raise InvalidInput("code must consist of digits")
    key = lang[:2].lower()
    key = key if key in TEXTS else "en"
    texts = TEXTS[key]
    values = {**_values(code, call_ref, when, verification, WARNINGS[key]),
              "amount": terms.amount, "currency": terms.currency, "payee": terms.payee}
    if channel == "sms":
        return None, _sms(getattr(settings, f"sms_template_{key}") or texts.sms, values)
    subject = getattr(settings, f"email_subject_{key}") or texts.subject
    return subject.format_map(values), texts.email.format_map(values)
