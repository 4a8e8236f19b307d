"""The one network guard: which addresses AI Core may connect to on a tenant's behalf, and an HTTP transport that
connects only to the address it checked.

A company's provider base URL and a brand's webhook URL are tenant input: without a guard, a tenant could make
AI Core call into its own network (cloud metadata services, databases, the admin of a neighbour). The rules:

1. `refusal(address)` says why an address is not a public unicast one (private, loopback, link-local, CGNAT,
   documentation, multicast, …), looking through the IPv6 forms that embed an IPv4 address (mapped, NAT64,
   6to4), so `::ffff:127.0.0.1` is refused like `127.0.0.1`.
2. A `NetPolicy` holds what an operator allows anyway (every address, some host names, some networks).
3. `GuardedTransport` resolves a host once, checks every address it resolves to, and opens the socket to one of
   those checked addresses: no second lookup a rebinding DNS server could answer differently. TLS still runs on
   the host name (SNI and certificate check), and the Host header is the request's own.

Redirects are never followed by the clients built on this transport (their callers turn a 3xx into an error):
a redirect would be a second, unchecked request.
"""

import contextlib
import functools
import ipaddress
import socket
import ssl
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpcore2
import httpx2

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Checked in order (the first match names the reason); anything else must also be `is_global` to pass.
# Listed rather than left to `is_global` alone: its tables change between Python versions, and some ranges here
# (NAT64 local use, documentation 3fff::/20, SRv6 5f00::/16) are "global" to it.
_REFUSED: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(network), reason)
    for network, reason in (
        ("0.0.0.0/8", "an unspecified or 'this network' address"),
        ("10.0.0.0/8", "a private address"),
        ("100.64.0.0/10", "a carrier-grade NAT address"),  # some clouds' metadata services live here
        ("127.0.0.0/8", "a loopback address"),
        ("169.254.0.0/16", "a link-local address"),  # cloud metadata (169.254.169.254)
        ("172.16.0.0/12", "a private address"),
        ("192.0.0.0/24", "an IETF protocol address"),
        ("192.0.2.0/24", "a documentation address"),
        ("192.88.99.0/24", "a 6to4 relay address"),
        ("192.168.0.0/16", "a private address"),
        ("198.18.0.0/15", "a benchmarking address"),
        ("198.51.100.0/24", "a documentation address"),
        ("203.0.113.0/24", "a documentation address"),
        ("224.0.0.0/4", "a multicast address"),
        ("240.0.0.0/4", "a reserved address"),  # 255.255.255.255 included
        ("::/128", "an unspecified address"),
        ("::1/128", "a loopback address"),
        ("::/96", "an IPv4-compatible address"),  # deprecated, ::127.0.0.1 among them
        ("64:ff9b:1::/48", "a local-use NAT64 address"),
        ("100::/64", "a discard-only address"),
        ("2001::/32", "a Teredo tunnel address"),  # the IPv4 inside is obfuscated: refuse them all
        ("2001:db8::/32", "a documentation address"),
        ("3fff::/20", "a documentation address"),
        ("5f00::/16", "an SRv6 address"),
        ("fc00::/7", "a unique-local (private) address"),
        ("fe80::/10", "a link-local address"),
        ("fec0::/10", "a site-local address"),
        ("ff00::/8", "a multicast address"),
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def parse_address(address: "str | IPAddress") -> IPAddress:
    """An address out of a resolver answer (an IPv6 scope such as `%eth0` dropped) or an address already."""
    if isinstance(address, str):
        return ipaddress.ip_address(address.split("%", 1)[0])
    return address


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries and delivers to: mapped (::ffff:a.b.c.d), NAT64, 6to4."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def refusal(address: "str | IPAddress") -> str | None:
    """Why AI Core must not connect to `address` on a tenant's behalf, or None for a public unicast address."""
    ip = parse_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            reason = refusal(inner)
            if reason:
                return f"{reason} embedded in {ip}"
            if ip.ipv4_mapped is not None:
                return None  # the same IPv4 address, written the IPv6 way
    for network, reason in _REFUSED:
        if ip.version == network.version and ip in network:
            return reason
    if not ip.is_global:
        return "not a public address"
    return None


def _normal_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


@dataclass(frozen=True)
class NetPolicy:
    """What an operator allows beyond public addresses.

    allow_private: every address (a closed network where tenants are trusted).
    allowed_hosts: host names allowed whatever they resolve to.
    allowed_networks: addresses allowed although internal (an operator's LLM gateway on 10.1.0.0/16).
    """

    allow_private: bool = False
    allowed_hosts: frozenset[str] = frozenset()
    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_entries(cls, entries: Iterable[str] = (), *, allow_private: bool = False) -> "NetPolicy":
        """A policy from an operator's list: each entry a host name, an address or a network (CIDR)."""
        hosts, networks = set(), []
        for entry in entries:
            entry = _normal_host(entry)
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry)
        return cls(allow_private=allow_private, allowed_hosts=frozenset(hosts), allowed_networks=tuple(networks))

    def refusal(self, host: str, address: "str | IPAddress") -> str | None:
        """Why a connection to `host` at `address` is refused under this policy, or None when it may go ahead."""
        if self.allow_private or _normal_host(host) in self.allowed_hosts:
            return None
        ip = parse_address(address)
        if any(ip.version == network.version and ip in network for network in self.allowed_networks):
            return None
        return refusal(ip)


