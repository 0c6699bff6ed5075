"""The code message, bound to the call (pure: no I/O).

Every message names the company, the code, the time of the call (``HH:MM`` in
``[verification] timezone``) and a short opaque call reference, and says that the company will
never ask the customer to read the code out: a caller who is being talked into reading a code
to "the bank" learns from the message itself that this is the fraud.

Languages ``en`` and ``de``; the SMS texts and e-mail subjects can be replaced per language in
``[verification]`` (``sms_template_en`` ...) with the placeholders :data:`PLACEHOLDERS`. The
English SMS fits one GSM-7 segment (160 characters) with the default company name.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from callsec_ari.core.errors import ConfigError, InvalidInput

if TYPE_CHECKING:
    from callsec_ari.config import VerificationSettings

Channel = Literal["sms", "email"]
LANGUAGES = ("en", "de")
PLACEHOLDERS = frozenset({"company", "code", "time", "zone", "ref", "warning"})


@dataclass(frozen=True)
class _Texts:
    warning: str
    sms: str
    subject: str
    email: str


_EN = _Texts(
    warning="We will never ask you to read this code to us.",
    sms="{company}: your code is {code} for your call at {time} (ref {ref}). {warning}",
    subject="{company}: your verification code",
    email=(
        "Hello,\n\n"
        "your verification code for your call with {company} at {time} ({zone}) is:\n\n"
        "    {code}\n\n"
        "Please type it on your phone's keypad when the call asks for it.\n"
        "Call reference: {ref}\n\n"
        "{warning} Do not give it to anyone who asks for it, even in our name.\n\n"
        "If you are not on the phone with us right now, please ignore this message.\n\n"
        "{company}\n"
    ),
)

_DE = _Texts(
    warning="Wir werden Sie niemals bitten, uns diesen Code vorzulesen.",
    sms="{company}: Ihr Code lautet {code} für Ihren Anruf um {time} Uhr (Ref. {ref}). {warning}",
    subject="{company}: Ihr Bestätigungscode",
    email=(
        "Guten Tag,\n\n"
        "Ihr Bestätigungscode für Ihren Anruf bei {company} um {time} Uhr ({zone}) lautet:\n\n"
        "    {code}\n\n"
        "Bitte geben Sie ihn auf der Tastatur Ihres Telefons ein, wenn der Anruf Sie "
        "dazu auffordert.\n"
        "Anrufreferenz: {ref}\n\n"
        "{warning} Geben Sie ihn niemandem weiter, auch nicht, wenn jemand in unserem "
        "Namen danach fragt.\n\n"
        "Wenn Sie gerade nicht mit uns telefonieren, ignorieren Sie diese Nachricht bitte.\n\n"
        "{company}\n"
    ),
)

TEXTS: dict[str, _Texts] = {"en": _EN, "de": _DE}
WARNINGS: dict[str, str] = {lang: texts.warning for lang, texts in TEXTS.items()}

# A call reference never contains a digit, so it cannot be mistaken for the code (and is
# never blanked by the log redaction); I and O are left out as they read like 1 and 0.
_REF_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ"
_REF_LENGTH = 8


def call_reference(call_id: str) -> str:
    """A short opaque reference for a call: 8 letters derived from a SHA-256 of the call id."""
    number = int.from_bytes(hashlib.sha256(call_id.encode("utf-8")).digest()[:8], "big")
    letters = []
    for _ in range(_REF_LENGTH):
        number, index = divmod(number, len(_REF_ALPHABET))
        letters.append(_REF_ALPHABET[index])
    return "".join(letters)


def _template_fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def check_message_settings(settings: VerificationSettings) -> None:
    """Raise :class:`ConfigError` (naming the key) for a bad time zone or template."""
    try:
        ZoneInfo(settings.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError("unknown time zone", section="verification", key="timezone") from None
    check_templates(settings, "verification", PLACEHOLDERS, ("code",))


def check_templates(settings: object, section: str, allowed: frozenset[str],
                    sms_required: tuple[str, ...]) -> None:
    """:class:`ConfigError` naming the first ``sms_template_<lang>`` / ``email_subject_<lang>``
    of ``section`` that is malformed, names a placeholder not ``allowed``, is an SMS text
    without each of ``sms_required`` or a subject that shows the code."""
    for lang in LANGUAGES:
        for key in (f"sms_template_{lang}", f"email_subject_{lang}"):
            template: str = getattr(settings, key)
            if not template:
                continue
            try:
                fields = _template_fields(template)
            except ValueError:
                raise ConfigError("malformed template", section=section, key=key) from None
            unknown = fields - allowed
            if unknown:
                raise ConfigError(f"unknown placeholder(s) {', '.join(sorted(unknown))}; "
                                  f"allowed: {', '.join(sorted(allowed))}", section=section,
                                  key=key)
            if key.startswith("sms") and not set(sms_required) <= fields:
                *most, last = [f"{{{name}}}" for name in sms_required]
                raise ConfigError(f"must contain {', '.join(most) + ' and ' if most else ''}"
                                  f"{last}", section=section, key=key)
            if key.startswith("email") and "code" in fields:
                raise ConfigError("must not contain {code}", section=section, key=key)


def _values(code: str, call_ref: str, when: datetime, settings: VerificationSettings,
            warning: str) -> dict[str, str]:
    moment = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    local = moment.astimezone(ZoneInfo(settings.timezone))
    return {
        "company": settings.company_name, "code": code, "time": f"{local:%H:%M}",
        "zone": local.tzname() or settings.timezone, "ref": call_ref, "warning": warning,
    }


def _sms(template: str, values: dict[str, str]) -> str:
    text = template.format_map(values)
    if "warning" not in _template_fields(template):
        text = f"{text.rstrip()} {values['warning']}"
    return text


def render_code_message(
    lang: str,
    channel: Channel,
    code: str,
    call_ref: str,
    when: datetime,
    settings: VerificationSettings,
) -> tuple[str | None, str]:
    """``(subject, body)`` of the code message; ``subject`` is ``None`` for SMS.

    ``lang`` is ``en`` or ``de`` (``de-DE`` and the like are accepted; anything else falls back
    to English); ``when`` is the time of the call (a naive value is taken as UTC).
    """
    if not code.isdigit():
        raise InvalidInput("code must consist of digits")
    key = lang[:2].lower()
    key = key if key in TEXTS else "en"
    texts = TEXTS[key]
    values = _values(code, call_ref, when, settings, texts.warning)
    if channel == "sms":
        template = getattr(settings, f"sms_template_{key}") or texts.sms
        return None, _sms(template, values)
    if channel == "email":
        subject_template = getattr(settings, f"email_subject_{key}") or texts.subject
        return subject_template.format_map(values), texts.email.format_map(values)
    raise InvalidInput("channel must be sms or email")
