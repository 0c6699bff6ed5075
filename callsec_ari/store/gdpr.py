"""GDPR: export everything about a person (Art. 15/20), erase a person by crypto-shredding
(Art. 17), and purge records past their retention period (Art. 5(1)(e)).

Erasure destroys the customer's data key and the keys of the calls linked to the customer (so
every ciphertext about them in this database becomes noise), deletes the blind index rows and
blanks the personal columns. The customer row stays as a tombstone (ref, timestamps); audit
entries stay too: they never hold personal data, only refs and counts.

Backups: a backup taken before the erasure still holds the wrapped data key, and it stays
readable for as long as the KEK version that wrapped it exists. It becomes noise once every
such KEK is destroyed: ``callsec keys rotate --retire-older-than DAYS`` (run on a schedule,
DAYS at most the backup retention) re-wraps the live keys and retires the older versions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, exists, select, text, update
from sqlalchemy.orm import Session

from callsec_ari.core.errors import NotFound
from callsec_ari.core.masking import mask_stored
from callsec_ari.store.context import Store
from callsec_ari.store.db import rowcount
from callsec_ari.store.errors import DecryptionFailed
from callsec_ari.store.models import (
    CaptureRow,
    CustomerNumberRow,
    CustomerRow,
    DataKeyRow,
    PhoneRow,
    VaultItemRow,
    VerificationRow,
    utcnow,
)
from callsec_ari.store.vcard import to_vcard

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EraseReport:
    ref: str
    keys_shredded: int
    phones_deleted: int
    already_erased: bool = False


class Gdpr:
    def __init__(self, store: Store) -> None:
        self.store = store

    # -- export --------------------------------------------------------------------------
    def export(self, ref: str, *, actor: str) -> dict[str, Any]:
        """Everything stored about customer ``ref`` (captures masked), with the vCard."""
        st = self.store
        customer = st.customers.get(ref)
        with st.db.session() as s:
            document = {
                "format": "callsec-gdpr-export/1",
                "exported_at": utcnow().isoformat(),
                "profile": {
                    "ref": customer.ref, "customer_number": customer.customer_number,
                    "name": {"full": customer.name.full, "given": customer.name.given,
                             "family": customer.name.family},
                    "phones": [{"number": p.number, "kind": p.kind,
                                "receives_codes": p.receives_codes} for p in customer.phones],
                    "email": customer.email, "language": customer.language,
                    "preferred_method": customer.preferred_method,
                    "totp_enrolled": customer.totp_secret is not None,
                    "created_at": customer.created_at.isoformat(),
                    "updated_at": customer.updated_at.isoformat(),
                },
                "verifications": st.records.verifications_for(s, ref),
                "captures": st.captures.for_customer(s, ref),
                "vault_items": self._vault_items(s, ref),
                "audit": [{"seq": e.seq, "ts": e.ts.isoformat(), "action": e.action,
                           "actor": e.actor} for e in st.audit.for_target(ref, session=s)],
                "vcard": to_vcard(customer),
            }
            st.audit.append(actor, "gdpr.export", ref, {}, session=s)
        return document

    def _vault_items(self, s: Session, ref: str) -> list[dict[str, Any]]:
        items = []
        for row in s.scalars(select(VaultItemRow).where(VaultItemRow.customer_ref == ref)
                             .order_by(VaultItemRow.created_at)):
            try:
                key = self.store.keys.load(s, row.key_id)
                masked = None if row.value_enc is None else mask_stored(row.kind, key.decrypt_text(
                    row.value_enc, table="vault_items", column="value", row_id=row.ref))
            except DecryptionFailed:
                masked = None
            items.append({"ref": row.ref, "kind": row.kind, "masked": masked,
                          "call_id": row.call_id, "created_at": row.created_at.isoformat()})
        return items

    # -- erase ---------------------------------------------------------------------------
    def erase(self, ref: str, *, actor: str) -> EraseReport:
        st = self.store
        with st.db.session() as s:
            row = s.get(CustomerRow, ref)
            if row is None:
                raise NotFound("no such customer", details={"ref": ref})
            if row.erased_at is not None:
                return EraseReport(ref, 0, 0, already_erased=True)
            key_ids = self._linked_keys(s, ref) | {row.key_id}
            shredded = st.keys.shred(s, key_ids)
            phones = rowcount(s.execute(delete(PhoneRow).where(PhoneRow.customer_ref == ref)))
            s.execute(delete(CustomerNumberRow).where(CustomerNumberRow.customer_ref == ref))
            row.name_enc = row.email_enc = row.totp_secret_enc = None
            row.customer_number_enc = row.uid_enc = row.uid_bi = row.email_bi = None
            row.erased_at = row.updated_at = utcnow()
            s.execute(update(VerificationRow).where(VerificationRow.customer_ref == ref)
                      .values(caller_enc=None))
            s.execute(update(CaptureRow).where(CaptureRow.customer_ref == ref)
                      .values(masked={}, gateway_token=None))
            s.execute(update(VaultItemRow).where(VaultItemRow.key_id.in_(key_ids))
                      .values(value_enc=None))
            report = EraseReport(ref, shredded, phones)
            st.audit.append(actor, "gdpr.erase", ref, {"keys_shredded": shredded,
                                                        "phones_deleted": report.phones_deleted},
                            session=s)
        self._scrub_free_space()
        return report

    @staticmethod
    def _linked_keys(s: Session, ref: str) -> set[str]:
        """Keys of the calls of this customer (verifications, captures, vault items)."""
        call_ids = set(s.scalars(select(VerificationRow.call_id)
                                 .where(VerificationRow.customer_ref == ref)))
        call_ids |= set(s.scalars(select(CaptureRow.call_id).where(CaptureRow.customer_ref == ref)))
        keys = set(s.scalars(select(VaultItemRow.key_id).where(VaultItemRow.customer_ref == ref)))
        if call_ids:
            keys |= set(s.scalars(select(DataKeyRow.key_id).where(
                DataKeyRow.owner_kind == "call", DataKeyRow.owner_id.in_(call_ids))))
        return keys

    def _scrub_free_space(self) -> None:
        """Old page images may still hold the wrapped keys: SQLite zeroes freed space
        (``secure_delete``) and we truncate the WAL; PostgreSQL vacuums the dead tuples."""
        engine = self.store.db.engine
        if self.store.db.dialect == "sqlite":
            with engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            return
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for table in ("keys", "customers", "customer_phones", "customer_numbers",
                          "verifications", "captures", "vault_items"):
                conn.execute(text(f"VACUUM {table}"))

    # -- purge ---------------------------------------------------------------------------
    def purge(self, *, actor: str, now: datetime | None = None) -> dict[str, int]:
        """Delete what is past ``[retention]``; returns counts per record type."""
        r = self.store.settings.retention
        now = now or utcnow()
        counts: dict[str, int] = {}
        with self.store.db.session() as s:
            counts["unknown_callers"] = self._delete(s, VerificationRow, (
                VerificationRow.customer_ref.is_(None),
                VerificationRow.started_at < now - timedelta(days=r.unknown_callers_days)))
            counts["verifications"] = self._delete(s, VerificationRow, (
                VerificationRow.started_at < now - timedelta(days=r.verifications_days),))
            counts["captures"] = self._delete(s, CaptureRow, (
                CaptureRow.created_at < now - timedelta(days=r.captures_days),))
            counts["vault_items"] = self._delete(s, VaultItemRow, (
                VaultItemRow.created_at < now - timedelta(days=r.captures_days),))
            counts["call_keys"] = self._delete(s, DataKeyRow, (
                DataKeyRow.owner_kind.in_(("call", "item")),
                ~exists().where(VerificationRow.key_id == DataKeyRow.key_id),
                ~exists().where(VaultItemRow.key_id == DataKeyRow.key_id),
                DataKeyRow.created_at < now - timedelta(days=min(
                    r.unknown_callers_days, r.verifications_days, r.captures_days))))
            counts["audit"] = self.store.audit.purge_before(
                now - timedelta(days=r.audit_days), session=s)
            self.store.audit.append(actor, "gdpr.purge", "", counts, session=s)
        return counts

    @staticmethod
    def _delete(s: Session, model: Any, conditions: tuple[Any, ...]) -> int:
        return rowcount(s.execute(delete(model).where(*conditions)))
