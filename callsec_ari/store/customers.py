"""Customers: personal fields encrypted under the customer's own data key, looked up by blind
indexes (caller ID, keypad customer number, vCard UID).

:class:`CustomerStore` is synchronous and thread-safe per call (one short transaction each);
the asyncio app calls it through ``asyncio.to_thread``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sqlalchemy import bindparam, delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from callsec_ari.core.errors import CallsecError, Conflict, InvalidInput, NotFound
from callsec_ari.store.audit import AuditLog
from callsec_ari.store.blind import BlindIndex
from callsec_ari.store.crypto import DataKey
from callsec_ari.store.customer_types import (
    LANGUAGES,
    METHODS,
    PHONE_KINDS,
    Customer,
    CustomerData,
    Name,
    Phone,
    SaveResult,
    new_ref,
    validate,
)
from callsec_ari.store.db import Database, Executor
from callsec_ari.store.errors import CustomerErased
from callsec_ari.store.keys import DataKeys
from callsec_ari.store.models import (
    Base,
    CustomerNumberRow,
    CustomerRow,
    DataKeyRow,
    PhoneRow,
    as_utc,
    utcnow,
)

__all__ = ["LANGUAGES", "METHODS", "PHONE_KINDS", "Customer", "CustomerData", "CustomerStore",
           "Name", "Phone", "SaveResult", "new_ref", "validate"]

log = logging.getLogger(__name__)
T = "customers"
CUSTOMERS = Base.metadata.tables[T]
PHONES = Base.metadata.tables["customer_phones"]
NUMBERS = Base.metadata.tables["customer_numbers"]
_KEYS = Base.metadata.tables["keys"]
_WITH_KEY = select(*CUSTOMERS.c, _KEYS.c.kek_version, _KEYS.c.wrapped).join(
    _KEYS, _KEYS.c.key_id == CUSTOMERS.c.key_id)
_CUSTOMER = _WITH_KEY.where(CUSTOMERS.c.ref == bindparam("ref"))
_MATCH = PHONES.alias("m")
#: The caller-ID look-up in one round trip: the matching customers (as many rows as they have
#: phones) with their key and phones; capped (a shared number only needs "several").
_BY_PHONE = select(*CUSTOMERS.c, _KEYS.c.kek_version, _KEYS.c.wrapped,
                   PHONES.c.id.label("phone_id"), PHONES.c.kind.label("phone_kind"),
                   PHONES.c.receives_codes, PHONES.c.number_enc).select_from(
    _MATCH.join(CUSTOMERS, CUSTOMERS.c.ref == _MATCH.c.customer_ref)
    .join(_KEYS, _KEYS.c.key_id == CUSTOMERS.c.key_id)
    .join(PHONES, PHONES.c.customer_ref == CUSTOMERS.c.ref)).where(
    _MATCH.c.bi == bindparam("bi")).order_by(CUSTOMERS.c.ref, PHONES.c.position).limit(64)
_BY_NUMBER = _WITH_KEY.where(CUSTOMERS.c.ref.in_(
    select(NUMBERS.c.customer_ref).where(NUMBERS.c.bi == bindparam("bi")))).limit(1)
_PHONES = select(PHONES.c.id, PHONES.c.kind, PHONES.c.receives_codes, PHONES.c.number_enc
                 ).where(PHONES.c.customer_ref == bindparam("ref")).order_by(PHONES.c.position)


class _PhoneRow(NamedTuple):
    id: str
    kind: str
    receives_codes: bool
    number_enc: bytes


@dataclass
class _Rows:
    """Rows of a batch, inserted in foreign-key order with one executemany per table."""

    keys: list[dict[str, object]] = field(default_factory=list)
    customers: list[dict[str, object]] = field(default_factory=list)
    phones: list[dict[str, object]] = field(default_factory=list)
    numbers: list[dict[str, object]] = field(default_factory=list)

    def insert(self, s: Session) -> None:
        s.flush()
        for model, rows in ((DataKeyRow, self.keys), (CustomerRow, self.customers),
                            (PhoneRow, self.phones), (CustomerNumberRow, self.numbers)):
            if rows:
                s.execute(insert(Base.metadata.tables[model.__tablename__]), rows)


class CustomerStore:
    def __init__(self, db: Database, keys: DataKeys, blind: BlindIndex,
                 audit: AuditLog | None = None) -> None:
        self.db = db
        self.keys = keys
        self.blind = blind
        self.audit = audit

    # -- writing -------------------------------------------------------------------------
    def create(self, data: CustomerData, *, actor: str = "system", audit: bool = True
               ) -> Customer:
        data = validate(data, self.blind.default_region)
        try:
            with self.db.session() as s:
                rows = _Rows()
                customer = self._create_in(s, data, rows)
                rows.insert(s)
                if audit and self.audit is not None:
                    self.audit.append(actor, "customer.create", customer.ref, {}, session=s)
        except IntegrityError:
            raise Conflict("customer number or UID already in use") from None
        return customer

    def _create_in(self, s: Session, data: CustomerData, rows: _Rows) -> Customer:
        ref, now = new_ref(), utcnow()
        if data.uid is None:  # exported cards carry it, so re-importing them updates
            data = dataclasses.replace(data, uid=f"urn:callsec:{ref}")
        if data.customer_number is None:
            data = dataclasses.replace(data, customer_number=self._free_number(s))
        key, key_row = self.keys.new(owner_kind="customer", owner_id=ref)
        rows.keys.append(key_row)
        rows.customers.append({"ref": ref, "key_id": key.key_id, "created_at": now,
                               "updated_at": now, "erased_at": None,
                               **self._columns(key, ref, data)})
        self._index_rows(key, ref, data, rows)
        return Customer(ref=ref, created_at=now, updated_at=now,
                        **{f.name: getattr(data, f.name) for f in dataclasses.fields(data)})

    def update(self, ref: str, *, actor: str = "system", audit: bool = True,
               **changes: object) -> Customer:
        """Change fields of :class:`CustomerData` (``name=``, ``phones=``, ``email=`` ...)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(CustomerData)}
        if unknown:
            raise InvalidInput("unknown customer fields", details={"fields": sorted(unknown)})
        current = self.get(ref)
        data = validate(dataclasses.replace(current.data(), **changes),  # type: ignore[arg-type]
                        self.blind.default_region)
        try:
            with self.db.session() as s:
                rows = _Rows()
                self._update_in(s, ref, data, rows)
                rows.insert(s)
                if audit and self.audit is not None:
                    self.audit.append(actor, "customer.update", ref,
                                      {"fields": sorted(changes)}, session=s)
        except IntegrityError:
            raise Conflict("customer number or UID already in use") from None
        return self.get(ref)

    def _update_in(self, s: Session, ref: str, data: CustomerData, rows: _Rows) -> None:
        row = self._row(s, ref)
        key = self.keys.load(s, row.key_id)
        for column, value in self._columns(key, ref, data).items():
            setattr(row, column, value)
        row.updated_at = utcnow()
        s.execute(delete(PhoneRow).where(PhoneRow.customer_ref == ref))
        if data.customer_number is not None:
            s.execute(delete(CustomerNumberRow).where(CustomerNumberRow.customer_ref == ref))
        s.flush()
        self._index_rows(key, ref, data, rows)

    def _match(self, s: Session, data: CustomerData) -> str | None:
        """The customer a card without a UID belongs to: the one (not erased) whose phone
        number or e-mail address has the same blind index; :class:`Conflict` if several."""
        refs: set[str] = set()
        bis = [self.blind.phone_e164(p.number) for p in data.phones]
        if bis:
            refs.update(s.scalars(select(PhoneRow.customer_ref).where(PhoneRow.bi.in_(bis))))
        if data.email:
            refs.update(s.scalars(select(CustomerRow.ref)
                                  .where(CustomerRow.email_bi == self.blind.email(data.email))))
        if refs:
            refs = set(s.scalars(select(CustomerRow.ref).where(
                CustomerRow.ref.in_(refs), CustomerRow.erased_at.is_(None))))
        if len(refs) > 1:
            raise Conflict("the card has no UID and its phone numbers or e-mail address "
                           "belong to several customers (add a UID)")
        return next(iter(refs), None)

    def _save_in(self, s: Session, data: CustomerData, rows: _Rows) -> SaveResult:
        if data.uid:
            ref = s.scalar(select(CustomerRow.ref)
                           .where(CustomerRow.uid_bi == self.blind.uid(data.uid)))
        else:
            ref = self._match(s, data)
        if ref is None:
            return SaveResult(self._create_in(s, data, rows).ref, True)
        self._update_in(s, ref, data, rows)
        return SaveResult(ref, False)

    def save(self, data: CustomerData, *, actor: str = "system") -> SaveResult:
        """Create, or update the customer with the same UID (idempotent re-import); a card
        without a customer number keeps the existing one. Raises on invalid data."""
        result = self.save_many([data], actor=actor)[0]
        if result.error is not None:
            raise result.error
        return result

    def save_many(self, items: Sequence[CustomerData], *, actor: str = "system"
                  ) -> list[SaveResult]:
        """:meth:`save` for a batch in one transaction; if the batch fails (a duplicate
        number, say) it is redone item by item, so one bad item never sinks the others."""
        results: list[SaveResult] = [SaveResult(None, False)] * len(items)
        valid: list[tuple[int, CustomerData]] = []
        for i, item in enumerate(items):
            try:
                valid.append((i, validate(item, self.blind.default_region)))
            except CallsecError as exc:
                results[i] = SaveResult(None, False, exc)
        try:
            with self.db.session() as s:
                rows = _Rows()
                for i, data in valid:
                    results[i] = self._save_in(s, data, rows)
                rows.insert(s)
            return results
        except (IntegrityError, CallsecError) as exc:
            log.debug("batch of %s customers failed (%s); saving one by one", len(valid),
                      type(exc).__name__)
        for i, data in valid:
            try:
                with self.db.session() as s:
                    rows = _Rows()
                    results[i] = self._save_in(s, data, rows)
                    rows.insert(s)
            except IntegrityError:
                results[i] = SaveResult(None, False,
                                        Conflict("customer number or UID already in use"))
            except CallsecError as exc:
                results[i] = SaveResult(None, False, exc)
        return results

    def _free_number(self, s: Session) -> str:
        while True:
            candidate = str(secrets.randbelow(9 * 10**7) + 10**7)  # 8 digits, no leading 0
            if s.get(CustomerNumberRow, self.blind.customer_number(candidate)) is None:
                return candidate

    def _columns(self, key: DataKey, ref: str, data: CustomerData) -> dict[str, object]:
        """The customer row's columns: personal ones encrypted, bound to (column, ref)."""

        def enc(column: str, value: str | None) -> bytes | None:
            if value is None:
                return None
            return key.encrypt(value, table=T, column=column, row_id=ref)

        n = data.name
        columns: dict[str, object] = {
            "name_enc": enc("name", json.dumps({"full": n.full, "given": n.given,
                                                "family": n.family}, ensure_ascii=False)),
            "email_enc": enc("email", data.email),
            "totp_secret_enc": enc("totp_secret", data.totp_secret),
            "email_bi": self.blind.email(data.email) if data.email else None,
            "language": data.language, "preferred_method": data.preferred_method}
        if data.uid is not None:  # None on update of a card matched without UID: keep it
            columns["uid_enc"] = enc("uid", data.uid)
            columns["uid_bi"] = self.blind.uid(data.uid)
        if data.customer_number is not None:  # None on update: keep the number
            columns["customer_number_enc"] = enc("customer_number", data.customer_number)
        return columns

    def _index_rows(self, key: DataKey, ref: str, data: CustomerData, rows: _Rows) -> None:
        for position, phone in enumerate(data.phones):
            pid = secrets.token_hex(8)
            rows.phones.append({
                "id": pid, "customer_ref": ref, "bi": self.blind.phone_e164(phone.number),
                "kind": phone.kind, "receives_codes": phone.receives_codes,
                "position": position,
                "number_enc": key.encrypt(phone.number, table="customer_phones",
                                          column="number", row_id=pid)})
        if data.customer_number is not None:
            rows.numbers.append({"bi": self.blind.customer_number(data.customer_number),
                                 "customer_ref": ref})

    # -- reading -------------------------------------------------------------------------
    @staticmethod
    def _row(s: Session, ref: str) -> CustomerRow:
        row = s.get(CustomerRow, ref)
        if row is None:
            raise NotFound("no such customer", details={"ref": ref})
        if row.erased_at is not None:
            raise CustomerErased("the customer was erased", details={"ref": ref})
        return row

    def get(self, ref: str) -> Customer:
        with self.db.read() as conn:
            return self._load(conn, conn.execute(_CUSTOMER, {"ref": ref}).first(), ref)

    def _load(self, conn: Executor, row: Any, ref: str,
              phone_rows: Sequence[Any] | None = None) -> Customer:
        """Decrypt ``row`` (customers joined with its key) and its phones (``phone_rows``,
        else read now)."""
        if row is None:
            raise NotFound("no such customer", details={"ref": ref})
        if row.erased_at is not None:
            raise CustomerErased("the customer was erased", details={"ref": ref})
        key = self.keys.envelope.unwrap(row.key_id, row.kek_version, row.wrapped)

        def dec(column: str, blob: bytes | None) -> str | None:
            return None if blob is None else key.decrypt_text(blob, table=T, column=column,
                                                              row_id=ref)

        name = json.loads(dec("name", row.name_enc) or "{}")
        if phone_rows is None:
            phone_rows = conn.execute(_PHONES, {"ref": ref}).all()
        phones = tuple(
            Phone(key.decrypt_text(p.number_enc, table="customer_phones", column="number",
                                   row_id=p.id), p.kind, p.receives_codes)
            for p in phone_rows)
        return Customer(
            ref=ref, name=Name(name.get("full", ""), name.get("given", ""),
                               name.get("family", "")),
            phones=phones, email=dec("email", row.email_enc),
            totp_secret=dec("totp_secret", row.totp_secret_enc), language=row.language,
            preferred_method=row.preferred_method,
            customer_number=dec("customer_number", row.customer_number_enc),
            uid=dec("uid", row.uid_enc), created_at=as_utc(row.created_at),
            updated_at=as_utc(row.updated_at))

    def find_by_phone(self, caller_id: str) -> Customer | None:
        """The customer whose phone matches ``caller_id`` (any notation); ``None`` when no
        customer, several customers, or an invalid/anonymous caller ID."""
        try:
            bi = self.blind.phone(caller_id)
        except InvalidInput:
            return None
        with self.db.read() as conn:
            rows = conn.execute(_BY_PHONE, {"bi": bi}).all()
            if len({row.ref for row in rows}) != 1:
                if rows:
                    log.info("caller ID matches several customers; asking for the number")
                return None
            phones = {row.phone_id: _PhoneRow(row.phone_id, row.phone_kind,
                                              row.receives_codes, row.number_enc)
                      for row in rows}  # a number listed twice matches twice
            return self._load(conn, rows[0], rows[0].ref, list(phones.values()))

    def find_by_customer_number(self, digits: str) -> Customer | None:
        try:
            bi = self.blind.customer_number(digits)
        except InvalidInput:
            return None
        with self.db.read() as conn:
            row = conn.execute(_BY_NUMBER, {"bi": bi}).first()
            return None if row is None else self._load(conn, row, row.ref)

    def list_refs(self, *, include_erased: bool = False) -> list[str]:
        query = select(CustomerRow.ref).order_by(CustomerRow.created_at, CustomerRow.ref)
        if not include_erased:
            query = query.where(CustomerRow.erased_at.is_(None))
        with self.db.session() as s:
            return list(s.scalars(query))
