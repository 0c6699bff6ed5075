"""Whom the FastAGI server trusts: the peers it accepts and the session check (pure parts).

A FastAGI connection carries no credential: anything that can reach the port could claim any
channel and caller ID and have callsec send a real code to a customer, say the last digits of
their number, lock them out or write vault items. So, in this order:

1. the connection's peer address must be in ``[agi] allowed_peers`` (default: loopback only),
   else it is closed before callsec reads a byte (:class:`PeerFilter`, in the server);
2. the session's AGI environment must check out against Asterisk before a flow starts: the
   channel ``agi_uniqueid`` exists, is named ``agi_channel``, has the claimed caller ID and is
   running the AGI application right now (:class:`SessionCheck`, a port the composition root
   fills; :func:`compare` is the pure comparison). A session that does not is closed with
   nothing written to it and audited as ``agi.session_refused`` with one of :data:`REASONS`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from callsec_ari.agi.protocol import AgiRequest
from callsec_ari.core.errors import ConfigError

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: ``[agi] allowed_peers``'s default: the loopback addresses (all of 127/8, and ::1).
LOOPBACK = ("127.0.0.0/8", "::1")

#: Why a session was refused (the audit's ``reason``; never anything the peer sent).
NO_UNIQUEID = "no_uniqueid"
NO_SUCH_CHANNEL = "no_such_channel"
CHANNEL_MISMATCH = "channel_mismatch"
CALLER_ID_MISMATCH = "caller_id_mismatch"
NOT_IN_AGI = "not_in_agi"
ASTERISK_UNREACHABLE = "asterisk_unreachable"
#: callsec already runs an AGI session for this channel (a second one is never Asterisk's)
DUPLICATE_SESSION = "duplicate_session"
REASONS = (NO_UNIQUEID, NO_SUCH_CHANNEL, CHANNEL_MISMATCH, CALLER_ID_MISMATCH, NOT_IN_AGI,
           ASTERISK_UNREACHABLE, DUPLICATE_SESSION)

#: Dialplan applications that run an AGI script on the channel.
AGI_APPLICATIONS = frozenset({"agi", "eagi", "deadagi"})

#: Asterisk's uniqueid: ``[systemname-]<epoch>.<sequence>`` (or an id ARI was given) ...
_UNIQUEID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
#: ... never with a run of digits as long as a phone or card number (the epoch has 10).
_NUMBER_RUN = re.compile(r"\d{12,}")


def parse_peers(entries: Iterable[str]) -> tuple[IpNetwork, ...]:
    """``["127.0.0.1", "10.0.0.0/24", "::1"]`` -> networks; :class:`ValueError` names a bad
    entry (host names are refused: an address is what the connection shows)."""
    networks: list[IpNetwork] = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or network: {entry.strip()!r}") from None
    if not networks:
        raise ValueError("at least one address or network is required")
    return tuple(networks)


def check_allowed_peers(entries: Iterable[str]) -> tuple[IpNetwork, ...]:
    """``[agi] allowed_peers`` at load time: a bad entry is a configuration error."""
    try:
        return parse_peers(entries)
    except ValueError as exc:
        raise ConfigError(str(exc), section="agi", key="allowed_peers") from None


class PeerFilter:
    """Is a connection's peer address one of the allowed peers?"""

    def __init__(self, networks: Iterable[IpNetwork]) -> None:
        self.networks = tuple(networks)

    @classmethod
    def from_strings(cls, entries: Iterable[str] = LOOPBACK) -> PeerFilter:
        return cls(parse_peers(entries))

    def allows(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host.partition("%")[0])  # fe80::1%eth0
        except ValueError:
            return False  # a Unix socket or something unknown: not an allowed peer
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:127.0.0.1 on a dual-stack socket
        return any(address.version == net.version and address in net for net in self.networks)


@dataclass(frozen=True, kw_only=True)
class ChannelFacts:
    """What Asterisk says about a channel: its name, caller ID and current application."""

    name: str
    caller_number: str = field(repr=False)
    application: str = ""


def caller_number(value: str) -> str:
    """Caller IDs as both sides spell "none": AGI says ``unknown``, ARI an empty string."""
    value = value.strip()
    return "" if value.lower() in ("unknown", "<unknown>") else value


def compare(request: AgiRequest, facts: ChannelFacts) -> str | None:
    """The reason the AGI environment does not match Asterisk's channel, or ``None``."""
    if facts.name != request.channel:
        return CHANNEL_MISMATCH
    if caller_number(facts.caller_number) != caller_number(request.callerid):
        return CALLER_ID_MISMATCH
    if facts.application.lower() not in AGI_APPLICATIONS:
        return NOT_IN_AGI
    return None


def safe_call_id(request: AgiRequest) -> str:
    """The call id for log lines and the audit of a *refused* session, whose uniqueid is
    whatever the peer sent: kept only when it has the shape of an Asterisk uniqueid."""
    uniqueid = request.uniqueid
    if _UNIQUEID.match(uniqueid) and not _NUMBER_RUN.search(uniqueid):
        return f"agi-{uniqueid}"
    return "agi-invalid"


class SessionCheck(Protocol):
    """The port: confirm a session's AGI environment against the Asterisk it claims to be from.

    Returns ``None`` when it checks out, else one of :data:`REASONS`. Must fail closed: when
    Asterisk cannot be asked, the answer is :data:`ASTERISK_UNREACHABLE`, never ``None``."""

    async def confirm(self, request: AgiRequest) -> str | None: ...