class AddressRefused(Exception):
    """A host resolved to an address the policy refuses. Never an OSError: nobody may retry it as network trouble."""

    def __init__(self, host: str, address: str, reason: str):
        self.host, self.address, self.reason = host, address, reason
        shown = host if host == address else f"{host} ({address})"
        super().__init__(f"{shown} is {reason}; an operator must allow it")


def refused_in(exc: BaseException | None) -> AddressRefused | None:
    """The AddressRefused behind `exc`, if any: an SDK may wrap what the transport raised."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, AddressRefused):
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def resolve_checked(host: str, port: int, policy: NetPolicy) -> list[str]:
    """Every address `host` resolves to, in the resolver's order, once all of them passed the policy.

    All of them, not just the first: a host answering one public and one internal address is refused, since
    which one a client would use is not ours to predict. Raises AddressRefused, or OSError when it does not resolve.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (UnicodeError, ValueError) as exc:  # an unencodable or NUL-carrying name
        raise socket.gaierror(str(exc)) from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    for address in addresses:
        reason = policy.refusal(host, address)
        if reason:
            raise AddressRefused(host, address, reason)
    return addresses


class URLRefused(ValueError):
    """A URL the guard will not call; `hint` is the short text for the form field."""

    def __init__(self, message: str, hint: str):
        super().__init__(message)
        self.message, self.hint = message, hint


