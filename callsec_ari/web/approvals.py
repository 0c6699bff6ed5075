"""Payment approval routes (the work is :class:`~callsec_ari.approval.service.ApprovalFeature`;
absent -> 503 ``capture_unavailable``).

``POST /api/v1/calls/{call_id}/approvals {amount, currency, payee}`` by the agent handling the
call (``approvals.request``): 201 ``{"approval_id", "status": "pending"}`` once the message is
sent. ``GET /api/v1/approvals/{approval_id}`` (``approvals.view``): ``status`` is ``pending``,
``approved``, ``declined`` or ``failed``; why an approval failed is in the record and the audit,
not shown to the agent.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from aiohttp import web

from callsec_ari.access.auth import Principal
from callsec_ari.access.errors import CaptureUnavailable
from callsec_ari.access.roles import Permission
from callsec_ari.approval.record import Terms, parse_terms
from callsec_ari.core.errors import NotFound
from callsec_ari.core.ports import CallHandle
from callsec_ari.web.captures import _id
from callsec_ari.web.guard import Guarded, deps_of, require_visible, visible_call
from callsec_ari.web.security import read_json
from callsec_ari.web.views import owner_of


class ApprovalService(Protocol):
    """What the routes need (``callsec_ari.approval.service.ApprovalFeature``)."""

    @property
    def currencies(self) -> tuple[str, ...]: ...

    async def request(self, call: CallHandle, terms: Terms, *, actor: str) -> str: ...

    async def get(self, approval_id: str) -> tuple[dict[str, Any], str | None]: ...


def _service(request: web.Request) -> ApprovalService:
    service = deps_of(request).approvals
    if service is None:
        raise CaptureUnavailable()
    return service


async def request_approval(request: web.Request, principal: Principal) -> web.StreamResponse:
    call, _, _ = await visible_call(request, principal, (Permission.APPROVALS_REQUEST,),
                                    _id(request, "call_id"))
    service = _service(request)
    body = await read_json(request)
    terms = parse_terms(body, service.currencies)
    approval_id = await service.request(call, terms, actor=principal.user.actor)
    return web.json_response({"approval_id": approval_id, "status": "pending"}, status=201)


async def get_approval(request: web.Request, principal: Principal) -> web.StreamResponse:
    deps, service = deps_of(request), _service(request)
    approval_id = _id(request, "approval_id")
    try:
        info, endpoint = await service.get(approval_id)
        owner = owner_of(endpoint, await asyncio.to_thread(deps.users.endpoint_owners))
    except NotFound:
        info, owner = {}, None
    await require_visible(request, principal, (Permission.APPROVALS_VIEW,), owner,
                          f"approval {approval_id}",
                          NotFound("no such approval", details={"approval_id": approval_id}))
    return web.json_response(info)


GUARDED: dict[tuple[str, str], Guarded] = {
    ("POST", "/api/v1/calls/{call_id}/approvals"): request_approval,
    ("GET", "/api/v1/approvals/{approval_id}"): get_approval,
}
