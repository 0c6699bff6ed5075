"""SMS (or anything) through a generic HTTP gateway of your own: a signed JSON POST.

``POST [sms] url`` with the body ``{"to", "body", "kind", "call_ref"}`` (UTF-8 JSON) and

- ``X-Callsec-Timestamp: <unix seconds>``
- ``X-Callsec-Signature: sha256=<hex HMAC-SHA256 over "<timestamp>." + raw body>``

keyed with ``[sms] hmac_key``. A 2xx answer with a JSON object ``{"id": ...}`` is success;
anything else that is 2xx is ``DeliveryFailed(garbage)``. Receivers check the signature with
:func:`callsec_ari.core.signing.verify_signature` (or the same three lines in their own
language) and reject stale timestamps to stop replays.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

import aiohttp

from callsec_ari.config import Secret
from callsec_ari.core.masking import mask_recipient
from callsec_ari.core.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from callsec_ari.verification.delivery import _web
from callsec_ari.verification.delivery.base import (
    DeliveryReceipt,
    LatencyStats,
    OutgoingMessage,
)
from callsec_ari.verification.delivery.retry import RetryPolicy, send_with_retry

logger = logging.getLogger(__name__)

class HttpDelivery:
    backend = "http"

    def __init__(
        self,
        *,
        url: str,
        hmac_key: Secret,
        policy: RetryPolicy | None = None,
        session: aiohttp.ClientSession | None = None,
        latency: LatencyStats | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self._key = str(hmac_key).encode("utf-8")
        self._policy = policy or RetryPolicy()
        self._session = session
        self._latency = latency
        self._clock = clock

    async def send(self, message: OutgoingMessage) -> DeliveryReceipt:
        raw = json.dumps(
            {"to": message.to, "body": message.body, "kind": message.kind,
             "call_ref": message.call_ref},
            ensure_ascii=False, separators=(",", ":"),
        ).encode("utf-8")

        async def attempt(seconds: float) -> str:
            timestamp = str(int(self._clock()))
            headers = {
                "Content-Type": "application/json; charset=utf-8",
                TIMESTAMP_HEADER: timestamp,
                SIGNATURE_HEADER: sign(self._key, timestamp, raw),
            }
            answer = await _web.post(
                self._session, self.url, backend=self.backend, headers=headers, raw_json=raw
            )
            return _web.string_field(answer, "id", self.backend)

        receipt = await send_with_retry(self.backend, attempt, self._policy, self._latency)
        logger.info("%s to %s accepted by the http gateway after %d attempt(s) (call ref %s)",
                    message.kind, mask_recipient(message.to), receipt.attempts, message.call_ref)
        return receipt
