"""Session, call-list, audit and admin routes (``/api/v1``; see CONTRACT.md)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from aiohttp import web

from callsec_ari.access.auth import Principal
from callsec_ari.access.roles import Permission, allowed_any, permissions_of, revealable_kinds
from callsec_ari.core.errors import InvalidInput
from callsec_ari.store.models import AuditHeadRow
from callsec_ari.web.customer import verified_customer
from callsec_ari.web.deps import WebDeps
from callsec_ari.web.guard import Guarded, Handler, deps_of
from callsec_ari.web.security import (
    clear_session_cookies,
    client_ip,
    read_json,
    set_session_cookies,
    text_field,
)
from callsec_ari.web.views import call_owner, call_view, owner_of, remote_call_view

VIEW_CALLS = (Permission.CALLS_VIEW_OWN, Permission.CALLS_VIEW_TEAM)
MAX_AUDIT = 1000


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


async def login(request: web.Request) -> web.StreamResponse:
    deps = deps_of(request)
    body = await read_json(request)
    username = text_field(body, "username", max_len=64)
    password = text_field(body, "password", max_len=1024)
    otp = text_field(body, "otp", max_len=16)
    kind = text_field(body, "session", required=False, max_len=8) or "bearer"
    if kind not in ("bearer", "cookie"):
        raise InvalidInput("session: bearer or cookie", details={"field": "session"})
    issued = await asyncio.to_thread(deps.auth.login, username, password, otp,
                                     remote=client_ip(request, deps.web), kind=kind)
    data: dict[str, Any] = {"expires_at": issued.expires_at.isoformat(),
                            "user": issued.user.to_json()}
    if kind == "cookie":
        response = _json({**data, "csrf_token": issued.csrf_token})
        set_session_cookies(response, issued, secure=deps.web.secure_cookies,
                            max_age=deps.web.session_ttl_seconds)
        return response
    return _json({**data, "token": issued.token})


async def logout(request: web.Request, principal: Principal) -> web.StreamResponse:
    deps = deps_of(request)
    await asyncio.to_thread(deps.auth.logout, principal)
    response = _json({"ok": True})
    clear_session_cookies(response, secure=deps.web.secure_cookies)
    return response


async def me(request: web.Request, principal: Principal) -> web.StreamResponse:
    deps, user = deps_of(request), principal.user
    kinds = sorted(revealable_kinds(deps.web.reveal_kinds)) \
        if allowed_any(user.subject, (Permission.VAULT_REVEAL,)) else []
    return _json({**user.to_json(), "permissions": permissions_of(user.role),
                  "reveal_kinds": kinds, "session": principal.kind,
                  "expires_at": principal.expires_at.isoformat(),
                  "capture_available": deps.captures is not None})


async def calls(request: web.Request, principal: Principal) -> web.StreamResponse:
    deps = deps_of(request)
    owners = await asyncio.to_thread(deps.users.endpoint_owners)
    subject, out = principal.user.subject, []
    for call in deps.calls:
        owner = call_owner(call, owners)
        if allowed_any(subject, VIEW_CALLS, owner):
            view = call_view(call, owner, owners)
            view["customer"] = await verified_customer(deps.customer_names, principal, call,
                                                       owner)
            view["node"] = deps.cluster.node_id if deps.cluster is not None else None
            out.append(view)
    for row in deps.cluster.remote_calls() if deps.cluster is not None else ():
        owner = owner_of(row.agent_endpoint, owners)  # another node runs it (the registry)
        if deps.calls.get(row.call_id) is None and allowed_any(subject, VIEW_CALLS, owner):
            out.append(remote_call_view(row, owner, owners))
    out.sort(key=lambda c: c["call_id"])
    return _json({"calls": out})


def _since(request: web.Request) -> datetime | int | None:
    raw = request.query.get("since", "").strip()
    if not raw:
        return None
    if raw.isdigit():
        return int(raw)
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput("since: a sequence number or an ISO 8601 time",
                           details={"field": "since"}) from None


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", "200")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_AUDIT:
        raise InvalidInput(f"limit: 1 to {MAX_AUDIT}", details={"field": "limit"})
    return int(raw)


def _newest(deps: WebDeps, since: datetime | int | None, window: int) -> datetime | int:
    """Without ``since``: start ``window`` entries before the newest one (the tail)."""
    if since is not None:
        return since
    with deps.db.session() as s:
        head = s.get(AuditHeadRow, 1)
        return max(0, (head.seq if head is not None else 0) - window)


async def audit(request: web.Request, principal: Principal) -> web.StreamResponse:
    """Entries after ``since`` (a seq number or an ISO time), oldest first; without
    ``since`` the newest ``limit`` entries."""
    deps, limit = deps_of(request), _limit(request)
    since = await asyncio.to_thread(_newest, deps, _since(request), limit)
    entries = await asyncio.to_thread(deps.audit.tail, since, limit=limit)
    return _json({"entries": [e.to_json() for e in entries],
                  "last_seq": entries[-1].seq if entries else None})


async def team_audit(request: web.Request, principal: Principal) -> web.StreamResponse:
    """A supervisor's view: entries by or about the members of their team."""
    deps, team = deps_of(request), principal.user.team
    members = set(await asyncio.to_thread(deps.users.team_members, team)) if team else set()
    actors = {f"user:{m}" for m in members}
    since = await asyncio.to_thread(_newest, deps, _since(request), MAX_AUDIT)
    entries = await asyncio.to_thread(deps.audit.tail, since, limit=MAX_AUDIT)
    mine = [e for e in entries if e.actor in actors or e.target in members]
    return _json({"entries": [e.to_json() for e in mine][-_limit(request):],
                  "last_seq": entries[-1].seq if entries else None})


async def users(request: web.Request, principal: Principal) -> web.StreamResponse:
    found = await asyncio.to_thread(deps_of(request).users.all)
    return _json({"users": [u.to_json() for u in found]})


async def keys(request: web.Request, principal: Principal) -> web.StreamResponse:
    data_keys = deps_of(request).users.keys

    def status() -> dict[str, Any]:
        counts = data_keys.counts_by_version()
        return {"kek_versions": data_keys.envelope.keyring.versions(),
                "data_keys_by_kek_version": {str(v): n for v, n in sorted(counts.items())}}
    return _json(await asyncio.to_thread(status))


GUARDED: dict[tuple[str, str], Guarded] = {
    ("POST", "/api/v1/logout"): logout,
    ("GET", "/api/v1/me"): me,
    ("GET", "/api/v1/calls"): calls,
    ("GET", "/api/v1/audit"): audit,
    ("GET", "/api/v1/team/audit"): team_audit,
    ("GET", "/api/v1/users"): users,
    ("GET", "/api/v1/keys"): keys,
}
OWN: dict[tuple[str, str], Handler] = {
    ("POST", "/api/v1/login"): login,
}
