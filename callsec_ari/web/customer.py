"""The verified customer shown to the agent who handles the call (issue #18): display name and
verification method, nothing else of the customer (no phone number, no e-mail address).

Only for a call whose verification ended ``verified``, and only to a user granted
``calls.customer_name`` on it: the role scope ``own`` makes that the agent whose endpoint the
call rang (a supervisor watching a team member's call does not see the name). The name is read
from the customer store once per call and kept in memory (never logged, never on the bus).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from callsec_ari.access.auth import Principal
from callsec_ari.access.roles import Owner, Permission, allowed
from callsec_ari.core.errors import CallsecError
from callsec_ari.core.ports import CallHandle

#: customer ref -> display name (``""``: none on record); a lookup function of the store.
CustomerNames = Callable[[str], str]
_CACHE_MAX = 500


class NameCache:
    """(call id, customer ref) -> display name, bounded."""

    def __init__(self, lookup: CustomerNames) -> None:
        self.lookup = lookup
        self._names: OrderedDict[tuple[str, str], str] = OrderedDict()

    async def name(self, call_id: str, ref: str) -> str:
        key = (call_id, ref)
        if key not in self._names:
            try:
                self._names[key] = await asyncio.to_thread(self.lookup, ref)
            except CallsecError:  # erased, gone, database down: no name
                return ""
            while len(self._names) > _CACHE_MAX:
                self._names.popitem(last=False)
        return self._names[key]


def verification_method(call: CallHandle) -> str | None:
    """The method the call's verification used (``sms``, ``email``, ``totp``, ``none``...)."""
    flow = getattr(call.flow, "verification", call.flow)
    method = getattr(flow, "method", None)
    return method if isinstance(method, str) else None


async def verified_customer(names: NameCache | None, principal: Principal, call: CallHandle,
                            owner: Owner) -> dict[str, Any] | None:
    """``{"name": ..., "method": ...}`` for the handling agent of a verified call, else None."""
    ref = call.context.customer_ref
    if names is None or call.context.verification != "verified" or \
            not isinstance(ref, str) or \
            not allowed(principal.user.subject, Permission.CALLS_CUSTOMER_NAME, owner):
        return None
    return {"name": await names.name(call.call_id, ref) or None,
            "method": verification_method(call)}
