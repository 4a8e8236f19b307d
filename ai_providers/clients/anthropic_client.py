"""Anthropic through the official `anthropic` SDK (messages API), behind the same interface as OpenAI."""

from dataclasses import asdict
from functools import cached_property, lru_cache
from typing import Any

import anthropic
from django.conf import settings

from ai_providers.clients.base import (
    ChatRequest,
    ChatResult,
    ProgressCallback,
    ProviderError,
    StopCheck,
)
from ai_providers.clients.common import (
    CallGuard,
    StreamProgress,
    map_sdk_error,
    rate_headers,
    sdk_async_http_client,
    sdk_http_client,
)
from ai_providers.money import TokenUsage
from kernel.netguard import AddressRefused

SYSTEM_ROLES = {"system", "developer"}


def messages_params(request: ChatRequest) -> dict[str, Any]:
    """System/developer messages become the `system` parameter; max_tokens is mandatory on this API."""
    system = "\n\n".join(str(m.get("content") or "") for m in request.messages if m.get("role") in SYSTEM_ROLES)
    messages = [
        {"role": m["role"], "content": m.get("content") or ""}
        for m in request.messages
        if m.get("role") not in SYSTEM_ROLES
    ]
    params: dict[str, Any] = {
        "model": request.model,
        "messages": messages,
        # The call's one output bound (ai_providers.services.request_bounded); the API requires one.
        "max_tokens": request.max_tokens or settings.AICORE_DEFAULT_MAX_OUTPUT_TOKENS,
    }
    if system:
        params["system"] = system
    if request.temperature is not None:
        params["extra_body"] = {"temperature": request.temperature}
    if request.tools:
        params["tools"] = request.tools
    return params


def map_error(exc: Exception, provider: str) -> ProviderError:
    return map_sdk_error(
        exc, provider, timeout_error=anthropic.APITimeoutError, connection_error=anthropic.APIConnectionError
    )


class AnthropicClient:
    """As OpenAIClient: one SDK client per (key, base URL); `guarded` for a company's base URL."""

    def __init__(self, *, api_key: str, base_url: str | None = None, name: str = "anthropic", guarded: bool = True):
        self.name = name
        self._guarded = guarded
        self._sdk = anthropic.Anthropic(
            api_key=api_key,
            base_url=base_url or None,
            max_retries=0,  # the engine owns retries
            timeout=anthropic.Timeout(60.0, connect=float(settings.AICORE_PROVIDER_CONNECT_TIMEOUT)),
            http_client=sdk_http_client(self, guarded=guarded),
        )

    def __repr__(self) -> str:  # never the key
        return f"<AnthropicClient {self.name} {self._sdk.base_url}>"

    def _timeout(self, guard: CallGuard) -> anthropic.Timeout:
        return anthropic.Timeout(
            guard.remaining(), connect=min(guard.remaining(), float(settings.AICORE_PROVIDER_CONNECT_TIMEOUT))
        )

    def chat(self, request: ChatRequest, *, on_progress: ProgressCallback, should_stop: StopCheck) -> ChatResult:
        guard = CallGuard(provider=self.name, timeout_seconds=request.timeout_seconds, should_stop=should_stop)
        params = messages_params(request)
        try:
            if request.stream:
                return self._chat_streamed(params, guard, on_progress, request.on_token)
            raw = self._sdk.messages.with_raw_response.create(**params, timeout=self._timeout(guard))
            message = raw.parse()
            guard.check()
            result = message_result(message, request_id=raw.headers.get("request-id"))
            result.headers = rate_headers(raw.headers)
            return result
        except (anthropic.AnthropicError, AddressRefused) as exc:
            guard.abandon_if_stopped()  # the caller stopped us (cancel, job deadline) while we waited
            raise map_error(exc, self.name) from None

    def _chat_streamed(
        self, params: dict, guard: CallGuard, on_progress: ProgressCallback, on_token=None
    ) -> ChatResult:
        answer = _StreamedMessage(params, on_progress, on_token)
        stream = self._sdk.messages.create(**params, stream=True, timeout=self._timeout(guard))
        with stream:
            for event in stream:
                guard.check()
                answer.take(event)
            return answer.result(stream.response.headers)

    # --- the async engine's path (ai_core.engine.aio): the same call as a coroutine, on AsyncAnthropic -----

    @property
    def async_capable(self) -> bool:
        """Not for a company's own base URL (the network guard's transport is synchronous): threads path."""
        return not self._guarded

    @cached_property
    def _async_sdk(self) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(
            api_key=self._sdk.api_key,
            base_url=self._sdk.base_url,
            max_retries=0,
            timeout=anthropic.Timeout(60.0, connect=float(settings.AICORE_PROVIDER_CONNECT_TIMEOUT)),
            http_client=sdk_async_http_client(),
        )

    async def achat(self, request: ChatRequest, *, on_progress: ProgressCallback, should_stop: StopCheck) -> ChatResult:
        """chat() as a coroutine. A cancel cancels the task: the stream's context closes the response."""
        guard = CallGuard(provider=self.name, timeout_seconds=request.timeout_seconds, should_stop=should_stop)
        params = messages_params(request)
        try:
            if request.stream:
                answer = _StreamedMessage(params, on_progress, request.on_token)
                stream = await self._async_sdk.messages.create(**params, stream=True, timeout=self._timeout(guard))
                async with stream:
                    async for event in stream:
                        guard.check()
                        answer.take(event)
                    return answer.result(stream.response.headers)
            raw = await self._async_sdk.messages.with_raw_response.create(**params, timeout=self._timeout(guard))
            message = await raw.parse()
            guard.check()
            result = message_result(message, request_id=raw.headers.get("request-id"))
            result.headers = rate_headers(raw.headers)
            return result
        except (anthropic.AnthropicError, AddressRefused) as exc:
            guard.abandon_if_stopped()
            raise map_error(exc, self.name) from None

    def check(self, *, timeout_seconds: float = 10.0) -> dict[str, Any]:
        """A real, cheap call (list models) proving the key and the URL work."""
        try:
            page = self._sdk.models.list(timeout=anthropic.Timeout(timeout_seconds, connect=min(timeout_seconds, 5.0)))
            return {"models": len(page.data)}
        except (anthropic.AnthropicError, AddressRefused) as exc:
            raise map_error(exc, self.name) from None


