"""OpenAI (and any OpenAI-compatible server) through the official `openai` SDK."""

import json
from functools import lru_cache
from typing import Any

import httpx2
import openai
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
    endpoint_url,
    estimate_tokens,
    json_body,
    map_sdk_error,
    rate_headers,
    sdk_http_client,
    sdk_options,
    sse_data,
)
from ai_providers.clients.families import is_reasoning_model
from ai_providers.money import TokenUsage
from kernel.netguard import AddressRefused


def chat_params(request: ChatRequest) -> dict[str, Any]:
    """The chat.completions arguments for the request under its model family's rules.

    `request.max_tokens` is the call's one output bound (ai_providers.services.request_bounded): it is sent
    under the family's name for it, and no other bound is sent.
    """
    options = request.options
    params: dict[str, Any] = {"model": request.model, "messages": request.messages}
    reasoning = is_reasoning_model(request.model, options)
    if request.max_tokens is not None:
        params["max_completion_tokens" if reasoning else "max_tokens"] = request.max_tokens
    if reasoning:
        params["messages"] = [{**m, "role": "developer"} if m.get("role") == "system" else m for m in request.messages]
        if options.get("reasoning_effort"):
            params["reasoning_effort"] = options["reasoning_effort"]
    else:
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if options.get("top_p") is not None:
            params["top_p"] = options["top_p"]
    if request.response_format:
        params["response_format"] = request.response_format
    if request.tools:
        params["tools"] = request.tools
        if options.get("tool_choice") is not None:
            params["tool_choice"] = options["tool_choice"]
    return params


def map_error(exc: Exception, provider: str) -> ProviderError:
    return map_sdk_error(
        exc, provider, timeout_error=openai.APITimeoutError, connection_error=openai.APIConnectionError
    )


