"""callsec's ARI client (REST + events websocket) and typed ARI models.

- :mod:`callsec_ari.ari.client`: :class:`AriClient` (REST helpers from
  :mod:`callsec_ari.ari.operations`, :meth:`AriClient.events` from :mod:`callsec_ari.ari.events`).
- :mod:`callsec_ari.ari.models`: frozen event/resource dataclasses and :func:`parse_event`.
- :mod:`callsec_ari.ari.errors`: :class:`AriError` and its per-status subclasses.
"""

from callsec_ari.ari.client import AriClient
from callsec_ari.ari.errors import (
    AriAuthError,
    AriBadRequest,
    AriConflict,
    AriConnectionError,
    AriError,
    AriNotFound,
    AriProtocolError,
    AriServerError,
    AriUnprocessable,
)
from callsec_ari.ari.models import AriEvent, Connected, Disconnected, UnknownEvent, parse_event

__all__ = [
    "AriAuthError",
    "AriBadRequest",
    "AriClient",
    "AriConflict",
    "AriConnectionError",
    "AriError",
    "AriEvent",
    "AriNotFound",
    "AriProtocolError",
    "AriServerError",
    "AriUnprocessable",
    "Connected",
    "Disconnected",
    "UnknownEvent",
    "parse_event",
]
