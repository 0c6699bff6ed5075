"""SMS through the Twilio Messages REST API (or any service that speaks its shape).

``POST {url}/2010-04-01/Accounts/{account_sid}/Messages.json`` with HTTP basic auth
(account SID, auth token) and the form fields ``To``, ``From``, ``Body``; ``201 Created`` with a
JSON document whose ``sid`` is the message id.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

import aiohttp

from callsec_ari.config import Secret
from callsec_ari.core.masking import mask_recipient
from callsec_ari.verification.delivery import _web
from callsec_ari.verification.delivery.base import (
    DeliveryFailed,
    DeliveryReceipt,
    LatencyStats,
    OutgoingMessage,
)
from callsec_ari.verification.delivery.retry import RetryPolicy, send_with_retry

logger = logging.getLogger(__name__)

#: Twilio's public API base, used when ``[sms] url`` is empty.
DEFAULT_TWILIO_URL = "https://api.twilio.com"


class TwilioDelivery:
    backend = "twilio"

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: Secret,
        sender: str,
        url: str = "",
        policy: RetryPolicy | None = None,
        session: aiohttp.ClientSession | None = None,
        latency: LatencyStats | None = None,
    ) -> None:
        base = (url or DEFAULT_TWILIO_URL).rstrip("/")
        self.endpoint = f"{base}/2010-04-01/Accounts/{quote(account_sid, safe='')}/Messages.json"
        self._headers = {"Authorization": _web.basic_auth(account_sid, str(auth_token))}
        self._sender = sender
        self._policy = policy or RetryPolicy()
        self._session = session
        self._latency = latency

    async def send(self, message: OutgoingMessage) -> DeliveryReceipt:
        if message.kind != "sms":
            raise DeliveryFailed("refused", backend=self.backend)
        form = {"To": message.to, "From": self._sender, "Body": message.body}

        async def attempt(seconds: float) -> str:
            answer = await _web.post(
                self._session, self.endpoint, backend=self.backend, form=form,
                headers=self._headers,
            )
            return _web.string_field(answer, "sid", self.backend)

        receipt = await send_with_retry(self.backend, attempt, self._policy, self._latency)
        logger.info("sms to %s accepted by twilio after %d attempt(s) (call ref %s)",
                    mask_recipient(message.to), receipt.attempts, message.call_ref)
        return receipt
