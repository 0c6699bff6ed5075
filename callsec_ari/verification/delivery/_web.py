"""The one HTTP POST the gateway backends share: transport errors and statuses to reasons."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import Any

import aiohttp

from callsec_ari.verification.delivery.base import DeliveryFailed

#: Gateways answer with a small JSON document; anything longer is garbage.
MAX_ANSWER_BYTES = 65536


def basic_auth(user: str, password: str) -> str:
    """An ``Authorization`` header value for HTTP basic auth (RFC 7617, UTF-8)."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _check_status(status: int, backend: str) -> None:
    if 200 <= status < 300:
        return
    if status in (401, 403):
        raise DeliveryFailed("auth", backend=backend, http_status=status)
    raise DeliveryFailed(
        "http_status", backend=backend, http_status=status, retryable=status >= 500
    )


async def post(
    session: aiohttp.ClientSession | None,
    url: str,
    *,
    backend: str,
    headers: Mapping[str, str] | None = None,
    form: Mapping[str, str] | None = None,
    raw_json: bytes | None = None,
) -> Any:
    """POST and return the decoded JSON answer of a 2xx response; raise :class:`DeliveryFailed`
    otherwise (timeouts propagate as :class:`TimeoutError` for the retry loop)."""
    async with AsyncExitStack() as stack:
        if session is None:
            session = await stack.enter_async_context(aiohttp.ClientSession())
        try:
            async with session.post(
                url, headers=dict(headers or {}), data=form if raw_json is None else raw_json,
                allow_redirects=False,
            ) as response:
                _check_status(response.status, backend)
                answer = await response.content.read(MAX_ANSWER_BYTES + 1)
        except aiohttp.InvalidURL as exc:
            raise DeliveryFailed("refused", backend=backend) from exc
        except aiohttp.ClientConnectionError as exc:
            if isinstance(exc, TimeoutError):
                raise
            raise DeliveryFailed("refused", backend=backend, retryable=True) from exc
        except aiohttp.ClientPayloadError as exc:
            raise DeliveryFailed("garbage", backend=backend) from exc
    if len(answer) > MAX_ANSWER_BYTES:
        raise DeliveryFailed("garbage", backend=backend)
    try:
        return json.loads(answer)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise DeliveryFailed("garbage", backend=backend) from None


def string_field(answer: Any, key: str, backend: str) -> str:
    """``answer[key]`` as a non-empty string, else ``DeliveryFailed(garbage)``."""
    value = answer.get(key) if isinstance(answer, dict) else None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value or len(value) > 200:
        raise DeliveryFailed("garbage", backend=backend)
    return value
