"""Customer value types and their validation (pure: no database)."""

from __future__ import annotations

import base64
import dataclasses
import secrets
from dataclasses import dataclass, field
from datetime import datetime

from callsec_ari.core.errors import CallsecError, InvalidInput
from callsec_ari.core.masking import mask_phone
from callsec_ari.store.blind import normalise_digits, normalise_phone

LANGUAGES = ("en", "de")
METHODS = ("sms", "email", "totp")
PHONE_KINDS = ("mobile", "landline")


def new_ref(prefix: str = "C") -> str:
    return f"{prefix}-" + base64.b32encode(secrets.token_bytes(10)).decode("ascii")


@dataclass(frozen=True)
class Phone:
    number: str
    kind: str = "mobile"
    receives_codes: bool = False

    def __repr__(self) -> str:
        return f"Phone({mask_phone(self.number)}, {self.kind}, codes={self.receives_codes})"


@dataclass(frozen=True)
class Name:
    full: str
    given: str = ""
    family: str = ""

    def __repr__(self) -> str:
        return "Name(***)"


@dataclass(frozen=True)
class SaveResult:
    ref: str | None
    created: bool
    error: CallsecError | None = None


@dataclass(frozen=True, kw_only=True)
class CustomerData:
    """What a customer is made of (input to :meth:`CustomerStore.create` / ``update``)."""

    name: Name
    phones: tuple[Phone, ...] = ()
    email: str | None = None
    totp_secret: str | None = field(default=None, repr=False)
    language: str = "en"
    preferred_method: str = "sms"
    customer_number: str | None = None
    uid: str | None = None

    def __repr__(self) -> str:
        return f"CustomerData(lang={self.language}, method={self.preferred_method}, ***)"


@dataclass(frozen=True, kw_only=True)
class Customer(CustomerData):
    ref: str
    created_at: datetime
    updated_at: datetime

    @property
    def code_phone(self) -> Phone | None:
        """The mobile that receives codes (SMS)."""
        return next((p for p in self.phones if p.receives_codes), None)

    def data(self) -> CustomerData:
        return CustomerData(**{f.name: getattr(self, f.name)
                               for f in dataclasses.fields(CustomerData)})

    def __repr__(self) -> str:
        phones = ", ".join(mask_phone(p.number) for p in self.phones)
        return (f"Customer(ref={self.ref!r}, name=***, phones=[{phones}], "
                f"email={'***' if self.email else None}, lang={self.language}, "
                f"method={self.preferred_method})")


def validate(data: CustomerData, default_region: str) -> CustomerData:
    """Normalise and check; :class:`InvalidInput` names the field, never the value."""
    name = data.name
    full = name.full.strip() or " ".join(p for p in (name.given.strip(), name.family.strip()) if p)
    if not full:
        raise InvalidInput("a customer needs a name", details={"field": "name"})
    if data.language not in LANGUAGES:
        raise InvalidInput("language must be en or de", details={"field": "language"})
    if data.preferred_method not in METHODS:
        raise InvalidInput("method must be sms, email or totp", details={"field": "method"})
    phones = []
    for phone in data.phones:
        if phone.kind not in PHONE_KINDS:
            raise InvalidInput("phone kind must be mobile or landline", details={"field": "phone"})
        phones.append(dataclasses.replace(phone, number=normalise_phone(phone.number,
                                                                        default_region)))
    if not any(p.receives_codes for p in phones):
        first_mobile = next((i for i, p in enumerate(phones) if p.kind == "mobile"), None)
        if first_mobile is not None:
            phones[first_mobile] = dataclasses.replace(phones[first_mobile], receives_codes=True)
    number = normalise_digits(data.customer_number) if data.customer_number else None
    if number is not None and not 4 <= len(number) <= 16:
        raise InvalidInput("a customer number has 4 to 16 digits",
                           details={"field": "customer_number"})
    email = data.email.strip() if data.email else None
    if email is not None and "@" not in email:
        raise InvalidInput("not an e-mail address", details={"field": "email"})
    return dataclasses.replace(data, name=Name(full, name.given.strip(), name.family.strip()),
                               phones=tuple(phones), email=email or None,
                               customer_number=number, uid=(data.uid or "").strip() or None)
