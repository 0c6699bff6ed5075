"""The vault: captured values (card numbers, IBANs, IDs, ...) encrypted under the customer's
data key, the call's key (unknown caller) or a key of their own, behind opaque ``V-...`` refs.

CVVs are refused by design (PCI DSS forbids storing card security codes after authorisation):
a capture hands the CVV to the payment gateway or drops it, never to the vault.
Every reveal goes through a permission callback and leaves an audit entry (denials too).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import Row, bindparam, insert, select

from callsec_ari.core.errors import Forbidden, InvalidInput, NotFound
from callsec_ari.core.masking import mask_stored
from callsec_ari.store.audit import AuditLog
from callsec_ari.store.crypto import DataKey
from callsec_ari.store.customers import new_ref
from callsec_ari.store.db import Database, Executor, GroupInsert
from callsec_ari.store.errors import VaultRefused
from callsec_ari.store.keys import DataKeys
from callsec_ari.store.models import Base, utcnow

log = logging.getLogger(__name__)

KINDS = ("card_number", "iban", "national_id", "postal_code", "expiry", "routing_number",
         "account_number")
REFUSED = ("cvv", "cvc", "cvv2", "cvc2", "cid", "card_security_code")
T = "vault_items"
VAULT = Base.metadata.tables[T]
_BY_REF = select(VAULT.c.ref, VAULT.c.kind, VAULT.c.key_id, VAULT.c.value_enc).where(
    VAULT.c.ref == bindparam("ref"))
_INSERT = insert(VAULT)
MAX_VALUE = 64


def _row(ref: str, kind: str, value: str, key: DataKey, customer_ref: str | None,
         call_id: str | None) -> dict[str, Any]:
    return {"ref": ref, "kind": kind, "customer_ref": customer_ref, "call_id": call_id,
            "key_id": key.key_id, "created_at": utcnow(),
            "value_enc": key.encrypt(value, table=T, column="value", row_id=ref)}


class Vault:
    def __init__(self, db: Database, keys: DataKeys, audit: AuditLog) -> None:
        self.db = db
        self.keys = keys
        self.audit = audit
        self._group = GroupInsert(db, _INSERT)

    @staticmethod
    def _check_kind(kind: str) -> None:
        if kind.lower() in REFUSED:
            raise VaultRefused("card security codes are never stored", details={"kind": kind})
        if kind not in KINDS:
            raise InvalidInput("unknown vault kind", details={"kind": kind})

    def _key_for(self, conn: Executor, customer_ref: str | None, call_id: str) -> DataKey:
        if customer_ref is not None:
            key = self.keys.encryption_key(conn, "customer", customer_ref, create=False)
            if key is None:
                raise NotFound("no such customer", details={"ref": customer_ref})
            return key
        found = self.keys.encryption_key(conn, "call", call_id, create=True, autocommit=True)
        assert found is not None
        return found

    def put(self, kind: str, value: str, *, customer_ref: str | None = None,
            call_id: str | None = None) -> str:
        """Store ``value``; returns its opaque ref. ``cvv`` raises :class:`VaultRefused`."""
        self._check_kind(kind)
        if not value or not value.strip() or len(value) > MAX_VALUE:
            raise InvalidInput("empty or oversized vault value", details={"kind": kind})
        ref = new_ref("V")
        if customer_ref is None and call_id is None:  # a key of its own: key + item together
            with self.db.connect() as conn:
                self._insert(conn, ref, kind, value, self.keys.create(conn, "item", ref),
                             None, None)
            return ref
        # The owner's key exists or is upserted on its own, committed (ON CONFLICT:
        # idempotent); the item then goes in as an autocommit INSERT (no BEGIN/COMMIT round
        # trips; the hot path), on SQLite with the items of concurrent puts (GroupInsert).
        key = self.keys.cached_encryption_key(*(("customer", customer_ref) if customer_ref
                                                else ("call", call_id or "")))
        if key is None:  # no connection taken for a key read moments ago
            with self.db.read() as conn:
                key = self._key_for(conn, customer_ref, call_id or "")
        self._group.insert(_row(ref, kind, value, key, customer_ref, call_id))
        return ref

    @staticmethod
    def _insert(conn: Executor, ref: str, kind: str, value: str, key: DataKey,
                customer_ref: str | None, call_id: str | None) -> None:
        conn.execute(_INSERT, _row(ref, kind, value, key, customer_ref, call_id))

    def _decrypt(self, conn: Executor, row: Row[Any, Any, Any, Any]) -> str:
        key = self.keys.load(conn, row.key_id)
        if row.value_enc is None:
            raise NotFound("the vault item was erased", details={"ref": row.ref})
        return key.decrypt_text(row.value_enc, table=T, column="value", row_id=row.ref)

    @staticmethod
    def _row(conn: Executor, ref: str) -> Row[Any, Any, Any, Any]:
        row = conn.execute(_BY_REF, {"ref": ref}).first()
        if row is None:
            raise NotFound("no such vault item", details={"ref": ref})
        return row

    def kind(self, ref: str) -> str:
        with self.db.read() as conn:
            return str(self._row(conn, ref).kind)

    def reveal(self, ref: str, *, actor: str, reason: str,
               allowed: Callable[[str], bool]) -> str:
        """The clear value, if ``allowed(kind)``; audited either way, in the same
        transaction (the reason is kept, digit runs blanked). Raises :class:`Forbidden`
        when not allowed."""
        if not reason or not reason.strip():
            raise InvalidInput("a reason is required to reveal a vaulted value")
        with self.db.connect() as conn:
            row = self._row(conn, ref)
            permitted = allowed(row.kind)
            value = self._decrypt(conn, row) if permitted else None
            self.audit.append(actor, "vault.reveal" if permitted else "vault.reveal_denied",
                              ref, {"kind": row.kind, "reason": reason}, session=conn)
        if value is None:
            raise Forbidden("not allowed to reveal this value", details={"ref": ref})
        log.info("vault item %s revealed to %s", ref, actor)
        return value

    def masked(self, ref: str) -> str:
        with self.db.read() as conn:
            row = self._row(conn, ref)
            return mask_stored(row.kind, self._decrypt(conn, row))
