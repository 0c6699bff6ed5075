"""The client's address: the TCP peer, or what a trusted reverse proxy says it saw.

Only when the TCP peer is one of ``[web] trusted_proxies`` (addresses or CIDRs) is
``X-Forwarded-For`` read: its hops are walked from the right (the hop the trusted peer itself
added) past every trusted proxy; the first hop that is not a trusted proxy is the client. A
malformed hop ends the walk (the last trusted hop is then taken as the client: it is the one
that passed the garbage on). From any other peer the header is ignored, so a client cannot
choose the address the per-address login limit counts.

Pure functions (no aiohttp): the web layer passes the peer and the header values.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from functools import lru_cache

from callsec_ari.core.errors import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@lru_cache(maxsize=16)
def trusted_networks(values: tuple[str, ...]) -> tuple[Network, ...]:
    """``[web] trusted_proxies`` parsed; a bad entry is a :class:`ConfigError` naming the key."""
    networks: list[Network] = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ConfigError(f"not an IP address or CIDR: {value!r}", section="web",
                              key="trusted_proxies") from None
    return tuple(networks)


def _address(text: str) -> Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, networks: Iterable[Network]) -> bool:
    return any(address.version == n.version and address in n for n in networks)


def client_address(peer: str | None, forwarded_for: Sequence[str],
                   trusted: Sequence[Network]) -> str:
    """The client's address as text ('' when the peer is unknown)."""
    current = _address(peer or "")
    if current is None:
        return peer or ""
    if not trusted or not _trusted(current, trusted):
        return str(current)
    hops = [h for value in forwarded_for for h in value.split(",") if h.strip()]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            break
        current = address
        if not _trusted(address, trusted):
            break
    return str(current)
