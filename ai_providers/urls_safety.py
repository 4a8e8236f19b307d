"""SSRF guard for company-supplied provider base URLs."""

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings

from business.errors import ApplicationError


class UnsafeBaseURL(ApplicationError):
    error_code = "UNSAFE_BASE_URL"


def _is_internal(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast or ip.is_unspecified


def check_base_url(url: str) -> str:
    """Refuse a base URL that is not http(s) or whose host resolves to a private, loopback or link-local address
    (cloud metadata services live there), unless the operator allowed it. Returns the URL without trailing slash.
    """
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise UnsafeBaseURL("base_url must be an http(s) URL with a host", errors={"base_url": ["Invalid URL."]})
    if parts.username or parts.password:
        raise UnsafeBaseURL("base_url must not embed credentials", errors={"base_url": ["No user:password@."]})
    host = parts.hostname
    if settings.AICORE_ALLOW_PRIVATE_PROVIDER_URLS or host in settings.AICORE_PROVIDER_HOST_ALLOWLIST:
        return url.rstrip("/")
    try:
        infos = socket.getaddrinfo(
            host, parts.port or (443 if parts.scheme == "https" else 80), proto=socket.IPPROTO_TCP
        )
    except (socket.gaierror, UnicodeError):
        raise UnsafeBaseURL(
            f"base_url host '{host}' does not resolve", errors={"base_url": ["Unknown host."]}
        ) from None
    if any(_is_internal(info[4][0]) for info in infos):
        raise UnsafeBaseURL(
            "base_url points to a private, loopback or link-local address; an operator must allow it "
            "(AICORE_ALLOW_PRIVATE_PROVIDER_URLS or AICORE_PROVIDER_HOST_ALLOWLIST)",
            errors={"base_url": ["Internal addresses are not allowed."]},
        )
    return url.rstrip("/")
