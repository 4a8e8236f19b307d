"""The network guard: the decision on addresses (a table, nothing connected), then the transport on loopback
listeners only (127.0.0.1 allowed by the policy, 127.0.0.2 refused)."""

import socket
import ssl
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest
import trustme

from kernel.netguard import AddressRefused, NetPolicy, URLRefused, check_url, guarded_client, refusal
from testing.loopback import Listener, ScriptedResolver, twin_listeners

REFUSED = [
    # everything either former guard refused …
    "127.0.0.1",
    "127.255.255.254",
    "10.0.0.5",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "0.0.0.0",
    "0.1.2.3",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "192.0.0.8",
    "192.0.2.1",
    "198.18.0.1",
    "198.51.100.7",
    "203.0.113.9",
    "::1",
    "::",
    "fe80::1",
    "fe80::1%eth0",
    "fc00::1",
    "fd12:3456::1",
    "fec0::1",
    "ff02::1",
    "2001:db8::1",
    "::ffff:10.0.0.1",
    # … and what neither did consistently: carrier-grade NAT, the IPv6 forms of refused IPv4 addresses
    "100.64.0.1",
    "100.100.100.200",  # a cloud's metadata service on CGNAT space
    "100.127.255.254",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:100.64.0.1",
    "::127.0.0.1",  # IPv4-compatible
    "::10.0.0.1",
    "64:ff9b::127.0.0.1",  # NAT64
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b::100.64.0.1",
    "64:ff9b:1::a00:1",  # local-use NAT64
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::",  # 6to4 of 169.254.169.254
    "2002:0a00:0001::1",  # 6to4 of 10.0.0.1
    "2002:6440:1::1",  # 6to4 of 100.64.0.1
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    "100::1",
    "3fff::1",
    "5f00::1",
]
ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.1",  # just above
    "2606:4700::1111",
    "2a00:1450:4001:82a::200e",
    "::ffff:8.8.8.8",  # a public IPv4 address written the IPv6 way
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
    "2002:808:808::1",  # 6to4 of 8.8.8.8
]


@pytest.mark.parametrize("address", REFUSED)
def test_internal_addresses_are_refused(address):
    assert refusal(address) is not None
    assert NetPolicy().refusal("tenant.example", address) is not None


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address):  # a decision only: nothing connects to them
    assert refusal(address) is None


def test_the_reason_names_what_the_address_is_even_inside_ipv6():
    assert refusal("::ffff:127.0.0.1") == "a loopback address embedded in ::ffff:7f00:1"
    assert refusal("64:ff9b::a9fe:a9fe").startswith("a link-local address embedded")
    assert refusal("2002:6440:1::1").startswith("a carrier-grade NAT address embedded")
    assert refusal("100.64.0.1") == "a carrier-grade NAT address"


def test_the_operator_allows_hosts_networks_or_everything():
    policy = NetPolicy.from_entries([" Hooks.Internal. ", "10.1.0.0/16", "127.0.0.1", "[::1]", ""])
    assert policy.refusal("hooks.internal", "10.9.9.9") is None  # a named host, whatever it resolves to
    assert policy.refusal("HOOKS.internal", "192.168.0.1") is None
    assert policy.refusal("gateway.corp", "10.1.2.3") is None  # an address in an allowed network
    assert policy.refusal("gateway.corp", "10.2.0.1") == "a private address"
    assert policy.refusal("127.0.0.1", "127.0.0.1") is None
    assert policy.refusal("127.0.0.2", "127.0.0.2") == "a loopback address"
    assert policy.refusal("localhost", "::1") is None
    assert policy.refusal("other.internal", "169.254.169.254") is not None
    assert NetPolicy(allow_private=True).refusal("x", "169.254.169.254") is None
    assert NetPolicy().refusal("x", "8.8.8.8") is None


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        ("ftp://example.com/", "Invalid URL."),
        ("http:///nohost", "Invalid URL."),
        ("http://[::1/", "Invalid URL."),
        ("http://user:pw@8.8.8.8/", "No user:password@."),
        ("http://127.0.0.1:8080/v1", "Internal addresses are not allowed."),
        ("http://[::ffff:127.0.0.1]/", "Internal addresses are not allowed."),
        ("http://100.64.0.1/", "Internal addresses are not allowed."),
        ("http://localhost/", "Internal addresses are not allowed."),
    ],
)
def test_check_url_refuses_with_a_hint_for_the_form(url, hint):
    with pytest.raises(URLRefused) as refused:
        check_url(url, NetPolicy())
    assert refused.value.hint == hint


def test_check_url_passes_a_public_literal():
    check_url("https://8.8.8.8/v1", NetPolicy())  # a literal: getaddrinfo sends nothing


# --- the transport, on loopback listeners ---------------------------------------------------------------