class OpenAIClient:
    """One SDK client per (key, base URL): its connections serve every call on every thread (an event loop's
    async client: in small pools, common.PoolShards).

    `guarded`: the base URL is a company's (tenant input), so connections go through the network guard.
    """

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None = None,
        organization: str | None = None,
        name: str = "openai",
        guarded: bool = True,
    ):
        self.name = name
        self._guarded = guarded
        self._sdk = openai.OpenAI(
            api_key=api_key,
            base_url=base_url or None,
            organization=organization or None,
            http_client=sdk_http_client(self, guarded=guarded),
            **sdk_options(openai),
        )
        self._async_sdks = LoopSDKs(self._make_async_sdk, guarded=guarded)
        self._chat_url = endpoint_url(self._sdk, "chat/completions")

    def __repr__(self) -> str:  # never the key
        return f"<OpenAIClient {self.name} {self._sdk.base_url}>"

    def _timeout(self, guard: CallGuard) -> openai.Timeout:
        return openai.Timeout(
            guard.remaining(), connect=min(guard.remaining(), float(settings.AICORE_PROVIDER_CONNECT_TIMEOUT))
        )

    def chat(self, request: ChatRequest, *, on_progress: ProgressCallback, should_stop: StopCheck) -> ChatResult:
        guard = CallGuard(provider=self.name, timeout_seconds=request.timeout_seconds, should_stop=should_stop)
        params = chat_params(request)
        try:
            if request.stream:
                return self._chat_streamed(request, params, guard, on_progress)
            return self._chat_whole(request, params, guard)
        except (openai.OpenAIError, AddressRefused, httpx2.TransportError) as exc:
            guard.abandon_if_stopped()  # the caller stopped us (cancel, job deadline) while we waited
            raise map_error(exc, self.name) from None

    def _chat_whole(self, request: ChatRequest, params: dict, guard: CallGuard) -> ChatResult:
        """The whole answer, through the SDK's request method (its auth, errors, timeouts) with the body as it is
        and the answer read as plain JSON: `chat.completions.create` would run its per-call transforms over the
        parameters and build pydantic models of the answer, most of the SDK's CPU on a call."""
        response = self._sdk.post(
            self._chat_url,
            cast_to=httpx2.Response,
            content=json_body(params),
            options={"timeout": self._timeout(guard)},
        )
        guard.check()
        result = self.whole_result(request, response.json(), request_id=response.headers.get("x-request-id"))
        result.headers = rate_headers(response.headers)
        return result

    def whole_result(self, request: ChatRequest, response: dict, *, request_id: str | None) -> ChatResult:
        """A whole (not streamed) chat.completion, as the JSON it came in, as a ChatResult (also a Batch API
        answer's body)."""
        choices = response.get("choices") or ()
        choice = choices[0] if choices else {}
        message = choice.get("message") or {}
        extra: dict[str, Any] = {"provider_response_id": response.get("id")}
        if message.get("tool_calls"):
            extra["tool_calls"] = message["tool_calls"]
        return self._result(
            request,
            text=message.get("content") or "",
            finish=choice.get("finish_reason") or "stop",
            model=response.get("model") or request.model,
            request_id=request_id,
            tokens=usage_tokens(response.get("usage")),
            extra=extra,
        )

    def _chat_streamed(
        self, request: ChatRequest, params: dict, guard: CallGuard, on_progress: ProgressCallback
    ) -> ChatResult:
        """The streamed answer, its chunks read as plain JSON (stream_chunks) rather than as SDK models. Asked through
        the SDK's request method as the whole answer is (its auth, errors, timeouts; the body as it is): the SDK's
        `create` would run its TypedDict transforms over the parameters first, a third of a stream call's Python
        and all of it before the request goes out (the time to the first token). The SDK's Stream is not iterated:
        its HTTP response is read as it comes (`Stream.response`)."""
        answer = _StreamedAnswer(request, on_progress)
        stream = self._sdk.post(
            self._chat_url,
            cast_to=object,
            content=json_body(streamed(params)),
            options={"timeout": self._timeout(guard)},
            stream=True,
            stream_cls=openai.Stream[object],
        )
        with stream:  # closes its response
            response = stream.response
            for chunk in stream_chunks(response, guard):
                answer.take(chunk)
            return answer.result(self, response)

    # --- the async engine's path (ai_core.engine.aio): the same call as a coroutine, on AsyncOpenAI ---------

    @property
    def async_capable(self) -> bool:
        """Whether `achat` serves this client: not for a company's own base URL (the network guard's transport
        is synchronous), which keeps the threads path."""
        return not self._guarded

    def _make_async_sdk(self, http_client: httpx2.AsyncClient) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            api_key=self._sdk.api_key,
            base_url=self._sdk.base_url,
            organization=self._sdk.organization,
            http_client=http_client,
            **sdk_options(openai),
        )

    @property
    def _async_sdk(self) -> openai.AsyncOpenAI:
        """The running loop's AsyncOpenAI (LoopSDKs: one per loop, kept, its pools reused by every call)."""
        return self._async_sdks.current()

    async def aclose(self) -> None:
        """Close the running loop's async client and its connections (a loop about to end)."""
        await self._async_sdks.aclose()

    async def achat(self, request: ChatRequest, *, on_progress: ProgressCallback, should_stop: StopCheck) -> ChatResult:
        """chat() as a coroutine, the same request and the same parsing (plain JSON through our SSE reader, the
        body read to its end so its connection goes back to the pool). A cancel cancels the task: the response
        is closed with its body unread, which closes its connection, so the provider sees the stream end."""
        guard = CallGuard(provider=self.name, timeout_seconds=request.timeout_seconds, should_stop=should_stop)
        params = chat_params(request)
        sdk = self._async_sdk
        try:
            if request.stream:
                answer = _StreamedAnswer(request, on_progress)
                stream = await sdk.post(
                    self._chat_url,
                    cast_to=object,
                    content=json_body(streamed(params)),
                    options={"timeout": self._timeout(guard)},
                    stream=True,
                    stream_cls=openai.AsyncStream[object],
                )
                response = stream.response
                try:
                    async for chunk in asse_data(response.aiter_bytes(), guard.check):
                        answer.take(_checked_chunk(chunk, response))
                finally:
                    await response.aclose()
                return answer.result(self, response)
            response = await sdk.post(
                self._chat_url,
                cast_to=httpx2.Response,
                content=json_body(params),
                options={"timeout": self._timeout(guard)},
            )
            guard.check()
            result = self.whole_result(request, response.json(), request_id=response.headers.get("x-request-id"))
            result.headers = rate_headers(response.headers)
            return result
        except (openai.OpenAIError, AddressRefused, httpx2.TransportError) as exc:
            guard.abandon_if_stopped()
            raise map_error(exc, self.name) from None

    def _result(
        self,
        request: ChatRequest,
        *,
        text: str,
        finish: str,
        model: str,
        request_id: str | None,
        tokens: TokenUsage | None,
        extra: dict[str, Any],
    ) -> ChatResult:
        if tokens is None:
            # Some compatible servers omit usage: estimate, and say so in the result.
            extra["usage_estimated"] = True
            tokens = TokenUsage(
                input_tokens=estimate_tokens("".join(str(m.get("content") or "") for m in request.messages)),
                output_tokens=estimate_tokens(text),
            )
        if request.response_format and request.response_format.get("type") in {"json_object", "json_schema"}:
            try:
                extra["json"] = json.loads(text)
            except ValueError:
                extra["json_error"] = "the completion is not valid JSON"
        return ChatResult(
            completion=text,
            finish_reason=finish,
            model=model,
            request_id=request_id,
            extra=extra,
            **tokens.by_kind(),
        )

    def embed(self, request: ChatRequest, *, should_stop: StopCheck) -> ChatResult:
        """Embedding vectors of request.options["input"], through the SDK's embeddings endpoint."""
        guard = CallGuard(provider=self.name, timeout_seconds=request.timeout_seconds, should_stop=should_stop)
        params: dict[str, Any] = {"model": request.model, "input": request.options["input"], "encoding_format": "float"}
        if request.options.get("dimensions"):
            params["dimensions"] = request.options["dimensions"]
        try:
            raw = self._sdk.embeddings.with_raw_response.create(**params, timeout=self._timeout(guard))
            response = raw.parse()
        except (openai.OpenAIError, AddressRefused) as exc:
            guard.abandon_if_stopped()
            raise map_error(exc, self.name) from None
        guard.check()
        vectors = [item.embedding for item in sorted(response.data, key=lambda item: item.index)]
        usage = response.usage
        return ChatResult(
            completion="",
            finish_reason="stop",
            model=response.model or request.model,
            request_id=raw.headers.get("x-request-id"),
            input_tokens=usage.prompt_tokens if usage else estimate_tokens("".join(request.options["input"])),
            output_tokens=0,
            extra={"embeddings": vectors},
            headers=rate_headers(raw.headers),
        )

    def check(self, *, timeout_seconds: float = 10.0) -> dict[str, Any]:
        """A real, cheap call (list models) proving the key and the URL work."""
        try:
            page = self._sdk.models.list(timeout=openai.Timeout(timeout_seconds, connect=min(timeout_seconds, 5.0)))
            return {"models": len(page.data)}
        except (openai.OpenAIError, AddressRefused) as exc:
            raise map_error(exc, self.name) from None