def check_url(url: str, policy: NetPolicy) -> None:
    """Refuse (URLRefused) a URL that is not http(s) with a host, embeds credentials, does not resolve, or
    resolves to an address the policy refuses. For saving a URL with a clear error; the transport checks again
    when it connects, because DNS answers change."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise URLRefused("the URL is malformed", "Invalid URL.") from None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise URLRefused("the URL must be http(s) with a host", "Invalid URL.")
    if parts.username or parts.password:
        raise URLRefused("the URL must not embed credentials", "No user:password@.")
    try:
        resolve_checked(parts.hostname, port, policy)
    except AddressRefused as exc:
        raise URLRefused(str(exc), "Internal addresses are not allowed.") from None
    except OSError:
        raise URLRefused(f"the host '{parts.hostname}' does not resolve", "Unknown host.") from None


# --- the transport ------------------------------------------------------------------------------------

PolicySource = Callable[[], NetPolicy]


class GuardedBackend(httpcore2.SyncBackend):
    """httpcore's socket opener, resolving and checking first, then connecting to a checked address.

    httpcore hands us the URL's host; we return a socket to an address we checked. It then starts TLS with the
    host name as SNI and verifies the certificate against it, so nothing else changes.
    """

    def __init__(self, policy: PolicySource):
        self.policy = policy  # read at each connection: an operator's change applies to pooled clients too

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        try:
            addresses = resolve_checked(host, port, self.policy())
        except OSError as exc:
            raise httpcore2.ConnectError(f"{host} does not resolve: {exc}") from exc
        failure: Exception | None = None
        for address in addresses:  # as socket.create_connection does: the next one when one does not answer
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                failure = exc
        raise failure or httpcore2.ConnectError(f"{host} has no address")


# httpcore's errors as httpx's, most specific first (what httpx's own transport does for its pool).
_HTTPX_ERRORS: tuple[tuple[type[Exception], type[httpx2.TransportError]], ...] = (
    (httpcore2.ConnectTimeout, httpx2.ConnectTimeout),
    (httpcore2.ReadTimeout, httpx2.ReadTimeout),
    (httpcore2.WriteTimeout, httpx2.WriteTimeout),
    (httpcore2.PoolTimeout, httpx2.PoolTimeout),
    (httpcore2.TimeoutException, httpx2.TimeoutException),
    (httpcore2.ConnectError, httpx2.ConnectError),
    (httpcore2.ReadError, httpx2.ReadError),
    (httpcore2.WriteError, httpx2.WriteError),
    (httpcore2.NetworkError, httpx2.NetworkError),
    (httpcore2.ProxyError, httpx2.ProxyError),
    (httpcore2.UnsupportedProtocol, httpx2.UnsupportedProtocol),
    (httpcore2.RemoteProtocolError, httpx2.RemoteProtocolError),
    (httpcore2.LocalProtocolError, httpx2.LocalProtocolError),
    (httpcore2.ProtocolError, httpx2.ProtocolError),
)


@contextlib.contextmanager
def _as_httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for core, mapped in _HTTPX_ERRORS:
            if isinstance(exc, core):
                raise mapped(str(exc)) from exc
        raise


class _ResponseStream(httpx2.SyncByteStream):
    def __init__(self, stream: Iterable[bytes]):
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        with _as_httpx_errors():
            yield from self._stream

    def close(self) -> None:
        if hasattr(self._stream, "close"):
            self._stream.close()


@functools.cache
def _default_ssl_context() -> ssl.SSLContext:
    # Loading the CA bundle takes milliseconds; one context serves every client (it is safe across threads).
    return httpx2.create_ssl_context()


class GuardedTransport(httpx2.BaseTransport):
    """An httpx transport on httpcore's connection pool whose every connection goes through GuardedBackend.

    Built on the public httpcore pool (httpx's own transport accepts no network backend). No proxy: a proxy
    would resolve the host itself, out of the guard's sight.
    """

    def __init__(
        self,
        policy: PolicySource,
        *,
        limits: httpx2.Limits | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ):
        limits = limits or httpx2.Limits()
        self._pool = httpcore2.ConnectionPool(
            ssl_context=ssl_context or _default_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(policy),
        )

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        core_request = httpcore2.Request(
            method=request.method,
            url=httpcore2.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _as_httpx_errors():
            response = self._pool.handle_request(core_request)
        return httpx2.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._pool.close()


def guarded_client(
    policy: PolicySource,
    *,
    limits: httpx2.Limits | None = None,
    ssl_context: ssl.SSLContext | None = None,
    **kwargs,
) -> httpx2.Client:
    """An httpx client that connects only to addresses `policy` allows, and never follows a redirect."""
    return httpx2.Client(
        transport=GuardedTransport(policy, limits=limits, ssl_context=ssl_context),
        follow_redirects=False,
        trust_env=False,
        **kwargs,
    )
