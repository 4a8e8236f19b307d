"""The OpenAI and Anthropic clients against the local fake server, through the real SDKs over real HTTP."""

import json

import pytest

from ai_providers.clients.anthropic_client import AnthropicClient
from ai_providers.clients.base import (
    CallAbandoned,
    ChatRequest,
    PermanentProviderError,
    TransientProviderError,
)
from ai_providers.clients.openai_client import OpenAIClient

pytestmark = pytest.mark.filterwarnings("error")


@pytest.fixture(autouse=True)
def guard_allows_the_fake_server(settings):
    """The clients here are built as for a company's base URL (guarded): the operator allows the local fake, so
    every call below also goes through the network guard's transport."""
    settings.AICORE_PROVIDER_HOST_ALLOWLIST = ["127.0.0.1"]


@pytest.fixture(params=["openai", "anthropic"])
def client(request, fake_llm):
    if request.param == "openai":
        return OpenAIClient(api_key="sk-test", base_url=fake_llm.openai_base_url)
    return AnthropicClient(api_key="sk-test", base_url=fake_llm.base_url)


def ask(client, text, *, model=None, progress=None, should_stop=lambda: False, **kwargs):
    model = model or ("gpt-4o-mini" if isinstance(client, OpenAIClient) else "claude-haiku-4-5")
    request = ChatRequest(
        model=model,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}],
        **kwargs,
    )
    return client.chat(
        request,
        on_progress=(progress.append if progress is not None else lambda p: None),
        should_stop=should_stop,
    )


def last_request(fake_llm, marker):
    return next(r for r in reversed(fake_llm.requests) if marker in str(r["body"].get("messages")))


def test_a_streamed_answer_drives_progress_and_reads_usage_from_the_stream(client, fake_llm):
    progress = []
    result = ask(client, "stream me [fake chunks=4 delay=0.3 usage=1200,345]", progress=progress, max_tokens=100)
    assert result.completion == "Fake: stream me [fake chunks=4 delay=0.3 usage=1200,345]"
    assert (result.input_tokens, result.output_tokens) == (1200, 345)
    assert result.finish_reason in {"stop", "end_turn"}
    assert result.request_id and result.request_id.startswith("req_fake")
    assert result.extra["provider_response_id"]
    assert len(progress) >= 2 and progress == sorted(progress) and progress[-1] < 100
    body = last_request(fake_llm, "stream me")["body"]
    assert body["stream"] is True
    if isinstance(client, OpenAIClient):
        assert body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
def test_calls_one_after_another_share_one_kept_alive_connection(client, fake_llm, stream):
    """A streamed answer is read to the end of its body (past OpenAI's [DONE]): its connection goes back to the
    pool instead of being closed, so the next call needs no new connection (nor, over TLS, a new handshake)."""
    before = fake_llm.connections
    for number in range(3):
        assert ask(client, f"again {number} [fake chunks=3]", stream=stream).completion.startswith("Fake: again")
    assert fake_llm.connections - before == 1


def test_streamed_tool_calls_are_assembled_from_their_deltas(fake_llm):
    client = OpenAIClient(api_key="sk-test", base_url=fake_llm.openai_base_url)
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    result = ask(client, "find [fake tool]", tools=tools)
    assert result.finish_reason == "tool_calls"
    [call] = result.extra["tool_calls"]
    assert call["id"].startswith("call_fake") and call["function"]["name"] == "lookup"
    assert json.loads(call["function"]["arguments"]) == {"q": "find [fake tool]"}


def test_a_whole_answer_reads_usage_and_request_id(client):
    result = ask(client, "whole [fake usage=10,20]", stream=False)
    assert result.completion == "Fake: whole [fake usage=10,20]"
    assert (result.input_tokens, result.output_tokens) == (10, 20)
    assert result.request_id.startswith("req_fake")


def test_json_mode_is_sent_and_the_answer_parsed(fake_llm):
    client = OpenAIClient(api_key="sk-test", base_url=fake_llm.openai_base_url)
    result = ask(client, "json please", response_format={"type": "json_object"})
    assert result.extra["json"] == {"answer": "json please"}
    assert last_request(fake_llm, "json please")["body"]["response_format"] == {"type": "json_object"}


def test_tools_are_passed_through(fake_llm):
    client = OpenAIClient(api_key="sk-test", base_url=fake_llm.openai_base_url)
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    ask(client, "tools please", tools=tools, options={"tool_choice": "auto"})
    body = last_request(fake_llm, "tools please")["body"]
    assert body["tools"] == tools and body["tool_choice"] == "auto"


