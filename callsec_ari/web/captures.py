"""Capture routes: the permission and owner checks live here; the work is the capture
feature's (:class:`~callsec_ari.web.deps.CaptureService`; absent -> 503 ``capture_unavailable``).

``reveal`` needs a reason and a fresh TOTP code (``{"reason": ..., "otp": ...}``); it is
audited before any value leaves the vault, and only the kinds of ``[web] reveal_kinds``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from callsec_ari.access.auth import Principal
from callsec_ari.access.errors import CaptureUnavailable
from callsec_ari.access.roles import Permission, revealable_kinds
from callsec_ari.capture.protocol import CaptureInfo
from callsec_ari.core.errors import InvalidInput, NotFound
from callsec_ari.core.ports import CallHandle
from callsec_ari.web.deps import CAPTURE_FIELDS, CAPTURE_MODES, CaptureService
from callsec_ari.web.guard import Guarded, deps_of, require_visible, visible_call
from callsec_ari.web.security import client_ip, read_json, text_field
from callsec_ari.web.views import owner_of

#: ``POST .../fields/{field}`` actions (``capture.protocol.FIELD_ACTIONS``).
FIELD_ACTIONS = ("rerequest", "cancel", "skip")
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def _id(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not 1 <= len(value) <= 64 or not set(value) <= _ID_CHARS:
        raise InvalidInput(f"{name}: not a valid id", details={"field": name})
    return value


def _service(request: web.Request) -> CaptureService:
    service = deps_of(request).captures
    if service is None:
        raise CaptureUnavailable()
    return service


async def _owned_call(request: web.Request, principal: Principal,
                      permission: Permission) -> CallHandle:
    call, _, _ = await visible_call(request, principal, (permission,), _id(request, "call_id"))
    return call


async def _owned_capture(request: web.Request, principal: Principal, service: CaptureService,
                         permission: Permission) -> CaptureInfo:
    deps, capture_id = deps_of(request), _id(request, "capture_id")
    info: CaptureInfo | None
    try:
        info = await service.get(capture_id)
    except NotFound:
        info = None  # one answer, after the same work, for "no such id" and "not yours"
    owners = await asyncio.to_thread(deps.users.endpoint_owners)
    await require_visible(request, principal, (permission,),
                          owner_of(info.agent_endpoint, owners) if info is not None else None,
                          f"capture {capture_id}",
                          NotFound("no such capture", details={"capture_id": capture_id}))
    assert info is not None  # an unknown id was refused above
    return info


def _fields(body: dict[str, Any]) -> list[str]:
    fields = body.get("fields")
    if not isinstance(fields, list) or not fields or len(fields) > len(CAPTURE_FIELDS):
        raise InvalidInput("fields: a non-empty list", details={"field": "fields",
                                                              "allowed": CAPTURE_FIELDS})
    if not all(isinstance(f, str) and f in CAPTURE_FIELDS for f in fields) \
            or len(set(fields)) != len(fields):
        raise InvalidInput("fields: unknown or repeated field",
                           details={"field": "fields", "allowed": CAPTURE_FIELDS})
    return [str(f) for f in fields]


def _mode(body: dict[str, Any]) -> str:
    """Optional ``mode``: ``bridge`` | ``talk_through``; absent: the configured one ("")."""
    mode = body.get("mode")
    if mode is None:
        return ""
    if mode not in CAPTURE_MODES:
        raise InvalidInput("mode: bridge or talk_through", details={
            "field": "mode", "allowed": CAPTURE_MODES})
    return str(mode)


def _optional(body: dict[str, Any], fields: list[str]) -> list[str]:
    """Optional ``optional``: fields of the request the agent or caller may skip."""
    optional = body.get("optional", [])
    if not isinstance(optional, list) or not all(isinstance(f, str) and f in fields
                                                 for f in optional):
        raise InvalidInput("optional: a list of requested fields", details={
            "field": "optional", "allowed": fields})
    return [str(f) for f in optional]


async def request_capture(request: web.Request, principal: Principal) -> web.StreamResponse:
    call = await _owned_call(request, principal, Permission.CAPTURES_REQUEST)
    service = _service(request)
    body = await read_json(request)
    fields, mode = _fields(body), _mode(body)
    optional = _optional(body, fields)
    capture_id = await service.request(call, fields, actor=principal.user.actor, mode=mode,
                                       optional=optional)
    await asyncio.to_thread(deps_of(request).audit.append, principal.user.actor,
                            "capture.request", capture_id,
                            {"call_id": call.call_id, "fields": fields,
                             **({"mode": mode} if mode else {}),
                             **({"optional": optional} if optional else {})})
    return web.json_response({"capture_id": capture_id}, status=201)


async def control_field(request: web.Request, principal: Principal) -> web.StreamResponse:
    """``{"action": "rerequest" | "cancel" | "skip"}`` for one field of a running capture;
    cancelling a field needs ``captures.cancel``, the others ``captures.request``. 202: the
    flow applies it (the desk sees ``field_requested``, ``field_cancelled``...)."""
    body = await read_json(request)
    action, field = body.get("action"), request.match_info["field"]
    if action not in FIELD_ACTIONS:
        raise InvalidInput("action: rerequest, cancel or skip", details={
            "field": "action", "allowed": list(FIELD_ACTIONS)})
    if field not in CAPTURE_FIELDS:
        raise InvalidInput("field: unknown field", details={"field": "field",
                                                            "allowed": CAPTURE_FIELDS})
    permission = Permission.CAPTURES_CANCEL if action == "cancel" \
        else Permission.CAPTURES_REQUEST
    call = await _owned_call(request, principal, permission)
    service, capture_id = _service(request), _id(request, "capture_id")
    await service.control_field(call, capture_id, field, str(action),
                                actor=principal.user.actor)
    await asyncio.to_thread(deps_of(request).audit.append, principal.user.actor,
                            "capture.field_" + str(action), capture_id,
                            {"call_id": call.call_id, "field": field})
    return web.json_response({"capture_id": capture_id, "field": field, "action": action},
                             status=202)


async def cancel_capture(request: web.Request, principal: Principal) -> web.StreamResponse:
    call = await _owned_call(request, principal, Permission.CAPTURES_CANCEL)
    service = _service(request)
    capture_id = _id(request, "capture_id")
    await service.cancel(call, capture_id, actor=principal.user.actor)
    await asyncio.to_thread(deps_of(request).audit.append, principal.user.actor,
                            "capture.cancel", capture_id, {"call_id": call.call_id})
    return web.json_response({"capture_id": capture_id, "cancelled": True})


async def get_capture(request: web.Request, principal: Principal) -> web.StreamResponse:
    service = _service(request)
    info = await _owned_capture(request, principal, service, Permission.CAPTURES_VIEW)
    return web.json_response(info.to_json())


async def reveal(request: web.Request, principal: Principal) -> web.StreamResponse:
    deps, service = deps_of(request), _service(request)
    body = await read_json(request)
    reason = text_field(body, "reason", min_len=5, max_len=500).strip()
    otp = text_field(body, "otp", required=False, max_len=16)
    info = await _owned_capture(request, principal, service, Permission.VAULT_REVEAL)
    await asyncio.to_thread(deps.auth.require_fresh_totp, principal.user, otp,
                            purpose="reveal", remote=client_ip(request, deps.web))
    kinds = revealable_kinds(deps.web.reveal_kinds)
    await asyncio.to_thread(deps.audit.append, principal.user.actor, "capture.reveal",
                            info.capture_id, {"call_id": info.call_id, "reason": reason,
                                              "kinds": sorted(kinds)})
    values = await service.reveal(info.capture_id, kinds=kinds, actor=principal.user.actor,
                                  reason=reason)
    return web.json_response({"capture_id": info.capture_id, "values": values})


GUARDED: dict[tuple[str, str], Guarded] = {
    ("POST", "/api/v1/calls/{call_id}/captures"): request_capture,
    ("DELETE", "/api/v1/calls/{call_id}/captures/{capture_id}"): cancel_capture,
    ("POST", "/api/v1/calls/{call_id}/captures/{capture_id}/fields/{field}"): control_field,
    ("GET", "/api/v1/captures/{capture_id}"): get_capture,
    ("POST", "/api/v1/captures/{capture_id}/reveal"): reveal,
}
