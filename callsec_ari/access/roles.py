"""The one permission table: which role may do what, to whose calls.

The API (``callsec_ari.web``), the CLI (``callsec users roles`` prints it, ``--role`` choices
come from :class:`Role`) and the tests all read :data:`PERMISSIONS` and :data:`ENDPOINTS`;
nothing else grants access.

======================  ==========  ==========  =====  =======
permission              agent       supervisor  admin  auditor
======================  ==========  ==========  =====  =======
calls.view_own          own         own         -      -
calls.view_team         -           team        -      -
captures.request        own         own         -      -
captures.cancel         own         team        -      -
captures.view           own         team        -      -
vault.reveal            -           team        -      -
users.manage            -           -           all    -
keys.manage             -           -           all    -
audit.read              -           -           -      all
audit.read_team         -           team        -      -
metrics.read            -           all         all    all
======================  ==========  ==========  =====  =======

Scopes: ``own`` - the call rang the user's own endpoint (``CallContext.agent_endpoint``
equals the user's ``endpoint``); ``team`` - own, or the call rang the endpoint of a user of the
same ``team``; ``all`` - no owner check (the permission concerns no call).

``vault.reveal`` is further limited to the kinds in ``[web] reveal_kinds`` (default ``iban``
and ``national_id``; ``card_number`` only when listed there); a CVV never exists to reveal.
Auditors read the audit trail (which holds no personal data) and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from callsec_ari.core.errors import ConfigError


class Role(StrEnum):
    AGENT = "agent"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"
    AUDITOR = "auditor"


class Permission(StrEnum):
    CALLS_VIEW_OWN = "calls.view_own"
    CALLS_VIEW_TEAM = "calls.view_team"
    #: The verified customer's display name and verification method (web/customer.py).
    CALLS_CUSTOMER_NAME = "calls.customer_name"
    CAPTURES_REQUEST = "captures.request"
    CAPTURES_CANCEL = "captures.cancel"
    CAPTURES_VIEW = "captures.view"
    APPROVALS_REQUEST = "approvals.request"
    APPROVALS_VIEW = "approvals.view"
    VAULT_REVEAL = "vault.reveal"
    USERS_MANAGE = "users.manage"
    KEYS_MANAGE = "keys.manage"
    AUDIT_READ = "audit.read"
    AUDIT_READ_TEAM = "audit.read_team"
    METRICS_READ = "metrics.read"


class Scope(StrEnum):
    OWN = "own"
    TEAM = "team"
    ALL = "all"


P, S = Permission, Scope

#: role -> permission -> scope. A permission a role does not list is denied.
PERMISSIONS: Mapping[Role, Mapping[Permission, Scope]] = MappingProxyType({
    Role.AGENT: MappingProxyType({
        P.CALLS_VIEW_OWN: S.OWN, P.CAPTURES_REQUEST: S.OWN, P.CAPTURES_CANCEL: S.OWN,
        P.CAPTURES_VIEW: S.OWN, P.APPROVALS_REQUEST: S.OWN, P.APPROVALS_VIEW: S.OWN,
        P.CALLS_CUSTOMER_NAME: S.OWN,
    }),
    Role.SUPERVISOR: MappingProxyType({
        P.CALLS_VIEW_OWN: S.OWN, P.CALLS_VIEW_TEAM: S.TEAM, P.CAPTURES_REQUEST: S.OWN,
        P.CALLS_CUSTOMER_NAME: S.OWN,
        P.CAPTURES_CANCEL: S.TEAM, P.CAPTURES_VIEW: S.TEAM, P.VAULT_REVEAL: S.TEAM,
        P.AUDIT_READ_TEAM: S.TEAM, P.METRICS_READ: S.ALL,
        P.APPROVALS_REQUEST: S.OWN, P.APPROVALS_VIEW: S.TEAM,
    }),
    Role.ADMIN: MappingProxyType({
        P.USERS_MANAGE: S.ALL, P.KEYS_MANAGE: S.ALL, P.METRICS_READ: S.ALL,
    }),
    Role.AUDITOR: MappingProxyType({
        P.AUDIT_READ: S.ALL, P.METRICS_READ: S.ALL,
    }),
})

#: Every kind a vault may hold; the CVV is not among them (PCI DSS: never stored).
VAULT_KINDS = ("card_number", "iban", "national_id", "postal_code", "expiry", "routing_number",
               "account_number")
NEVER_REVEALED = frozenset({"cvv"})


@dataclass(frozen=True)
class Subject:
    """The user asking."""

    name: str
    role: Role
    endpoint: str | None = None
    team: str | None = None


@dataclass(frozen=True)
class Owner:
    """Whose call (or capture of a call) it is: the endpoint the call rang and its team."""

    agent_endpoint: str | None = None
    team: str | None = None


def scope(role: Role, permission: Permission) -> Scope | None:
    return PERMISSIONS[role].get(permission)


def allowed(subject: Subject, permission: Permission, owner: Owner | None = None) -> bool:
    """May ``subject`` use ``permission`` on ``owner``'s call? Without ``owner``: does the
    role hold the permission at all (the owner is checked once the resource is known)."""
    granted = scope(subject.role, permission)
    if granted is None:
        return False
    if owner is None or granted is Scope.ALL:
        return True
    own = subject.endpoint is not None and owner.agent_endpoint == subject.endpoint
    if granted is Scope.OWN:
        return own
    return own or (subject.team is not None and owner.team == subject.team)


def allowed_any(subject: Subject, permissions: Iterable[Permission],
                owner: Owner | None = None) -> bool:
    return any(allowed(subject, p, owner) for p in permissions)


def permissions_of(role: Role) -> list[str]:
    return sorted(p.value for p in PERMISSIONS[role])


def revealable_kinds(configured: Iterable[str]) -> frozenset[str]:
    """``[web] reveal_kinds`` checked: known vault kinds only, the CVV never."""
    kinds = frozenset(k.strip().lower() for k in configured if k.strip())
    if kinds & NEVER_REVEALED:
        raise ConfigError("a CVV is never stored, so it cannot be revealed",
                          section="web", key="reveal_kinds")
    unknown = kinds - set(VAULT_KINDS)
    if unknown:
        raise ConfigError(f"unknown kind(s) {', '.join(sorted(unknown))}; known: "
                          f"{', '.join(VAULT_KINDS)}", section="web", key="reveal_kinds")
    return kinds


# -- the HTTP endpoints and what they need ---------------------------------------------

@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    #: Any one of these grants access; empty: any signed-in user (or anyone if not ``auth``).
    permissions: tuple[Permission, ...] = ()
    #: ``call`` / ``capture``: the owner check applies to that resource.
    resource: str | None = None
    auth: bool = True


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("POST", "/api/v1/login", auth=False),
    Endpoint("GET", "/healthz", auth=False),
    Endpoint("POST", "/api/v1/logout"),
    Endpoint("GET", "/api/v1/me"),
    Endpoint("GET", "/api/v1/calls", (P.CALLS_VIEW_OWN, P.CALLS_VIEW_TEAM)),
    Endpoint("GET", "/api/v1/calls/{call_id}/events", (P.CALLS_VIEW_OWN, P.CALLS_VIEW_TEAM),
             resource="call"),
    Endpoint("POST", "/api/v1/calls/{call_id}/captures", (P.CAPTURES_REQUEST,),
             resource="call"),
    Endpoint("DELETE", "/api/v1/calls/{call_id}/captures/{capture_id}", (P.CAPTURES_CANCEL,),
             resource="call"),
    # rerequest / skip need captures.request, cancel captures.cancel (checked by the handler)
    Endpoint("POST", "/api/v1/calls/{call_id}/captures/{capture_id}/fields/{field}",
             (P.CAPTURES_REQUEST, P.CAPTURES_CANCEL), resource="call"),
    Endpoint("GET", "/api/v1/captures/{capture_id}", (P.CAPTURES_VIEW,), resource="capture"),
    Endpoint("POST", "/api/v1/captures/{capture_id}/reveal", (P.VAULT_REVEAL,),
             resource="capture"),
    Endpoint("POST", "/api/v1/calls/{call_id}/approvals", (P.APPROVALS_REQUEST,),
             resource="call"),
    Endpoint("GET", "/api/v1/approvals/{approval_id}", (P.APPROVALS_VIEW,),
             resource="approval"),
    Endpoint("GET", "/api/v1/audit", (P.AUDIT_READ,)),
    Endpoint("GET", "/api/v1/team/audit", (P.AUDIT_READ_TEAM,)),
    Endpoint("GET", "/api/v1/users", (P.USERS_MANAGE,)),
    Endpoint("GET", "/api/v1/keys", (P.KEYS_MANAGE,)),
    Endpoint("GET", "/metrics", (P.METRICS_READ,)),
)


def endpoint(method: str, path: str) -> Endpoint:
    for ep in ENDPOINTS:
        if ep.method == method and ep.path == path:
            return ep
    raise KeyError(f"{method} {path} is not in the permission table")


def matrix() -> str:
    """The table as text (``callsec users roles``)."""
    roles = list(Role)
    width = max(len(p.value) for p in Permission) + 2
    lines = ["permission".ljust(width) + "".join(r.value.ljust(12) for r in roles)]
    for perm in Permission:
        cells = [(scope(r, perm) or "-").ljust(12) for r in roles]
        lines.append(perm.value.ljust(width) + "".join(cells))
    return "\n".join(line.rstrip() for line in lines)
