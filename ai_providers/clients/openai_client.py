"""OpenAI (and any OpenAI-compatible server) through the official `openai` SDK."""

import json
from dataclasses import asdict
from functools import lru_cache
from typing import Any

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
    StreamProgress,
    estimate_tokens,
    map_sdk_error,
    rate_headers,
    sdk_http_client,
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
    """One SDK client per (key, base URL): its connection pool is shared by every call on every thread.

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
        self._sdk = openai.OpenAI(
            api_key=api_key,
            base_url=base_url or None,
            organization=organization or None,
            max_retries=0,  # the engine owns retries (backoff, attempts, fencing); the SDK must not add its own
            timeout=openai.Timeout(60.0, connect=float(settings.AICORE_PROVIDER_CONNECT_TIMEOUT)),
            http_client=sdk_http_client(self, guarded=guarded),
        )

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
        except (openai.OpenAIError, AddressRefused) as exc:
            guard.abandon_if_stopped()  # the caller stopped us (cancel, job deadline) while we waited
            raise map_error(exc, self.name) from None

    def _chat_whole(self, request: ChatRequest, params: dict, guard: CallGuard) -> ChatResult:
        raw = self._sdk.chat.completions.with_raw_response.create(**params, timeout=self._timeout(guard))
        response = raw.parse()
        guard.check()
        result = self.whole_result(request, response, request_id=raw.headers.get("x-request-id"))
        result.headers = rate_headers(raw.headers)
        return result

    def whole_result(self, request: ChatRequest, response, *, request_id: str | None) -> ChatResult:
        """A whole (not streamed) chat.completion as a ChatResult (also a Batch API answer's body)."""
        choice = response.choices[0] if response.choices else None
        message = choice.message if choice else None
        text = (message.content if message else None) or ""
        extra: dict[str, Any] = {"provider_response_id": response.id}
        if message is not None and message.tool_calls:
            extra["tool_calls"] = [call.model_dump(mode="json") for call in message.tool_calls]
        usage = response.usage
        return self._result(
            request,
            text=text,
            finish=(choice.finish_reason if choice else None) or "stop",
            model=response.model,
            request_id=request_id,
            tokens=usage_tokens(usage),
            extra=extra,
        )

    def _chat_streamed(
        self, request: ChatRequest, params: dict, guard: CallGuard, on_progress: ProgressCallback
    ) -> ChatResult:
        progress = StreamProgress(on_progress, request.max_tokens)
        stream = self._sdk.chat.completions.create(
            **params, stream=True, stream_options={"include_usage": True}, timeout=self._timeout(guard)
        )
        parts: list[str] = []
        length = 0
        tool_calls: dict[int, dict[str, Any]] = {}
        finish, model, response_id, usage = None, request.model, None, None
        with stream:
            for chunk in stream:
                guard.check()
                response_id = response_id or chunk.id
                model = chunk.model or model
                if chunk.usage is not None:
                    usage = chunk.usage
                for choice in chunk.choices:
                    delta = choice.delta
                    if delta is not None and delta.content:
                        parts.append(delta.content)
                        length += len(delta.content)
                        if request.on_token is not None:
                            request.on_token(delta.content)
                    if delta is not None and delta.tool_calls:
                        _merge_tool_calls(tool_calls, delta.tool_calls)
                    finish = choice.finish_reason or finish
                progress.update(length)
            request_id = stream.response.headers.get("x-request-id")
        extra: dict[str, Any] = {"provider_response_id": response_id}
        if tool_calls:
            extra["tool_calls"] = [tool_calls[i] for i in sorted(tool_calls)]
        result = self._result(
            request,
            text="".join(parts),
            finish=finish or "stop",
            model=model,
            request_id=request_id,
            tokens=usage_tokens(usage),
            extra=extra,
        )
        result.headers = rate_headers(stream.response.headers)
        return result

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
            **asdict(tokens),
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


def usage_tokens(usage) -> TokenUsage | None:
    """The SDK's usage object (whole answer, or the last chunk of a stream with include_usage) as token kinds:
    prompt_tokens include the cached ones, completion_tokens the reasoning ones. None: the server sent none."""
    if usage is None or usage.prompt_tokens is None or usage.completion_tokens is None:
        return None
    prompt_details = getattr(usage, "prompt_tokens_details", None)
    completion_details = getattr(usage, "completion_tokens_details", None)
    return TokenUsage.from_openai(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cached_tokens=(getattr(prompt_details, "cached_tokens", None) or 0),
        reasoning_tokens=(getattr(completion_details, "reasoning_tokens", None) or 0),
    )


def _merge_tool_calls(calls: dict[int, dict[str, Any]], deltas) -> None:
    for delta in deltas:
        call = calls.setdefault(
            delta.index, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
        )
        if delta.id:
            call["id"] = delta.id
        if delta.function is not None:
            call["function"]["name"] += delta.function.name or ""
            call["function"]["arguments"] += delta.function.arguments or ""


@lru_cache(maxsize=64)
def openai_client(
    api_key: str, base_url: str = "", organization: str = "", name: str = "openai", guarded: bool = True
) -> OpenAIClient:
    return OpenAIClient(api_key=api_key, base_url=base_url, organization=organization, name=name, guarded=guarded)
