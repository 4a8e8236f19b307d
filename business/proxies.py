"""The client IP of a request: the socket's peer, or what a trusted proxy says it forwarded.

X-Forwarded-For is a list anyone can start: a client may send `X-Forwarded-For: 1.2.3.4` itself. Only the
entries appended by proxies we trust can be believed, so the list is read from the right (the hop nearest to
us) while each hop is a trusted proxy; the first address that is not one is the client. An entry that is not
an IP address ends the reading: what lies left of it cannot be believed.
"""

import ipaddress
from collections.abc import Mapping

from django.conf import settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def client_ip(meta: Mapping[str, str]) -> str | None:
    """The client IP of a request's META (REMOTE_ADDR, HTTP_X_FORWARDED_FOR), or None when the peer is unknown."""
    client = _address(meta.get("REMOTE_ADDR"))
    if client is None or not _trusted(client):
        return None if client is None else str(client)
    for hop in reversed(meta.get("HTTP_X_FORWARDED_FOR", "").split(",")):
        forwarded = _address(hop)
        if forwarded is None:
            break
        client = forwarded
        if not _trusted(forwarded):
            break
    return str(client)


def _address(text: str | None) -> Address | None:
    try:
        address = ipaddress.ip_address((text or "").strip())
    except ValueError:
        return None
    if address.version == 6 and address.scope_id:
        return None  # fe80::1%eth0 names an interface of the sender, not a client
    return getattr(address, "ipv4_mapped", None) or address


def _trusted(address: Address) -> bool:
    return any(address in network for network in settings.AICORE_TRUSTED_PROXIES)
