"""The customer's side of "confirm without typing" (no staff sign-in on these routes).

* ``GET /confirm/{token}``: a small page (company, time, call reference; en/de by the
  customer's language) with two buttons, "Confirm" and "This is not me". A GET never changes
  anything: link scanners fetch links before the customer does.
* ``POST /confirm/{token}`` (``action=confirm|deny`` and ``form_token``, an HMAC of the link
  token the page carries): answers once.
* ``POST /inbound/sms/twilio``: Twilio's inbound SMS webhook, ``X-Twilio-Signature`` checked
  (HMAC-SHA1, ``[sms] auth_token``, over ``[web] public_url`` + the path + sorted parameters).
* ``POST /inbound/sms/http``: the signed HTTP gateway's inbound SMS, JSON ``{"from", "body"}``
  signed as the outbound messages (``X-Callsec-Timestamp``, ``X-Callsec-Signature``, HMAC-SHA256
  with ``[sms] hmac_key``, 5 minutes' tolerance).

Unsigned or wrongly signed inbound requests get 403 and an audit entry ``inbound.refused``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from html import escape

from aiohttp import web

from callsec_ari.config import Settings
from callsec_ari.core.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from callsec_ari.verification import confirm_links as links
from callsec_ari.verification.confirm import ConfirmationService, PageView

log = logging.getLogger(__name__)
SERVICE = web.AppKey("confirmations", ConfirmationService)
FORM_KEY = web.AppKey("confirm_form_key", bytes)
SETTINGS = web.AppKey("confirm_settings", Settings)
TWIML_EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'

TEXTS = {
    "en": {"title": "Are you on the phone with us?", "company": "Company", "time": "Time",
           "ref": "Call reference", "confirm": "Confirm", "deny": "This is not me",
           "amount": "Amount", "payee": "Payee",
           "approval_title": "Do you approve this payment?",
           "approval_lead": "{company} asks you to approve this payment during your call.",
           "lead": "Someone is calling {company} in your name. Is it you?",
           "confirmed": "Thank you. Your call is confirmed.",
           "denied": "Thank you. We have ended the call and warned our staff. "
                     "Nobody from {company} will ask you for a code.",
           "closed": "This link can no longer be used.", "unknown": "This link is not valid."},
    "de": {"title": "Telefonieren Sie gerade mit uns?", "company": "Unternehmen",
           "time": "Uhrzeit", "ref": "Anrufreferenz", "confirm": "Bestätigen",
           "amount": "Betrag", "payee": "Empfänger",
           "approval_title": "Geben Sie diese Zahlung frei?",
           "approval_lead": "{company} bittet Sie während Ihres Anrufs, diese Zahlung "
                            "freizugeben.",
           "deny": "Das bin ich nicht",
           "lead": "Jemand ruft in Ihrem Namen bei {company} an. Sind Sie das?",
           "confirmed": "Danke. Ihr Anruf ist bestätigt.",
           "denied": "Danke. Wir haben den Anruf beendet und unsere Mitarbeiter gewarnt. "
                     "Niemand von {company} wird Sie nach einem Code fragen.",
           "closed": "Dieser Link kann nicht mehr verwendet werden.",
           "unknown": "Dieser Link ist ungültig."},
}


def form_token(key: bytes, token: str) -> str:
    return hmac.new(key, b"callsec-confirm-form/1\x00" + token.encode("ascii"),
                    hashlib.sha256).hexdigest()


def _html(lang: str, title: str, body: str) -> web.Response:
    page = (f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<meta name="robots" content="noindex">'
            f'<title>{escape(title)}</title><link rel="stylesheet" href="/static/confirm.css">'
            f'</head><body><main>{body}</main></body></html>')
    return web.Response(text=page, content_type="text/html",
                        headers={"Cache-Control": "no-store"})


def _message(lang: str, key: str, company: str = "", status: int = 200) -> web.Response:
    t = TEXTS.get(lang, TEXTS["en"])
    text = escape(t[key].format(company=company))
    response = _html(lang, t["title"], f'<p class="answer {key}" id="answer">{text}</p>')
    response.set_status(status)
    return response


def _page(view: PageView, token: str, key: bytes) -> web.Response:
    t = TEXTS.get(view.language, TEXTS["en"])
    if not view.open:
        return _message(view.language, "closed", view.company)
    shown = [("company", view.company), ("time", view.time), ("ref", view.call_ref)]
    if view.kind == "approval":
        shown += [("amount", view.amount), ("payee", view.payee)]
    facts = "".join(f"<dt>{escape(t[k])}</dt><dd id=\"{k}\">{escape(v)}</dd>" for k, v in shown)
    hidden = f'<input type="hidden" name="form_token" value="{form_token(key, token)}">'
    forms = "".join(
        f'<form method="post" action="{links.LINK_PATH}{escape(token)}">{hidden}'
        f'<input type="hidden" name="action" value="{action}">'
        f'<button type="submit" id="{action}" class="{action}">{escape(t[action])}</button>'
        "</form>" for action in ("confirm", "deny") if view.can_confirm or action == "deny")
    title, lead = ("approval_title", "approval_lead") if view.kind == "approval" \
        else ("title", "lead")
    body = (f"<h1>{escape(t[title])}</h1><p>{escape(t[lead].format(company=view.company))}"
            f"</p><dl>{facts}</dl><div class=\"actions\">{forms}</div>")
    return _html(view.language, t[title], body)


async def show(request: web.Request) -> web.StreamResponse:
    token = request.match_info["token"]
    view = await request.app[SERVICE].page(token)
    if view is None:
        return _message("en", "unknown", status=404)
    return _page(view, token, request.app[FORM_KEY])


async def act(request: web.Request) -> web.StreamResponse:
    token, service = request.match_info["token"], request.app[SERVICE]
    view = await service.page(token)
    if view is None:
        return _message("en", "unknown", status=404)
    form = await request.post()
    sent, action = str(form.get("form_token", "")), str(form.get("action", ""))
    if action not in ("confirm", "deny") or not hmac.compare_digest(
            sent.encode("utf-8", "replace"),
            form_token(request.app[FORM_KEY], token).encode("ascii")):
        return _message(view.language, "unknown", view.company, status=403)
    outcome = await service.answer_link(token, action == "confirm")
    key = outcome if outcome in ("confirmed", "denied", "closed") else "unknown"
    return _message(view.language, key, view.company)


async def _refused(request: web.Request, backend: str, reason: str) -> web.Response:
    service = request.app[SERVICE]
    await asyncio.to_thread(service.store.audit.append, "system", "inbound.refused",
                            f"POST {request.path}", {"backend": backend, "reason": reason})
    log.warning("inbound SMS refused (%s): %s", backend, reason, extra={"call_id": "-"})
    return web.json_response({"error_id": "forbidden", "message": "signature check failed",
                              "details": {}}, status=403)


async def twilio(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    form = await request.post()
    params = [(k, str(v)) for k, v in form.items()]
    signature = request.headers.get("X-Twilio-Signature", "")
    url = settings.web.public_url.rstrip("/") + links.TWILIO_PATH
    if not signature:
        return await _refused(request, "twilio", "unsigned")
    if not settings.web.public_url or not links.twilio_signature_ok(
            str(settings.sms.auth_token), url, params, signature):
        return await _refused(request, "twilio", "bad_signature")
    await request.app[SERVICE].answer_reply(str(form.get("From", "")),
                                            str(form.get("Body", "")), "twilio")
    return web.Response(text=TWIML_EMPTY, content_type="text/xml")


async def http_gateway(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    raw = await request.read()
    timestamp = request.headers.get(TIMESTAMP_HEADER, "")
    signature = request.headers.get(SIGNATURE_HEADER, "")
    if not signature or not timestamp:
        return await _refused(request, "http", "unsigned")
    key = str(settings.sms.hmac_key).encode("utf-8")
    if not key or not verify_signature(key, timestamp, raw, signature):
        return await _refused(request, "http", "bad_signature")
    try:
        body = json.loads(raw)
        sender, text = str(body["from"]), str(body["body"])
    except (ValueError, KeyError, TypeError):
        return web.json_response({"error_id": "invalid_input", "details": {},
                                  "message": "send {\"from\", \"body\"}"}, status=422)
    outcome = await request.app[SERVICE].answer_reply(sender, text, "http")
    return web.json_response({"result": outcome})


def install(app: web.Application, service: ConfirmationService, settings: Settings,
            form_key: bytes) -> None:
    """Add the routes (before the app starts)."""
    app[SERVICE], app[SETTINGS], app[FORM_KEY] = service, settings, form_key
    app.router.add_get(links.LINK_PATH + "{token}", show)
    app.router.add_post(links.LINK_PATH + "{token}", act)
    app.router.add_post(links.TWILIO_PATH, twilio)
    app.router.add_post(links.HTTP_PATH, http_gateway)