ONLY_127_0_0_1 = NetPolicy.from_entries(["127.0.0.1"])


def test_a_refused_address_is_never_connected_to():
    with Listener("127.0.0.2") as refused, guarded_client(lambda: ONLY_127_0_0_1) as client:
        with pytest.raises(AddressRefused, match="loopback"):
            client.get(refused.url + "/x")
    assert refused.requests == []


def test_a_redirect_is_returned_not_followed():
    with (
        Listener("127.0.0.2") as refused,
        Listener("127.0.0.1", redirect_to=refused.url) as allowed,
        guarded_client(lambda: ONLY_127_0_0_1) as client,
    ):
        response = client.get(allowed.url + "/start")
    assert response.status_code == 302 and response.headers["location"] == refused.url + "/start"
    assert len(allowed.requests) == 1 and refused.requests == []


def test_the_connection_goes_to_the_address_that_was_checked(monkeypatch):
    """A rebinding DNS server answers an allowed address to the check and a refused one to the connect; with a
    single lookup whose answer is the socket's address there is no second answer to give."""
    checked, rebound = twin_listeners("127.0.0.1", "127.0.0.2")
    resolver = ScriptedResolver("llm.rebind.test", ["127.0.0.1", "127.0.0.2"])
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    policy = NetPolicy.from_entries(["127.0.0.1/32"])
    try:
        with guarded_client(lambda: policy) as client:
            response = client.get(f"http://llm.rebind.test:{checked.port}/v1/models")
    finally:
        checked.close()
        rebound.close()
    assert response.status_code == 200
    assert resolver.lookups == 1
    [request] = checked.requests
    assert request["headers"]["Host"] == f"llm.rebind.test:{checked.port}"  # the request's own Host header
    assert rebound.requests == []


def test_a_host_with_one_refused_answer_among_others_is_refused(monkeypatch):
    real = socket.getaddrinfo

    def two_answers(host, port, *args, **kwargs):
        if host != "mixed.test":
            return real(host, port, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (a, int(port))) for a in PAIR]

    PAIR = ["127.0.0.1", "127.0.0.2"]
    monkeypatch.setattr(socket, "getaddrinfo", two_answers)
    with Listener("127.0.0.1") as allowed, guarded_client(lambda: ONLY_127_0_0_1) as client:
        with pytest.raises(AddressRefused, match="127.0.0.2"):
            client.get(f"http://mixed.test:{allowed.port}/")
    assert allowed.requests == []


def test_an_unanswered_port_is_a_connect_error_and_the_policy_is_read_at_each_connection():
    policy = {"now": ONLY_127_0_0_1}
    with Listener("127.0.0.1") as allowed:
        with guarded_client(lambda: policy["now"]) as client:
            with pytest.raises(httpx2.ConnectError):
                client.get("http://127.0.0.1:9/")  # the discard port: nobody listens
            policy["now"] = NetPolicy()  # the operator withdrew the allowance
            with pytest.raises(AddressRefused):
                client.get(allowed.url)
    assert allowed.requests == []


@pytest.mark.parametrize(("certified", "verified"), [("llm.tls.test", True), ("other.test", False)])
def test_tls_runs_on_the_host_name_while_the_socket_goes_to_the_checked_address(monkeypatch, certified, verified):
    """SNI and the certificate check use the URL's host, not the address connected to: a certificate for
    that host passes, one for another host fails, as with an ordinary client."""
    ca = trustme.CA()
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(certified).configure_cert(server_tls)
    names_asked: list[str | None] = []
    server_tls.sni_callback = lambda _socket, name, _context: names_asked.append(name)
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)
    monkeypatch.setattr(socket, "getaddrinfo", ScriptedResolver("llm.tls.test", ["127.0.0.1"]))
    with (
        Listener("127.0.0.1", tls=server_tls) as server,
        guarded_client(lambda: ONLY_127_0_0_1, ssl_context=client_tls) as client,
    ):
        url = f"https://llm.tls.test:{server.port}/v1/models"
        if verified:
            assert client.get(url).status_code == 200
            assert server.requests[0]["headers"]["Host"] == f"llm.tls.test:{server.port}"
        else:
            with pytest.raises(httpx2.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                client.get(url)
            assert server.requests == []
    assert names_asked == ["llm.tls.test"]


def test_the_kernel_imports_no_django_app():
    """The kernel sits below every app (STYLE.md): importing it pulls in neither Django nor an app."""
    probe = (
        "import sys, kernel.netguard; "
        "apps = {'django', 'config', 'business', 'ai_core', 'ai_providers', 'ai_openai', 'ai_usage', 'web', "
        "'webhooks', 'ops', 'aicore'}; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in apps))"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=root)
    assert done.stdout.strip() == "[]"