def test_o_series_rules_developer_role_max_completion_tokens_reasoning_effort_no_temperature(fake_llm):
    client = OpenAIClient(api_key="sk-test", base_url=fake_llm.openai_base_url)
    ask(
        client,
        "reason [fake]",
        model="o3-mini",
        max_tokens=50,
        temperature=0.3,
        options={"reasoning_effort": "high"},
    )
    body = last_request(fake_llm, "reason [fake]")["body"]
    assert body["messages"][0]["role"] == "developer"
    assert body["max_completion_tokens"] == 50 and "max_tokens" not in body
    assert body["reasoning_effort"] == "high" and "temperature" not in body


def test_standard_model_rules_system_role_max_tokens_temperature(fake_llm):
    client = OpenAIClient(api_key="sk-test", base_url=fake_llm.openai_base_url)
    ask(
        client,
        "legacy [fake]",
        model="gpt-3.5-turbo",
        max_tokens=50,
        temperature=0.3,
        options={"reasoning_effort": "high"},
    )
    body = last_request(fake_llm, "legacy [fake]")["body"]
    assert body["messages"][0]["role"] == "system"
    assert body["max_tokens"] == 50 and body["temperature"] == 0.3
    assert "reasoning_effort" not in body and "max_completion_tokens" not in body


def test_anthropic_takes_system_messages_as_the_system_parameter(fake_llm):
    client = AnthropicClient(api_key="sk-test", base_url=fake_llm.base_url)
    ask(client, "anthropic system [fake]", max_tokens=64)
    body = last_request(fake_llm, "anthropic system [fake]")["body"]
    assert body["system"] == "Be brief." and [m["role"] for m in body["messages"]] == ["user"]
    assert body["max_tokens"] == 64


def test_429_is_transient_and_the_next_attempt_succeeds(client, fake_llm):
    with pytest.raises(TransientProviderError) as raised:
        ask(client, f"[fake status=429 times=1 key=r429-{client.name}]")
    assert raised.value.error_code == "PROVIDER_RATE_LIMITED" and "fake failure 429" in raised.value.message
    result = ask(client, f"[fake status=429 times=1 key=r429-{client.name}]", attempt=2)
    assert result.completion.startswith("Fake:")


def test_500_is_transient_and_the_sdk_does_not_retry_on_its_own(client, fake_llm):
    marker = f"[fake status=500] no-retry-{client.name}"
    with pytest.raises(TransientProviderError) as raised:
        ask(client, marker)
    assert raised.value.status_code == 500 and not raised.value.permanent
    # max_retries=0: the engine owns retries (counted by content: the fake keeps only its last 200 requests)
    assert sum(marker in json.dumps(r["body"]) for r in fake_llm.requests) == 1


@pytest.mark.parametrize("status, code", [(400, "PROVIDER_REJECTED"), (404, "PROVIDER_NOT_FOUND")])
def test_4xx_is_permanent_with_the_providers_message(client, status, code):
    with pytest.raises(PermanentProviderError) as raised:
        ask(client, f"[fake status={status}]")
    assert raised.value.error_code == code and f"fake failure {status}" in raised.value.message


def test_a_bad_key_is_permanent(fake_llm):
    for client in (
        OpenAIClient(api_key="bad-key", base_url=fake_llm.openai_base_url),
        AnthropicClient(api_key="bad-key", base_url=fake_llm.base_url),
    ):
        with pytest.raises(PermanentProviderError) as raised:
            ask(client, "hello")
        assert raised.value.error_code == "PROVIDER_AUTH_FAILED" and "Incorrect API key" in raised.value.message


def test_a_hung_server_ends_in_a_timeout(client):
    with pytest.raises(TransientProviderError) as raised:
        ask(client, "[fake hang]", timeout_seconds=1)
    assert raised.value.error_code == "PROVIDER_TIMEOUT"


def test_a_slow_trickle_cannot_outlive_the_timeout(client):
    progress = []
    with pytest.raises(TransientProviderError) as raised:
        ask(client, "[fake trickle=0.1]", timeout_seconds=1, progress=progress)
    assert raised.value.error_code == "PROVIDER_TIMEOUT"


