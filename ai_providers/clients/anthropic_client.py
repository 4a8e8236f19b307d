"""Anthropic through the official `anthropic` SDK (messages API), behind the same interface as OpenAI."""

from functools import lru_cache
from typing import Any

import anthropic
import httpx2
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
    LoopSDKs,
    StreamProgress,
    asse_data,
    json_body,
    map_sdk_error,
    rate_headers,
    sdk_http_client,
    sdk_options,
    sse_data,
)
from ai_providers.money import TokenUsage
from kernel.netguard import AddressRefused

SYSTEM_ROLES = {"system", "developer"}


def messages_params(request: ChatRequest) -> dict[str, Any]:
    """The body of a messages call: system/developer messages become the `system` parameter; max_tokens is
    mandatory on this API."""
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
        params["temperature"] = request.temperature
    if request.tools:
        params["tools"] = request.tools
    return params


def map_error(exc: Exception, provider: str) -> ProviderError:
    return map_sdk_error(
        exc, provider, timeout_error=anthropic.APITimeoutError, connection_error=anthropic.APIConnectionError
    )


class AnthropicClient:
    """As OpenAIClient: one SDK client per (key, base URL); `guarded` for a company's base URL. Calls go through
    the SDK's request method (its auth, headers, errors, timeouts) with the body as it is, and the answers are
    read as plain JSON (a stream's events through our SSE reader): no pydantic model per event."""

    def __init__(self, *, api_key: str, base_url: str | None = None, name: str = "anthropic", guarded: bool = True):
        self.name = name
        self._guarded = guarded
        self._sdk = anthropic.Anthropic(
            api_key=api_key,
            base_url=base_url or None,
            http_client=sdk_http_client(self, guarded=guarded),
            **sdk_options(anthropic),
        )
        self._async_sdks = LoopSDKs(self._make_async_sdk, guarded=guarded)

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
                answer = _StreamedMessage(params, on_progress, request.on_token)
                stream = self._sdk.post(
                    "/v1/messages",
                    cast_to=object,
                    content=json_body({**params, "stream": True}),
                    options={"timeout": self._timeout(guard)},
                    stream=True,
                    stream_cls=anthropic.Stream[object],
                )
                with stream:  # closes its response
                    for event in sse_data(stream.response.iter_bytes(), guard.check):
                        answer.take(event, stream.response)
                    return answer.result(stream.response.headers)
            response = self._sdk.post(
                "/v1/messages",
                cast_to=httpx2.Response,
                content=json_body(params),
                options={"timeout": self._timeout(guard)},
            )
            guard.check()
            return whole_result(response)
        except (anthropic.AnthropicError, AddressRefused, httpx2.TransportError) as exc:
            guard.abandon_if_stopped()  # the caller stopped us (cancel, job deadline) while we waited
            raise map_error(exc, self.name) from None

    # --- the async engine's path (ai_core.engine.aio): the same call as a coroutine, on AsyncAnthropic -----

    @property
    def async_capable(self) -> bool:
        """Not for a company's own base URL (the network guard's transport is synchronous): threads path."""
        return not self._guarded

    def _make_async_sdk(self, http_client: httpx2.AsyncClient) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(
            api_key=self._sdk.api_key, base_url=self._sdk.base_url, http_client=http_client, **sdk_options(anthropic)
        )

    @property
    def _async_sdk(self) -> anthropic.AsyncAnthropic:
        """The running loop's AsyncAnthropic (LoopSDKs: one per loop, kept, its pools reused by every call)."""
        return self._async_sdks.current()

    async def aclose(self) -> None:
        """Close the running loop's async client and its connections (a loop about to end)."""
        await self._async_sdks.aclose()

    async def achat(self, request: ChatRequest, *, on_progress: ProgressCallback, should_stop: StopCheck) -> ChatResult:
        """chat() as a coroutine, read alike. A cancel cancels the task: the response closed with its body unread
        closes its connection, so the provider sees the stream end."""
        guard = CallGuard(provider=self.name, timeout_seconds=request.timeout_seconds, should_stop=should_stop)
        params = messages_params(request)
        sdk = self._async_sdk
        try:
            if request.stream:
                answer = _StreamedMessage(params, on_progress, request.on_token)
                stream = await sdk.post(
                    "/v1/messages",
                    cast_to=object,
                    content=json_body({**params, "stream": True}),
                    options={"timeout": self._timeout(guard)},
                    stream=True,
                    stream_cls=anthropic.AsyncStream[object],
                )
                response = stream.response
                try:
                    async for event in asse_data(response.aiter_bytes(), guard.check):
                        answer.take(event, response)
                finally:
                    await response.aclose()
                return answer.result(response.headers)
            response = await sdk.post(
                "/v1/messages",
                cast_to=httpx2.Response,
                content=json_body(params),
                options={"timeout": self._timeout(guard)},
            )
            guard.check()
            return whole_result(response)
        except (anthropic.AnthropicError, AddressRefused, httpx2.TransportError) as exc:
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
    """What a streamed message's events (plain JSON) add up to; the sync and the async call read them alike."""

    def __init__(self, params: dict, on_progress: ProgressCallback, on_token=None) -> None:
        self.progress = StreamProgress(on_progress, params["max_tokens"])
        self.on_token = on_token
        self.parts: list[str] = []
        self.length = 0
        self.usages: list[dict] = []  # message_start's, then each message_delta's
        self.finish, self.model, self.message_id = None, params["model"], None

    def take(self, event: dict, response) -> None:
        kind = event.get("type")
        if kind == "content_block_delta":
            delta = event.get("delta") or {}
            if delta.get("type") == "text_delta":
                text = delta.get("text") or ""
                self.parts.append(text)
                self.length += len(text)
                if self.on_token is not None:
                    self.on_token(text)
                self.progress.update(self.length)
        elif kind == "message_start":
            message = event.get("message") or {}
            self.message_id, self.model = message.get("id"), message.get("model") or self.model
            self.usages.append(message.get("usage"))
        elif kind == "message_delta":
            self.finish = (event.get("delta") or {}).get("stop_reason") or self.finish
            self.usages.append(event.get("usage"))
        elif kind == "error":  # reported in the stream, the HTTP status already sent (an overload, mostly)
            error = event.get("error") if isinstance(event.get("error"), dict) else {}
            message = error.get("message")
            raise anthropic.APIError(
                message if isinstance(message, str) and message else "An error occurred during streaming",
                getattr(response, "http_request", None) or response.request,
                body=error,
            )

    def result(self, headers) -> ChatResult:
        return ChatResult(
            completion="".join(self.parts),
            finish_reason=self.finish or "end_turn",
            model=self.model,
            request_id=headers.get("request-id"),
            extra={"provider_response_id": self.message_id},
            headers=rate_headers(headers),
            **usage_tokens(*self.usages).by_kind(),
        )


