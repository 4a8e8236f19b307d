"""The clients' coroutine calls (achat, for the asyncio executor) against the local fake server, through the
real async SDKs over real HTTP: the same answers as their synchronous calls, and a cancelled call closes its
stream."""

import asyncio
import gc
import time
import warnings

import pytest

from ai_providers.clients.anthropic_client import AnthropicClient
from ai_providers.clients.base import ChatRequest, PermanentProviderError, TransientProviderError
from ai_providers.clients.echo import EchoClient
from ai_providers.clients.openai_client import OpenAIClient


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
        await client._async_sdk._client.aclose()
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
