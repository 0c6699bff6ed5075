"""FastAGI: an in-house asyncio server (:mod:`.server`), the pure protocol (:mod:`.protocol`)
and the port that runs the core flows behind it (:mod:`.adapter`). Only Asterisk may drive it:
allowed peers and the session check's port (:mod:`.trust`), the check over ARI
(:mod:`.confirm`) and the bounded audit of refusals (:mod:`.refusals`)."""

from callsec_ari.agi.adapter import AgiCall, AgiPort, call_started
from callsec_ari.agi.protocol import (
    AgiArgumentError,
    AgiCommandError,
    AgiError,
    AgiHangup,
    AgiProtocolError,
    AgiReply,
    AgiRequest,
)
from callsec_ari.agi.server import AgiServer, AgiSession

__all__ = [
    "AgiArgumentError", "AgiCall", "AgiCommandError", "AgiError", "AgiHangup", "AgiPort",
    "AgiProtocolError", "AgiReply", "AgiRequest", "AgiServer", "AgiSession", "call_started",
]
