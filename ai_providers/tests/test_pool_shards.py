"""The provider clients' HTTP connections in small pools (common.PoolShards) against the local fake server: calls
spread over the pools, each counted out when its response closes, connections kept alive for the next calls."""

import asyncio
import ssl

import httpx2
import openai
import pytest
import trustme

from ai_providers.clients.common import LoopSDKs, ShardedAsyncTransport
from testing.loopback import Listener

LIMITS = httpx2.Limits(max_connections=100, max_keepalive_connections=16)
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi [fake chunks=2]"}], "stream": True}
HEADERS = {"Authorization": "Bearer sk-test"}


def test_a_loops_calls_spread_over_the_pools_and_keep_their_connections(fake_llm):
    transport = ShardedAsyncTransport(LIMITS, 4)
    url = fake_llm.openai_base_url + "/chat/completions"

    async def rounds() -> list[int]:
        opened = []
        async with httpx2.AsyncClient(transport=transport) as http:
            for _ in range(2):
                before = fake_llm.connections

                async def call():
                    async with http.stream("POST", url, json=BODY, headers=HEADERS) as response:
                        return b"".join([part async for part in response.aiter_bytes()])

                bodies = await asyncio.gather(*(call() for _ in range(12)))
                assert all(b"[DONE]" in body for body in bodies)
                assert transport.shards.calls == [0, 0, 0, 0]
                opened.append(fake_llm.connections - before)
        return opened

    first, second = asyncio.run(rounds())
    assert 4 <= first <= 12 and second == 0


def test_an_abandoned_body_and_a_failed_connect_count_out_too(fake_llm):
    transport = ShardedAsyncTransport(LIMITS, 2)

    async def calls() -> list[list[int]]:
        seen = []
        async with httpx2.AsyncClient(transport=transport) as http:
            url = fake_llm.openai_base_url + "/chat/completions"
            response = await http.send(http.build_request("POST", url, json=BODY, headers=HEADERS), stream=True)
            seen.append(list(transport.shards.calls))
            await response.aclose()  # its body unread (a cancel)
            with pytest.raises(httpx2.ConnectError):
                await http.post("http://127.0.0.1:1/v1/chat/completions", json=BODY)
            seen.append(list(transport.shards.calls))
        return seen

    assert asyncio.run(calls()) == [[1, 0], [0, 0]]


def test_the_pools_share_one_tls_context(monkeypatch):
    """Making a TLS context loads the CA bundle: one for the whole client, not one per pool (the loop would stall
    for each at the client's first call)."""
    import ssl

    made = []
    real = ssl.create_default_context
    monkeypatch.setattr(ssl, "create_default_context", lambda *a, **k: made.append(1) or real(*a, **k))
    transport = ShardedAsyncTransport(LIMITS, 16)
    assert len(transport.shards.pools) == 16
    assert len(made) == 1


@pytest.mark.parametrize("trusted", [True, False])
def test_the_pools_verify_tls_as_httpx_would_with_the_environments_ca_bundle(monkeypatch, settings, tmp_path, trusted):
    """A loop's async SDK client (LoopSDKs) over TLS, 16 calls at once on its 8 pools (each call on the least
    busy one): a server certified by the CA of SSL_CERT_FILE is answered, one certified by another CA is
    refused (the pools' one TLS context verifies)."""
    settings.AICORE_ENGINE_IN_FLIGHT = 64  # 8 pools
    server_ca, client_ca = trustme.CA(), trustme.CA()
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ca.issue_cert("127.0.0.1").configure_cert(server_tls)
    bundle = tmp_path / "ca.pem"
    (server_ca if trusted else client_ca).cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    sdks = LoopSDKs(
        lambda http: openai.AsyncOpenAI(
            api_key="sk-test", base_url=server.url + "/v1", http_client=http, max_retries=0
        ),
        guarded=False,
    )

    async def calls(count: int):
        sdk = sdks.current()
        try:
            pages = await asyncio.gather(*(sdk.models.list() for _ in range(count)))
            return [page.data for page in pages]
        finally:
            await sdks.aclose()

    with Listener("127.0.0.1", tls=server_tls) as server:
        if trusted:
            assert asyncio.run(calls(16)) == [[]] * 16
            assert len(server.requests) == 16
        else:
            with pytest.raises(openai.APIConnectionError):
                asyncio.run(calls(1))  # one: the others' handshakes would be left open, the server waiting
            assert server.requests == []
