"""Abuse limits in the database, shared by every callsec node and kept across restarts:
rate-limit counters, wrong-code failures (the lockout's input) and the last TOTP step used.

Every row is keyed by a *subject hash*: HMAC-SHA256 under a key derived from the blind-index
key, over ``"<kind>:<value>"`` (``customer:<ref>``, ``caller:<number>``, ``caller:withheld``).
No phone number or customer reference is stored in plaintext.

Counting is atomic with several writers: a counter is one ``INSERT ... ON CONFLICT DO UPDATE
SET count = count + 1 RETURNING count`` (PostgreSQL takes a row lock on the conflict; SQLite
serialises writers); a failure is one inserted row, recorded under a transaction-scoped
advisory lock of its subject on PostgreSQL, so two nodes recording one customer's wrong codes
at once count them one after the other (each sees the other's: the lockout triggers on the
same count as on one node). :class:`DbAbuseStore` implements the
:class:`~callsec_ari.verification.limits.AbuseStore` port; the lockout rule is in that module.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from sqlalchemy import BigInteger, DateTime, Integer, String, Table, delete, func, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, mapped_column

from callsec_ari.store.db import Database, upsert_insert
from callsec_ari.store.errors import DatabaseUnavailable
from callsec_ari.store.models import Base, as_utc

log = logging.getLogger(__name__)
#: Label of the key (derived from the blind-index key) the subject hashes are made with.
SUBJECT_KEY_LABEL = b"callsec-abuse-limits-v1"
#: Rows younger than this are always kept (two hourly windows).
DEFAULT_KEEP = 7200.0
#: Seconds between two purges of old rows by one process.
PURGE_EVERY = 3600.0


class AbuseCounterRow(Base):
    """Events of one kind for one subject in the fixed window starting at ``window_start``."""

    __tablename__ = "abuse_counters"
    subject: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    window_start: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


class AbuseFailureRow(Base):
    """One wrong code check of a subject (a customer), at ``at``."""

    __tablename__ = "abuse_failures"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subject: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TotpStepRow(Base):
    """The last TOTP time step a subject (a customer) verified with (RFC 6238, 5.2)."""

    __tablename__ = "totp_steps"
    subject: Mapped[str] = mapped_column(String(64), primary_key=True)
    step: Mapped[int] = mapped_column(BigInteger)


@dataclass(frozen=True, slots=True)
class Bucket:
    """A rate limit: at most ``limit`` events of ``kind`` per ``subject`` in any ``window``
    seconds (``limit`` 0: no limit)."""

    kind: str
    subject: str
    limit: int
    window: float = 3600.0


@dataclass(frozen=True, slots=True)
class Taken:
    #: a bucket was over its limit with this event counted
    over: bool
    #: the failure times of ``failures_of`` since ``since`` (a recorded one included)
    failures: tuple[float, ...] = ()


def sliding_count(previous: int, current: int, elapsed: float, window: float) -> float:
    """Events in the sliding ``window`` ending now, estimated from two fixed windows: all of
    the current one (``elapsed`` seconds old) and the share of the previous one the sliding
    window still covers."""
    overlap = min(max(1.0 - elapsed / window, 0.0), 1.0)
    return previous * overlap + current


def subject_key(blind_index_key: bytes) -> bytes:
    return hmac.new(blind_index_key, SUBJECT_KEY_LABEL, hashlib.sha256).digest()


def _when(now: float) -> datetime:
    return datetime.fromtimestamp(now, UTC)


class DbAbuseStore:
    """The :class:`~callsec_ari.verification.limits.AbuseStore` port on the callsec database.

    Blocking (call it from a worker thread); raises ``DatabaseUnavailable`` when the database
    cannot be reached."""

    def __init__(self, db: Database, blind_index_key: bytes, *,
                 keep_seconds: float = DEFAULT_KEEP) -> None:
        self.db = db
        self._key = subject_key(blind_index_key)
        #: rows older than this are of no use to any rule (at least the longest window or
        #: lockout horizon); an idle subject's rows are purged every ``PURGE_EVERY`` seconds
        self.keep_seconds = max(keep_seconds, DEFAULT_KEEP)
        self._purged_at = 0.0

    def subject(self, name: str) -> str:
        return hmac.new(self._key, name.encode(), hashlib.sha256).hexdigest()

    def take(self, buckets: Sequence[Bucket], now: float, *, failures_of: str = "",
             failed: bool = False, since: float = 0.0) -> Taken:
        with self.db.connect() as conn:
            over = False
            for bucket in buckets:
                if bucket.limit > 0:
                    over |= self._hit(conn, bucket, now)
            failures: list[float] = []
            if failures_of:
                subject = self.subject(failures_of)
                if failed:
                    self._fail(conn, subject, now, since)
                failures = _failure_times(conn, subject, since)
        if now - self._purged_at >= PURGE_EVERY:
            self._purged_at = now
            try:
                self.purge(now - self.keep_seconds)
            except DatabaseUnavailable as exc:  # the count stands; the next hour purges
                log.warning("old abuse-limit rows not purged: %s", exc.error_id)
        return Taken(over=over, failures=tuple(failures))

    def purge(self, before: float) -> int:
        """Delete the counters and failures older than ``before`` (every subject's)."""
        counters = cast(Table, AbuseCounterRow.__table__)
        failures = cast(Table, AbuseFailureRow.__table__)
        with self.db.connect() as conn:
            gone = conn.execute(delete(counters).where(counters.c.window_start < before)).rowcount
            gone += conn.execute(delete(failures).where(failures.c.at < _when(before))).rowcount
        return int(gone)

    def failures(self, subject: str, since: float) -> list[float]:
        with self.db.read() as conn:
            return _failure_times(conn, self.subject(subject), since)

    def last_totp_step(self, subject: str) -> int | None:
        with self.db.read() as conn:
            found = conn.scalar(select(TotpStepRow.step).where(
                TotpStepRow.subject == self.subject(subject)))
        return None if found is None else int(found)

    def claim_totp_step(self, subject: str, step: int) -> bool:
        """Store ``step`` as the subject's last one unless a later or equal one is stored
        (atomic): False means the step was used already (a replay, maybe on another node)."""
        table = cast(Table, TotpStepRow.__table__)
        with self.db.connect() as conn:
            insert = upsert_insert(conn.dialect.name, table).values(
                subject=self.subject(subject), step=step)
            stmt = insert.on_conflict_do_update(
                index_elements=[table.c.subject], set_={"step": insert.excluded.step},
                where=table.c.step < insert.excluded.step).returning(table.c.step)
            return conn.execute(stmt).first() is not None

    # -- in one transaction -------------------------------------------------------------
    def _hit(self, conn: Connection, bucket: Bucket, now: float) -> bool:
        """Count the event and read the previous window's count in one statement (the
        caller's look-up, send and check each wait for it; three statements took 0.76 ms of
        CPU for one bucket, this one 0.17 ms: SQLite, alone). Windows before the previous
        one are left to :meth:`purge`."""
        window = int(bucket.window)
        start = int(now) // window * window
        current, previous = conn.execute(_HIT, {
            "subject": self.subject(bucket.subject), "kind": bucket.kind, "start": start,
            "previous": start - window}).one()
        if int(current) > bucket.limit:
            return True  # over on this window alone: the previous one cannot change that
        return sliding_count(int(previous or 0), int(current), now - start,
                             window) > bucket.limit

    def _fail(self, conn: Connection, subject: str, now: float, since: float) -> None:
        table = cast(Table, AbuseFailureRow.__table__)
        if conn.dialect.name == "postgresql":  # one subject's failures one after another:
            # the next writer waits for this commit, then counts this failure too
            conn.execute(select(func.pg_advisory_xact_lock(int(subject[:15], 16))))
        conn.execute(table.insert().values(subject=subject, at=_when(now)))
        conn.execute(delete(table).where(table.c.subject == subject,
                                         table.c.at < _when(since)))


#: Count one event in its fixed window (atomic: PostgreSQL locks the row on the conflict,
#: SQLite serialises writers) and return it with the previous window's count. Plain SQL,
#: built once: the same text on both databases (``ON CONFLICT ... RETURNING`` with a
#: subquery needs SQLite 3.35, which ``RETURNING`` needed already).
_HIT = text(
    "INSERT INTO abuse_counters (subject, kind, window_start, count) "
    "VALUES (:subject, :kind, :start, 1) "
    "ON CONFLICT (subject, kind, window_start) DO UPDATE SET count = abuse_counters.count + 1 "
    "RETURNING count, (SELECT p.count FROM abuse_counters AS p WHERE p.subject = :subject "
    "AND p.kind = :kind AND p.window_start = :previous)")


def _failure_times(conn: Connection, subject: str, since: float) -> list[float]:
    table = cast(Table, AbuseFailureRow.__table__)
    rows = conn.scalars(select(table.c.at).where(table.c.subject == subject,
                                                 table.c.at >= _when(since)))
    return [as_utc(at).timestamp() for at in rows]