def whole_result(response: httpx2.Response) -> ChatResult:
    """A whole (not streamed) answer's HTTP response as a ChatResult."""
    result = message_result(response.json(), request_id=response.headers.get("request-id"))
    result.headers = rate_headers(response.headers)
    return result


def message_result(message: dict, *, request_id: str | None) -> ChatResult:
    """A whole Message, as the JSON it came in, as a ChatResult (also a Message Batches result's message)."""
    content = message.get("content") or ()
    text = "".join(block.get("text") or "" for block in content if block.get("type") == "text")
    extra: dict[str, Any] = {"provider_response_id": message.get("id")}
    tool_uses = [block for block in content if block.get("type") == "tool_use"]
    if tool_uses:
        extra["tool_calls"] = tool_uses
    return ChatResult(
        completion=text,
        finish_reason=message.get("stop_reason") or "stop",
        model=message.get("model"),
        request_id=request_id,
        extra=extra,
        **usage_tokens(message.get("usage")).by_kind(),
    )


USAGE_COUNTS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
CACHE_SPLIT = ("ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens")


def usage_tokens(*usages: dict | None) -> TokenUsage:
    """Usage objects (plain JSON) as token kinds: input_tokens exclude the cache reads and writes reported beside
    them. A stream reports usage in message_start and again (cumulative) in message_delta: a later count
    replaces an earlier one, a count a later event leaves out (None) keeps the earlier value. The one reading
    of usage for every answer: whole, streamed (sync or async), batched."""
    counts: dict[str, int | None] = {}
    for usage in (u for u in usages if u):
        for name in USAGE_COUNTS:
            if usage.get(name) is not None:
                counts[name] = usage[name]
        split = usage.get("cache_creation") or {}
        for name in CACHE_SPLIT:
            if split.get(name) is not None:
                counts[name] = split[name]
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
