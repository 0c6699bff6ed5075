"""Request authentication, CSRF, cookies, security headers and JSON input validation.

* API clients send ``Authorization: Bearer <token>``. The desk holds its token in the
  ``callsec_session`` cookie (HttpOnly, SameSite=Strict, ``Secure`` per ``[web]
  secure_cookies``); every unsafe request on a cookie session must carry ``X-CSRF-Token`` equal
  to the ``callsec_csrf`` cookie, which must equal the token derived from the session
  (signed double-submit).
* The client address (login limits) is the TCP peer, or, from a ``[web] trusted_proxies``
  peer only, the right-most untrusted ``X-Forwarded-For`` hop (:mod:`.clientaddr`).
* Every response gets a strict CSP (no inline scripts or styles), ``X-Frame-Options: DENY``,
  ``nosniff``, no referrer; API responses are never cached.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from typing import Any

from aiohttp import web

from callsec_ari.access import credentials as cred
from callsec_ari.access.auth import IssuedSession, Principal
from callsec_ari.access.errors import CsrfFailed, SessionInvalid
from callsec_ari.config import WebSettings
from callsec_ari.core.errors import InvalidInput
from callsec_ari.web.clientaddr import client_address, trusted_networks
from callsec_ari.web.deps import WebDeps

SESSION_COOKIE = "callsec_session"
CSRF_COOKIE = "callsec_csrf"
CSRF_HEADER = "X-CSRF-Token"
BACKGROUND_HEADER = "X-Callsec-Background"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'; object-src 'none'")

HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


def security_headers(secure_cookies: bool) -> Any:
    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        if secure_cookies:
            response.headers.setdefault("Strict-Transport-Security",
                                        "max-age=31536000; includeSubDomains")
        if request.path.startswith("/api/") or request.path in ("/metrics", "/healthz"):
            response.headers["Cache-Control"] = "no-store"
        else:
            response.headers.setdefault("Cache-Control", "no-cache")
    return on_prepare


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def check_csrf(request: web.Request, session_token: str) -> None:
    if request.method in SAFE_METHODS:
        return
    header = request.headers.get(CSRF_HEADER, "").encode("utf-8", "replace")
    cookie = request.cookies.get(CSRF_COOKIE, "").encode("utf-8", "replace")
    expected = cred.csrf_token_for(session_token).encode("ascii")
    if not (header and hmac.compare_digest(header, cookie)
            and hmac.compare_digest(header, expected)):
        raise CsrfFailed("missing or wrong CSRF token (send the X-CSRF-Token header)")


async def authenticate(request: web.Request, deps: WebDeps) -> Principal:
    """The request's session; a request marked ``X-Callsec-Background: 1`` (the desk's
    timed polls) does not count as use of it (idle timeout)."""
    token = _bearer(request)
    if token is None:
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            raise SessionInvalid("not signed in")
        check_csrf(request, token)
    touch = request.headers.get(BACKGROUND_HEADER, "") != "1"
    return await asyncio.to_thread(deps.auth.authenticate, token, touch=touch)


def client_ip(request: web.Request, settings: WebSettings) -> str:
    """The client's address: ``X-Forwarded-For`` only from ``[web] trusted_proxies``."""
    return client_address(request.remote, request.headers.getall("X-Forwarded-For", []),
                          trusted_networks(settings.trusted_proxies))


def set_session_cookies(response: web.Response, issued: IssuedSession, *, secure: bool,
                        max_age: int) -> None:
    common: dict[str, Any] = {"path": "/", "secure": secure, "samesite": "Strict",
                              "max_age": max_age}
    response.set_cookie(SESSION_COOKIE, issued.token, httponly=True, **common)
    response.set_cookie(CSRF_COOKIE, issued.csrf_token, httponly=False, **common)


def clear_session_cookies(response: web.Response, *, secure: bool) -> None:
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        response.del_cookie(name, path="/", secure=secure, samesite="Strict")


# -- input ------------------------------------------------------------------------------

async def read_json(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object; ``Content-Type: application/json`` is required
    (a cross-site form cannot send it without a CORS preflight)."""
    if request.content_type != "application/json":
        raise InvalidInput("send a JSON body (Content-Type: application/json)",
                           details={"content_type": request.content_type})
    raw = await request.read()  # over client_max_size: HTTPRequestEntityTooLarge -> 413
    try:
        body = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("the body is not valid JSON") from None
    except RecursionError:  # nested deeper than the parser's recursion limit
        raise InvalidInput("the body is nested too deeply") from None
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    return body


def text_field(body: dict[str, Any], key: str, *, min_len: int = 1, max_len: int = 256,
               required: bool = True) -> str:
    value = body.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise InvalidInput(f"{key}: a string is required", details={"field": key})
    if not min_len <= len(value) <= max_len:
        raise InvalidInput(f"{key}: between {min_len} and {max_len} characters",
                           details={"field": key})
    return value
