"""The clients' coroutine calls (achat, for the asyncio executor) against the local fake server, through the
real async SDKs over real HTTP: the same answers (and token counts) as their synchronous calls, one kept async
client per event loop whose connections every call reuses, a cancelled call closes its stream, and a company's
own base URL (behind the network guard) has no async path."""

import asyncio
import gc
import time
import warnings

import pytest

from ai_providers.clients.anthropic_client import AnthropicClient
from ai_providers.clients.base import ChatRequest, PermanentProviderError, TransientProviderError
from ai_providers.clients.echo import EchoClient
from ai_providers.clients.openai_client import OpenAIClient
from ai_providers.services import CatalogueBound


@pytest.fixture(autouse=True)
def _collected():
    """Each test's SDK clients collected before the next test (their sockets closed within this module)."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def make(kind: str, fake_llm):
    if kind == "openai":
        return OpenAIClient(api_key="sk-test", base_url=fake_llm.openai_base_url, guarded=False), "gpt-4o-mini"
    return AnthropicClient(api_key="sk-test", base_url=fake_llm.base_url, guarded=False), "claude-haiku-4-5"


async def closing(client, work):
    """`work`, then the client's async HTTP client closed on the same loop (its pool belongs to that loop; the
    SDK closes only the HTTP clients it made itself)."""
    try:
        return await work
    finally:
        await client.aclose()
        await asyncio.sleep(0.05)  # the transports' close callbacks run on this loop before it ends


def request(model: str, text: str, **kwargs) -> ChatRequest:
    return ChatRequest(model=model, messages=[{"role": "user", "content": text}], max_tokens=100, **kwargs)


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
def test_a_coroutine_call_answers_as_the_thread_call_does(fake_llm, kind, stream):
    client, model = make(kind, fake_llm)
    text = "twice [fake chunks=3 usage=120,34]"
    progress: list[int] = []
    sync = client.chat(request(model, text, stream=stream), on_progress=lambda p: None, should_stop=lambda: False)
    coroutine = client.achat(
        request(model, text, stream=stream), on_progress=progress.append, should_stop=lambda: False
    )
    result = asyncio.run(coroutine)
    assert (result.completion, result.input_tokens, result.output_tokens) == (
        sync.completion,
        sync.input_tokens,
        sync.output_tokens,
    )
    assert result.finish_reason == sync.finish_reason and result.request_id
    if stream:
        assert progress and progress == sorted(progress)


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_provider_errors_map_as_on_the_thread_path(fake_llm, kind):
    client, model = make(kind, fake_llm)

    async def both() -> None:
        def ask(text: str):
            return client.achat(request(model, text), on_progress=lambda p: None, should_stop=lambda: False)

        with pytest.raises(TransientProviderError) as transient:
            await ask("[fake status=503]")
        assert transient.value.status_code == 503
        with pytest.raises(PermanentProviderError):
            await ask("[fake status=400]")

    asyncio.run(closing(client, both()))


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_a_cancelled_call_closes_the_providers_stream(fake_llm, kind):
    client, model = make(kind, fake_llm)

    async def cancelled() -> None:
        call = asyncio.ensure_future(
            client.achat(request(model, "[fake trickle=0.05]"), on_progress=lambda p: None, should_stop=lambda: False)
        )
        while fake_llm.trickling == 0:
            await asyncio.sleep(0.02)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call

    asyncio.run(closing(client, cancelled()))
    deadline = time.monotonic() + 5  # the fake sees the closed connection at its next chunk (0.05 s)
    while fake_llm.trickling and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fake_llm.trickling == 0


def test_echo_answers_the_same_as_a_coroutine():
    echo = EchoClient()
    ask = request("echo-1", "hi", options={"echo": {"chunks": 2, "delay_ms": 20}})
    sync = echo.chat(ask, on_progress=lambda p: None, should_stop=lambda: False)
    progress: list[int] = []
    result = asyncio.run(echo.achat(ask, on_progress=progress.append, should_stop=lambda: False))
    assert result == sync and progress == [50, 100]


def ask(client, model: str, text: str, **kwargs):
    return client.achat(request(model, text, **kwargs), on_progress=lambda p: None, should_stop=lambda: False)


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
def test_calls_on_one_loop_reuse_their_connections(fake_llm, kind, stream):
    """20 calls one after the other, then 3 rounds of 8 at once: one kept async client, whose pool gives each
    call a connection an earlier one left (a streamed body is read to its end, so its connection goes back)."""
    client, model = make(kind, fake_llm)

    async def calls() -> tuple[int, int]:
        before = fake_llm.connections
        for _ in range(20):
            result = await ask(client, model, "one by one", stream=stream)
            assert result.completion == "Fake: one by one"
        sequential = fake_llm.connections - before
        for _ in range(3):
            results = await asyncio.gather(*(ask(client, model, f"at once {i}", stream=stream) for i in range(8)))
            assert [r.completion for r in results] == [f"Fake: at once {i}" for i in range(8)]
        return sequential, fake_llm.connections - before

    sequential, total = asyncio.run(closing(client, calls()))
    assert sequential == 1
    assert total <= 8  # at most one per call at once, not one per call (44)


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_one_async_client_per_loop_kept_across_calls(fake_llm, kind):
    client, model = make(kind, fake_llm)

    async def two_calls():
        await ask(client, model, "a")
        first = client._async_sdk
        await ask(client, model, "b")
        assert client._async_sdk is first
        return first

    first = asyncio.run(closing(client, two_calls()))
    second = asyncio.run(closing(client, two_calls()))  # another loop: its own client (a pool is bound to a loop)
    assert first is not second


@pytest.mark.parametrize(
    ("kind", "directive"),
    [
        ("openai", "[fake usage=120,34 cached=100 reasoning=7]"),
        ("anthropic", "[fake usage=120,34 cached=100 cache_write=11 cache_write_1h=5]"),
    ],
)
@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
def test_usage_and_cached_tokens_read_alike_on_both_paths(fake_llm, kind, directive, stream):
    client, model = make(kind, fake_llm)
    sync = client.chat(request(model, directive, stream=stream), on_progress=lambda p: None, should_stop=lambda: False)
    result = asyncio.run(closing(client, ask(client, model, directive, stream=stream)))
    assert result.tokens == sync.tokens
    assert sync.tokens.cached_input_tokens == 100
    if kind == "openai":
        assert (sync.input_tokens, sync.output_tokens, sync.reasoning_tokens) == (120, 34, 7)
    else:  # Anthropic's input_tokens exclude the cache reads and writes: ours include them
        assert (sync.input_tokens, sync.cache_write_5m_tokens, sync.cache_write_1h_tokens) == (236, 11, 5)
    assert result.completion == sync.completion and result.model == sync.model
    assert result.extra["provider_response_id"] and result.headers == sync.headers


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_a_cancelled_stream_leaves_the_other_calls_their_connections(fake_llm, kind):
    """A cancelled call's connection is closed (the provider sees it); the loop's next calls still answer."""
    client, model = make(kind, fake_llm)

    async def cancel_then_call():
        call = asyncio.ensure_future(ask(client, model, "[fake trickle=0.05]"))
        while fake_llm.trickling == 0:
            await asyncio.sleep(0.02)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        return await ask(client, model, "after")

    assert asyncio.run(closing(client, cancel_then_call())).completion == "Fake: after"
    deadline = time.monotonic() + 5
    while fake_llm.trickling and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fake_llm.trickling == 0


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_a_company_base_url_keeps_the_threads_path(fake_llm, kind):
    """The network guard's transport is synchronous: a guarded client offers no coroutine call (the executor runs
    it on a thread, through the guard) and refuses to make an unguarded async client."""
    connections = fake_llm.connections
    if kind == "openai":
        client, model = OpenAIClient(api_key="sk-test", base_url=fake_llm.openai_base_url), "gpt-4o-mini"
    else:
        client, model = AnthropicClient(api_key="sk-test", base_url=fake_llm.base_url), "claude-haiku-4-5"
    assert client.async_capable is False
    bound = CatalogueBound(client, choice=None, capacity_key=None)
    assert bound.async_call(request(model, "hi")) is None
    with pytest.raises(RuntimeError):
        asyncio.run(ask(client, model, "hi"))
    assert fake_llm.connections == connections
    unguarded, _ = make(kind, fake_llm)
    assert unguarded.async_capable is True


def test_the_loops_pool_keeps_as_many_connections_as_calls_in_flight(fake_llm, settings):
    """120 calls at once, twice: the second round reuses the first's 120 connections (the SDKs' default pool
    keeps only 100 alive, and would close and reopen the rest at every round)."""
    settings.AICORE_ENGINE_IN_FLIGHT = 150
    client, model = make("openai", fake_llm)

    async def rounds() -> tuple[int, int]:
        before = fake_llm.connections
        await asyncio.gather(*(ask(client, model, "round one") for _ in range(120)))
        first = fake_llm.connections - before
        await asyncio.gather(*(ask(client, model, "round two") for _ in range(120)))
        return first, fake_llm.connections - before - first

    first, second = asyncio.run(closing(client, rounds()))
    assert first <= 120 and second == 0


def test_connections_outlive_a_pause_between_bursts(fake_llm):
    """The executor starts its calls in bursts (a claim's batch); a pause longer than httpx's 5 s keep-alive
    between two bursts keeps the connections (ASYNC_KEEPALIVE_SECONDS)."""
    client, model = make("openai", fake_llm)

    async def bursts() -> int:
        await asyncio.gather(*(ask(client, model, "burst") for _ in range(4)))
        before = fake_llm.connections
        await asyncio.sleep(5.5)
        await asyncio.gather(*(ask(client, model, "burst") for _ in range(4)))
        return fake_llm.connections - before

    assert asyncio.run(closing(client, bursts())) == 0
