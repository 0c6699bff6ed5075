"""Every route passes through here: sign-in, then the permission table (:mod:`access.roles`).

Routes are registered from :data:`roles.ENDPOINTS`, so a route cannot exist without a row in
the table. The role check happens before the handler runs; the owner check (whose call is it)
happens in the handler once the call or capture is known (:func:`require_owner`). Denials are
audited (``access.denied``).

A call (or capture) the user may not even *see* answers exactly like one that does not exist
(404 ``not_found``, :func:`require_visible`), after the same look-ups and the same audit entry,
so ids cannot be probed, not even by timing; a call the user sees but may not act on answers
403 ``forbidden``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import NoReturn

from aiohttp import web

from callsec_ari.access.auth import Principal
from callsec_ari.access.roles import ENDPOINTS, Endpoint, Owner, Permission, allowed_any
from callsec_ari.access.users import User
from callsec_ari.core.errors import CallsecError, Forbidden, NotFound
from callsec_ari.core.ports import CallHandle
from callsec_ari.store.cluster import ClusterCall
from callsec_ari.web.cluster import FORWARDED, ForwardTo
from callsec_ari.web.deps import WebDeps
from callsec_ari.web.security import authenticate
from callsec_ari.web.views import call_owner, owner_of

DEPS = web.AppKey("callsec_deps", WebDeps)
#: Who may see a call at all (and so learn that it exists).
SEE_CALL = (Permission.CALLS_VIEW_OWN, Permission.CALLS_VIEW_TEAM)

Guarded = Callable[[web.Request, Principal], Awaitable[web.StreamResponse]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def deps_of(request: web.Request) -> WebDeps:
    return request.app[DEPS]


async def deny(deps: WebDeps, principal: Principal, what: str,
               details: Mapping[str, object] | None = None) -> NoReturn:
    await asyncio.to_thread(deps.audit.append, principal.user.actor, "access.denied", what,
                            dict(details or {}))
    raise Forbidden("your role does not allow this", details={"resource": what})


async def require_owner(request: web.Request, principal: Principal,
                        permissions: Iterable[Permission], owner: Owner, what: str) -> None:
    perms = tuple(permissions)
    if not allowed_any(principal.user.subject, perms, owner):
        await deny(deps_of(request), principal, what,
                   {"permission": ",".join(p.value for p in perms)})


async def require_visible(request: web.Request, principal: Principal,
                          permissions: Iterable[Permission], owner: Owner | None, what: str,
                          unknown: CallsecError) -> Owner:
    """:func:`require_owner` for a resource looked up by id (``owner`` None: no such id).
    When the user may not see ``owner``'s calls at all, and when the id does not exist, the
    denial is audited and answers ``unknown``: the same answer after the same work, so
    another agent's call cannot be told from no call, not even by the time it takes."""
    perms = tuple(permissions)
    if owner is not None and allowed_any(principal.user.subject, SEE_CALL, owner):
        await require_owner(request, principal, perms, owner, what)
        return owner
    await asyncio.to_thread(deps_of(request).audit.append, principal.user.actor,
                            "access.denied", what,
                            {"permission": ",".join(p.value for p in perms)})
    raise unknown


def no_such_call(call_id: str) -> NotFound:
    return NotFound("no such active call", details={"call_id": call_id})


async def visible_call(request: web.Request, principal: Principal,
                       permissions: Iterable[Permission], call_id: str
                       ) -> tuple[CallHandle, Owner, Mapping[str, User]]:
    """The active call ``call_id`` if ``principal`` may use ``permissions`` on it; its owner
    and the endpoint owners. Unknown and unseeable calls answer the same 404 after the same
    look-ups (:func:`require_visible`)."""
    call, remote, owner, owners = await visible_anywhere(request, principal, permissions,
                                                         call_id)
    if remote is not None:
        raise ForwardTo(remote)  # the middleware asks the node that runs it
    assert call is not None  # an unknown id was refused
    return call, owner, owners


async def visible_anywhere(request: web.Request, principal: Principal,
                           permissions: Iterable[Permission], call_id: str
                           ) -> tuple[CallHandle | None, ClusterCall | None, Owner,
                                      Mapping[str, User]]:
    """:func:`visible_call` for a call this node runs or, from the registry, another node
    runs (not for a request another node forwarded: that one is answered here)."""
    deps = deps_of(request)
    call = deps.calls.get(call_id)
    owners = await asyncio.to_thread(deps.users.endpoint_owners)
    remote = None
    if call is None and deps.cluster is not None and FORWARDED not in request:
        remote = await deps.cluster.owner_of(call_id)
    found = call_owner(call, owners) if call is not None else \
        owner_of(remote.agent_endpoint, owners) if remote is not None else None
    owner = await require_visible(request, principal, permissions, found, f"call {call_id}",
                                  no_such_call(call_id))
    return call, remote, owner, owners


async def admit(request: web.Request, ep: Endpoint) -> Principal:
    """Sign-in and the role check of ``ep``'s row."""
    deps = deps_of(request)
    principal = await authenticate(request, deps)
    if ep.permissions and not allowed_any(principal.user.subject, ep.permissions):
        await deny(deps, principal, f"{ep.method} {ep.path}")
    return principal


def guarded(ep: Endpoint, handler: Guarded) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        return await handler(request, await admit(request, ep))
    return wrapped


def register(app: web.Application, guarded_handlers: Mapping[tuple[str, str], Guarded],
             own_handlers: Mapping[tuple[str, str], Handler]) -> None:
    """Add one route per row of :data:`ENDPOINTS`; a row without a handler (or a handler
    without a row) is a programming error. ``own_handlers`` are open routes and routes that
    call :func:`admit` themselves (``/metrics`` also accepts the scrapers' token)."""
    known = {(ep.method, ep.path) for ep in ENDPOINTS}
    extra = (set(guarded_handlers) | set(own_handlers)) - known
    if extra:
        raise RuntimeError(f"routes missing from the permission table: {sorted(extra)}")
    for ep in ENDPOINTS:
        key = (ep.method, ep.path)
        if key in own_handlers:
            app.router.add_route(ep.method, ep.path, own_handlers[key])
        else:
            app.router.add_route(ep.method, ep.path, guarded(ep, guarded_handlers[key]))
