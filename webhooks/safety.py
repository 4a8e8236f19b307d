"""SSRF guard for webhook targets: a brand must not make AI Core call into its own network.

A target must be http(s) and every address its host resolves to must be public, unless an operator allows
it (AICORE_WEBHOOK_ALLOW_PRIVATE, or the host / a network in AICORE_WEBHOOK_ALLOWED_HOSTS). It is checked
when an endpoint is saved and again right before each attempt, because DNS answers change.
"""

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings

from business.errors import ApplicationError


class UnsafeTarget(ApplicationError):
    error_code = "UNSAFE_WEBHOOK_URL"


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def _allowed_by_operator(host: str, addresses: list) -> bool:
    if settings.AICORE_WEBHOOK_ALLOW_PRIVATE:
        return True
    allowed = settings.AICORE_WEBHOOK_ALLOWED_HOSTS
    if host.lower() in {entry.lower() for entry in allowed}:
        return True
    networks = []
    for entry in allowed:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            continue
    return bool(addresses) and all(any(a in net for net in networks) for a in addresses)


def check_target(url: str) -> str:
    """The URL if it is a safe webhook target, else raise UnsafeTarget (400)."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise UnsafeTarget("The webhook URL must be http(s) with a host", errors={"url": ["Invalid URL."]})
    if parts.username or parts.password:
        raise UnsafeTarget("The webhook URL must not embed credentials", errors={"url": ["No user:password@."]})
    host = parts.hostname
    try:
        infos = socket.getaddrinfo(
            host, parts.port or (443 if parts.scheme == "https" else 80), proto=socket.IPPROTO_TCP
        )
    except (socket.gaierror, UnicodeError, ValueError):
        raise UnsafeTarget(f"The webhook host '{host}' does not resolve", errors={"url": ["Unknown host."]}) from None
    addresses = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
    if all(_public(a) for a in addresses) or _allowed_by_operator(host, addresses):
        return url
    raise UnsafeTarget(
        "The webhook URL points to a private, loopback, link-local or reserved address; an operator must "
        "allow it (AICORE_WEBHOOK_ALLOWED_HOSTS or AICORE_WEBHOOK_ALLOW_PRIVATE)",
        errors={"url": ["Internal addresses are not allowed."]},
    )
