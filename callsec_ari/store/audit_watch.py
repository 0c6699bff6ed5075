"""``callsec run`` exports the audit head to its log: once at start, then every
``[logging] audit_head_minutes`` (0: only at start).

A line ``audit head SEQ:HASH at TIME`` kept by a log collector the database's administrators
cannot rewrite is what ``callsec audit verify --expect SEQ:HASH`` checks later: a restored
older copy of the database no longer contains it. A head that fails its MAC is logged as an
error.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.exc import SQLAlchemyError

from callsec_ari.core.errors import CallsecError
from callsec_ari.store.audit import AuditLog

log = logging.getLogger(__name__)


def log_head(audit: AuditLog) -> None:
    try:
        head = audit.head()
    except (CallsecError, SQLAlchemyError) as exc:  # callsec keeps running; tried again later
        log.warning("audit head not readable: %s", type(exc).__name__, extra={"call_id": "-"})
        return
    when = head.ts.isoformat() if head.ts else "-"
    if head.state in ("forged", "stripped"):
        log.error("audit head %s at %s FAILS its MAC (%s): run `callsec audit verify`",
                  head.expect, when, head.state, extra={"call_id": "-"})
        return
    log.info("audit head %s at %s", head.expect, when, extra={"call_id": "-"})


async def export_head(audit: AuditLog, minutes: float) -> None:
    """Log the head now and every ``minutes`` (runs until cancelled)."""
    while True:
        await asyncio.to_thread(log_head, audit)
        if minutes <= 0:
            return
        await asyncio.sleep(minutes * 60)