class _StreamedMessage:
    """What a streamed message's events add up to (the sync and the async call read them alike)."""

    def __init__(self, params: dict, on_progress: ProgressCallback, on_token=None) -> None:
        self.progress = StreamProgress(on_progress, params["max_tokens"])
        self.on_token = on_token
        self.parts: list[str] = []
        self.length = 0
        self.usages = []  # message_start's, then each message_delta's
        self.finish, self.model, self.message_id = None, params["model"], None

    def take(self, event) -> None:
        if event.type == "message_start":
            self.message_id, self.model = event.message.id, event.message.model or self.model
            self.usages.append(event.message.usage)
        elif event.type == "content_block_delta" and event.delta.type == "text_delta":
            self.parts.append(event.delta.text)
            self.length += len(event.delta.text)
            if self.on_token is not None:
                self.on_token(event.delta.text)
            self.progress.update(self.length)
        elif event.type == "message_delta":
            self.finish = event.delta.stop_reason or self.finish
            self.usages.append(event.usage)

    def result(self, headers) -> ChatResult:
        return ChatResult(
            completion="".join(self.parts),
            finish_reason=self.finish or "end_turn",
            model=self.model,
            request_id=headers.get("request-id"),
            extra={"provider_response_id": self.message_id},
            headers=rate_headers(headers),
            **asdict(usage_tokens(*self.usages)),
        )


def message_result(message, *, request_id: str | None) -> ChatResult:
    """A whole Message as a ChatResult (also a Message Batches result's message)."""
    text = "".join(block.text for block in message.content if block.type == "text")
    extra: dict[str, Any] = {"provider_response_id": message.id}
    tool_uses = [block.model_dump(mode="json") for block in message.content if block.type == "tool_use"]
    if tool_uses:
        extra["tool_calls"] = tool_uses
    return ChatResult(
        completion=text,
        finish_reason=message.stop_reason or "stop",
        model=message.model,
        request_id=request_id,
        extra=extra,
        **asdict(usage_tokens(message.usage)),
    )


USAGE_COUNTS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
CACHE_SPLIT = ("ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens")


def usage_tokens(*usages) -> TokenUsage:
    """The SDK's usage objects as token kinds: input_tokens exclude the cache reads and writes reported beside
    them. A stream reports usage in message_start and again (cumulative) in message_delta: a later count
    replaces an earlier one, a count a later event leaves out (None) keeps the earlier value."""
    counts: dict[str, int | None] = {}
    for usage in (u for u in usages if u is not None):
        for name in USAGE_COUNTS:
            if getattr(usage, name, None) is not None:
                counts[name] = getattr(usage, name)
        split = getattr(usage, "cache_creation", None)
        for name in CACHE_SPLIT:
            if getattr(split, name, None) is not None:
                counts[name] = getattr(split, name)
    return TokenUsage.from_anthropic(
        input_tokens=counts.get("input_tokens") or 0,
        output_tokens=counts.get("output_tokens") or 0,
        cache_read_input_tokens=counts.get("cache_read_input_tokens") or 0,
        cache_creation_input_tokens=counts.get("cache_creation_input_tokens") or 0,
        ephemeral_5m_input_tokens=counts.get("ephemeral_5m_input_tokens"),
        ephemeral_1h_input_tokens=counts.get("ephemeral_1h_input_tokens"),
    )


@lru_cache(maxsize=64)
def anthropic_client(
    api_key: str, base_url: str = "", name: str = "anthropic", guarded: bool = True
) -> AnthropicClient:
    return AnthropicClient(api_key=api_key, base_url=base_url, name=name, guarded=guarded)