def test_a_stop_request_abandons_the_stream(client):
    seen = []

    def should_stop():
        seen.append(1)
        return len(seen) > 3

    with pytest.raises(CallAbandoned):
        ask(client, "[fake trickle=0.05]", timeout_seconds=30, should_stop=should_stop)


def test_an_unreachable_server_is_transient():
    client = OpenAIClient(api_key="sk-test", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(TransientProviderError) as raised:
        ask(client, "hello", timeout_seconds=2)
    assert raised.value.error_code in {"PROVIDER_UNREACHABLE", "PROVIDER_TIMEOUT"}


def test_repr_never_shows_the_key(fake_llm):
    client = OpenAIClient(api_key="sk-very-secret", base_url=fake_llm.openai_base_url)
    assert "sk-very-secret" not in repr(client)
    assert "sk-very-secret" not in repr(AnthropicClient(api_key="sk-very-secret", base_url=fake_llm.base_url))


@pytest.mark.parametrize("stream", [True, False])
def test_openai_cached_and_reasoning_tokens_are_read_prompt_tokens_include_the_cached_ones(fake_llm, stream):
    client = OpenAIClient(api_key="sk-test", base_url=fake_llm.openai_base_url)
    result = ask(client, "cache me [fake usage=2010,30 cached=2000 reasoning=12]", stream=stream)
    tokens = result.tokens
    assert (tokens.input_tokens, tokens.cached_input_tokens, tokens.uncached_input_tokens) == (2010, 2000, 10)
    assert (tokens.output_tokens, tokens.reasoning_tokens) == (30, 12)
    assert (tokens.cache_write_5m_tokens, tokens.cache_write_1h_tokens) == (0, 0)


@pytest.mark.parametrize("stream", [True, False])
def test_anthropic_cache_reads_and_writes_are_added_to_its_input_tokens(fake_llm, stream):
    client = AnthropicClient(api_key="sk-test", base_url=fake_llm.base_url)
    result = ask(client, "cache me [fake usage=100,40 cached=1000 cache_write=200 cache_write_1h=300]", stream=stream)
    tokens = result.tokens
    # Anthropic's input_tokens (100) exclude the cache reads and writes reported beside them.
    assert (tokens.input_tokens, tokens.uncached_input_tokens, tokens.cached_input_tokens) == (1600, 100, 1000)
    assert (tokens.cache_write_5m_tokens, tokens.cache_write_1h_tokens) == (200, 300)
    assert (tokens.output_tokens, tokens.reasoning_tokens) == (40, 0)


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
def test_the_body_goes_out_as_json_written_once_by_the_client(client, fake_llm, stream):
    """The body is written by the client (common.json_body) and sent as the SDK's content: still JSON with its
    content type, non-ASCII text as UTF-8, the SDK's own headers (key, version) beside it."""
    ask(client, "héllo ✓ json body", max_tokens=20, stream=stream)
    sent = last_request(fake_llm, "json body")
    assert sent["headers"]["content-type"] == "application/json"
    assert sent["body"]["messages"][-1]["content"] == "héllo ✓ json body"
    assert sent["body"]["max_tokens"] == 20 and sent["body"].get("stream", False) is stream
    assert "sk-test" in (sent["headers"].get("authorization", "") + sent["headers"].get("x-api-key", ""))


@pytest.mark.parametrize("stream", [True, False])
def test_the_answers_rate_limit_headers_are_kept_and_only_they(client, fake_llm, stream):
    """What ai_providers.capacity learns from: the rate-limit headers of an answer (lower-cased, as text), and
    of a 429's error with its Retry-After; none of the answer's other headers."""
    fake_llm.rate_limit(requests=1, per_seconds=30)
    try:
        result = ask(client, f"rate headers {client.name} {stream}", stream=stream)
        with pytest.raises(TransientProviderError) as refused:
            ask(client, f"rate headers refused {client.name} {stream}", stream=stream)
    finally:
        fake_llm.server.limiter = None
    prefix = "anthropic-ratelimit-requests-" if client.name == "anthropic" else "x-ratelimit-"
    names = ["limit", "remaining", "reset"]
    if prefix == "x-ratelimit-":
        names = [f"{name}-requests" for name in names]
    assert sorted(result.headers) == sorted(prefix + name for name in names)
    assert result.headers[prefix + names[0]] == "2" and result.headers[prefix + names[1]] == "0"
    assert {"retry-after", "retry-after-ms", prefix + names[0]} <= set(refused.value.headers)
    assert int(refused.value.headers["retry-after"]) >= 1
