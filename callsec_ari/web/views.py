"""What the API shows of a call or a progress event: masked by construction, checked again.

A call belongs to the agent whose endpoint it rang (``CallContext.agent_endpoint``,
set by the connect flow) and to that agent's team. The caller's number is only ever shown
as ``CallContext.caller_masked`` (``logs.mask_phone``: country code and last two
digits); a value with more digits than that is dropped, never shown.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from callsec_ari.access.roles import Owner
from callsec_ari.access.users import User, endpoint_name
from callsec_ari.core.ports import CallHandle
from callsec_ari.store.cluster import ClusterCall
from callsec_ari.store.models import utcnow

#: At most this many digits may appear in a masked caller number (``+49…78``).
MAX_MASKED_DIGITS = 4


def owner_of(endpoint: str | None, owners: Mapping[str, User]) -> Owner:
    name = endpoint_name(endpoint)
    user = owners.get(name) if name else None
    return Owner(agent_endpoint=name, team=user.team if user is not None else None)


def call_owner(call: CallHandle, owners: Mapping[str, User]) -> Owner:
    return owner_of(call.context.agent_endpoint, owners)


def masked_caller(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    if sum(ch.isdigit() for ch in value) > MAX_MASKED_DIGITS:
        return None
    return value


def call_view(call: CallHandle, owner: Owner, owners: Mapping[str, User]) -> dict[str, Any]:
    data = call.context
    agent = owners.get(owner.agent_endpoint) if owner.agent_endpoint else None
    started = call.started_at
    return {
        "call_id": call.call_id,
        "state": str(data.stage or call.flow.state_name).lower(),
        "verification": data.verification or None,
        "agent": owner.agent_endpoint,
        "agent_user": agent.name if agent is not None else None,
        "team": owner.team,
        "caller": masked_caller(data.caller_masked),
        "server": data.server,
        "capture_id": data.capture,
        "seconds": round(asyncio.get_running_loop().time() - started) if started else None,
    }


def remote_call_view(row: ClusterCall, owner: Owner,
                     owners: Mapping[str, User]) -> dict[str, Any]:
    """A call another node runs, as the registry shows it (what :func:`call_view` shows,
    without the caller and the verification, which only the owner holds)."""
    agent = owners.get(owner.agent_endpoint) if owner.agent_endpoint else None
    started = row.started_at
    return {
        "call_id": row.call_id, "state": row.state.lower(), "verification": None,
        "agent": owner.agent_endpoint, "agent_user": agent.name if agent is not None else None,
        "team": owner.team, "caller": None, "server": None, "capture_id": row.capture_id,
        "seconds": round((utcnow() - started).total_seconds()) if started else None,
        "node": row.node_id, "customer": None,
    }
