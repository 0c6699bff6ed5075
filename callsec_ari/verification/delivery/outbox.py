"""The embedded default backend: one JSON file per message in ``outbox_dir``.

**For development and tests only.** The outbox is the "fake phone" of the demo and the test
suites: each file necessarily contains the one-time code in plain text. Production deployments
set ``[sms] backend`` / ``[email] backend`` to a real gateway; ``callsec doctor`` warns when the
outbox is in use.

File format (the contract): keys ``to`` (E.164, or the address for e-mail), ``body``, ``kind``
(``sms`` | ``email``), ``created`` (ISO 8601, UTC), ``call_ref``, and ``subject`` for e-mail.
Files are written atomically (a hidden temporary file, then ``rename``) with mode 0600 in a
directory of mode 0700; names sort by creation time (``<UTC timestamp>-<random>.json``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from callsec_ari.core.masking import mask_recipient
from callsec_ari.verification.delivery.base import (
    DeliveryFailed,
    DeliveryReceipt,
    LatencyStats,
    OutgoingMessage,
)

logger = logging.getLogger(__name__)


def outbox_payload(message: OutgoingMessage, created: datetime) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "to": message.to,
        "body": message.body,
        "kind": message.kind,
        "created": created.isoformat(),
        "call_ref": message.call_ref,
    }
    if message.kind == "email":
        payload["subject"] = message.subject or ""
    return payload


def _file_name(created: datetime) -> str:
    return f"{created:%Y%m%dT%H%M%S%f}Z-{secrets.token_hex(4)}.json"


def _write_atomically(directory: Path, name: str, data: bytes) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    tmp = directory / f".{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, directory / name)
    finally:
        tmp.unlink(missing_ok=True)  # gone after a successful rename


class OutboxDelivery:
    """Writes each message as a JSON file; the message id is the file name."""

    backend = "outbox"

    def __init__(
        self,
        outbox_dir: Path,
        *,
        latency: LatencyStats | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.outbox_dir = outbox_dir
        self._latency = latency
        self._clock = clock

    async def send(self, message: OutgoingMessage) -> DeliveryReceipt:
        began = time.monotonic()
        created = self._clock()
        name = _file_name(created)
        data = json.dumps(outbox_payload(message, created), ensure_ascii=False, indent=1)
        try:
            await asyncio.to_thread(
                _write_atomically, self.outbox_dir, name, data.encode("utf-8")
            )
        except OSError as exc:
            self._observe(began, ok=False)
            raise DeliveryFailed("refused", backend=self.backend, attempts=1) from exc
        elapsed = self._observe(began, ok=True)
        logger.info("%s to %s written to the outbox (call ref %s)",
                    message.kind, mask_recipient(message.to), message.call_ref)
        return DeliveryReceipt(backend=self.backend, message_id=name, attempts=1, elapsed=elapsed)

    def _observe(self, began: float, *, ok: bool) -> float:
        elapsed = time.monotonic() - began
        if self._latency is not None:
            self._latency.observe(self.backend, elapsed, ok)
        return elapsed