def streamed(params: dict[str, Any]) -> dict[str, Any]:
    """The body of a streamed call: its usage asked for in the stream's last chunk."""
    return {**params, "stream": True, "stream_options": {"include_usage": True}}


def stream_chunks(response, guard: CallGuard):
    """The chat.completion.chunk objects of a streamed answer, as dicts; an error the server reports in the
    stream (`{"error": …}`, HTTP status already sent) raises as the SDK's own stream would."""
    for chunk in sse_data(response.iter_bytes(), guard.check):
        yield _checked_chunk(chunk, response)


def _checked_chunk(chunk: Any, response) -> Any:
    if isinstance(chunk, dict) and chunk.get("error"):
        error = chunk["error"]
        message = error.get("message") if isinstance(error, dict) else None
        raise openai.APIError(
            message if isinstance(message, str) and message else "An error occurred during streaming",
            request=getattr(response, "http_request", None) or response.request,  # the SDK's or httpx's response
            body=error,
        )
    return chunk


class _StreamedAnswer:
    """What a streamed answer's chunks add up to (the sync and the async call read them alike)."""

    def __init__(self, request: ChatRequest, on_progress: ProgressCallback) -> None:
        self.request = request
        self.progress = StreamProgress(on_progress, request.max_tokens)
        self.parts: list[str] = []
        self.length = 0
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.finish, self.model, self.response_id, self.usage = None, request.model, None, None

    def take(self, chunk: dict) -> None:
        self.response_id = self.response_id or chunk.get("id")
        self.model = chunk.get("model") or self.model
        self.usage = chunk.get("usage") or self.usage
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if content:
                self.parts.append(content)
                self.length += len(content)
                if self.request.on_token is not None:
                    self.request.on_token(content)
            if delta.get("tool_calls"):
                _merge_tool_calls(self.tool_calls, delta["tool_calls"])
            self.finish = choice.get("finish_reason") or self.finish
        self.progress.update(self.length)

    def result(self, client: "OpenAIClient", response) -> ChatResult:
        extra: dict[str, Any] = {"provider_response_id": self.response_id}
        if self.tool_calls:
            extra["tool_calls"] = [self.tool_calls[i] for i in sorted(self.tool_calls)]
        result = client._result(
            self.request,
            text="".join(self.parts),
            finish=self.finish or "stop",
            model=self.model,
            request_id=response.headers.get("x-request-id"),
            tokens=usage_tokens(self.usage),
            extra=extra,
        )
        result.headers = rate_headers(response.headers)
        return result


def usage_tokens(usage: dict | None) -> TokenUsage | None:
    """The usage of an answer (a whole one's, or a stream's last chunk with include_usage) as token kinds:
    prompt_tokens include the cached ones, completion_tokens the reasoning ones. None: the server sent none."""
    if not usage or usage.get("prompt_tokens") is None or usage.get("completion_tokens") is None:
        return None
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    return TokenUsage.from_openai(
        prompt_tokens=usage["prompt_tokens"],
        completion_tokens=usage["completion_tokens"],
        cached_tokens=prompt_details.get("cached_tokens") or 0,
        reasoning_tokens=completion_details.get("reasoning_tokens") or 0,
    )


def _merge_tool_calls(calls: dict[int, dict[str, Any]], deltas: list[dict[str, Any]]) -> None:
    for delta in deltas:
        call = calls.setdefault(
            delta.get("index", 0), {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
        )
        if delta.get("id"):
            call["id"] = delta["id"]
        function = delta.get("function")
        if function:
            call["function"]["name"] += function.get("name") or ""
            call["function"]["arguments"] += function.get("arguments") or ""


@lru_cache(maxsize=64)
def openai_client(
    api_key: str, base_url: str = "", organization: str = "", name: str = "openai", guarded: bool = True
) -> OpenAIClient:
    return OpenAIClient(api_key=api_key, base_url=base_url, organization=organization, name=name, guarded=guarded)
