"""The provider interface every LLM client implements (echo, OpenAI, Anthropic, …).

Calls are synchronous and I/O-bound; the engine runs many at once on threads. A client must:
- call `on_progress(percent)` as a streamed answer grows (it also serves as a heartbeat),
- return promptly once `should_stop()` is true (cancel or timeout), abandoning the stream,
- raise TransientProviderError (retry) or PermanentProviderError (fail now), with the provider's message.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ai_providers.money import TokenUsage

TokenCallback = Callable[[str], None]


@dataclass
class ChatRequest:
    model: str
    messages: list[dict[str, Any]]
    max_tokens: int | None = None
    temperature: float | None = None
    response_format: dict | None = None
    tools: list | None = None
    options: dict[str, Any] = field(default_factory=dict)  # provider-specific (reasoning_effort, echo, …)
    timeout_seconds: float = 60.0
    attempt: int = 1
    stream: bool = True
    # "chat", or "embedding": vectors of options["input"] (a list of texts) instead of a completion.
    operation: str = "chat"
    # Called with each piece of streamed text as it arrives (the gateway relays them); not every caller wants it.
    on_token: TokenCallback | None = field(default=None, repr=False, compare=False)


@dataclass
class ChatResult:
    completion: str
    finish_reason: str
    model: str
    request_id: str | None
    input_tokens: int  # every prompt token, cached or not (ai_providers/money.py: TokenUsage)
    output_tokens: int
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. tool_calls
    cached_input_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0
    # The provider's rate-limit headers on the answer (common.rate_headers): what ai_providers.capacity learns.
    headers: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def tokens(self) -> TokenUsage:
        return TokenUsage.of(self)

    def as_result_data(self) -> dict[str, Any]:
        return {
            "completion": self.completion,
            "finish_reason": self.finish_reason,
            "model": self.model,
            "request_id": self.request_id,
            **self.extra,
        }


class ProviderError(Exception):
    permanent = False
    error_code = "PROVIDER_ERROR"

    def __init__(
        self,
        message: str,
        *,
        error_code: str | None = None,
        status_code: int | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.headers = headers or {}  # the rate-limit headers of the error answer (Retry-After, x-ratelimit-*)
        if error_code:
            self.error_code = error_code


class TransientProviderError(ProviderError):
    """Rate limits, 5xx, network trouble: worth another attempt after a backoff."""

    error_code = "PROVIDER_UNAVAILABLE"


class PermanentProviderError(ProviderError):
    """Bad request, bad key, unknown model: another attempt would fail the same way."""

    permanent = True
    error_code = "PROVIDER_REJECTED"


class CallAbandoned(Exception):
    """Raised by a client when should_stop() turned true mid-call (cancel or timeout)."""


ProgressCallback = Callable[[int], None]
StopCheck = Callable[[], bool]


class ProviderClient(Protocol):
    name: str

    def chat(self, request: ChatRequest, *, on_progress: ProgressCallback, should_stop: StopCheck) -> ChatResult: ...

    # Optional: clients that serve embeddings. The result's extra carries "embeddings" (one vector per input).
    # def embed(self, request: ChatRequest, *, should_stop: StopCheck) -> ChatResult: ...
