"""What the real provider clients share: the call deadline, progress reporting and error messages."""

import asyncio
import json
import threading
import time
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

import httpx2
from django.conf import settings

from ai_providers.clients.base import (
    CallAbandoned,
    PermanentProviderError,
    ProgressCallback,
    ProviderError,
    StopCheck,
    TransientProviderError,
)
from ai_providers.urls_safety import provider_policy
from kernel.netguard import guarded_client, refused_in

PROGRESS_INTERVAL_SECONDS = 0.25
SDK_LIMITS = httpx2.Limits(max_connections=1000, max_keepalive_connections=100)  # the SDKs' own defaults


def sdk_http_client(owner: object, *, guarded: bool) -> httpx2.Client:
    """The HTTP client under `owner`'s provider SDK, one per client (its pool serves every call on every thread),
    closed with its owner (the SDK closes only the clients it made itself).

    It never follows a redirect: the SDKs' own client does, and an allowed host answering 302 would send the
    call, key included, wherever it says. A company's base URL (`guarded`) is tenant input: its connections go
    through the network guard, to checked addresses only. The operator's own base URLs keep the environment's
    proxy settings.
    """
    if guarded:
        client = guarded_client(provider_policy, limits=SDK_LIMITS)
    else:
        client = httpx2.Client(follow_redirects=False, limits=SDK_LIMITS)
    weakref.finalize(owner, client.close)
    return client


def sdk_options(sdk) -> dict[str, Any]:
    """What every SDK client of ours is built with (`sdk`: the openai or anthropic module): no retries of its
    own (the engine owns retries: backoff, attempts, fencing), a default timeout each call replaces."""
    return {
        "max_retries": 0,
        "timeout": sdk.Timeout(60.0, connect=float(settings.AICORE_PROVIDER_CONNECT_TIMEOUT)),
    }


ASYNC_KEEPALIVE_SECONDS = 30.0


def async_pool_limits() -> httpx2.Limits:
    """The pool of an event loop's HTTP client: as many connections kept alive as the asyncio executor has calls
    in flight (AICORE_ENGINE_IN_FLIGHT), so a call ending gives its connection to the next one instead of closing
    it once more than the SDKs' default 100 are open; and kept idle for ASYNC_KEEPALIVE_SECONDS, not httpx's 5 s:
    the executor starts its calls in bursts (a claim of up to AICORE_ENGINE_BATCH jobs), and a pause of a few
    seconds between two (a busy database) would otherwise close every connection of the last burst. A connection
    the server closed meanwhile is seen (readable while idle) and replaced, not used."""
    in_flight = settings.AICORE_ENGINE_IN_FLIGHT
    return httpx2.Limits(
        max_connections=max(SDK_LIMITS.max_connections, in_flight),
        max_keepalive_connections=max(SDK_LIMITS.max_keepalive_connections, in_flight),
        keepalive_expiry=ASYNC_KEEPALIVE_SECONDS,
    )


SDK = TypeVar("SDK")


class LoopSDKs(Generic[SDK]):
    """A provider client's async SDK clients, one per event loop, made on first use in that loop and kept.

    An httpx AsyncClient's connections belong to the loop they were opened on, so a loop cannot share another's;
    the asyncio executor has one loop per process, so this is one async client per (endpoint, key,
    organisation) per process, whose pool every call of the loop reuses (keep-alive): no client is built per
    call. `make(http_client)` builds the SDK client on the given HTTP client.

    Only for an operator's base URL: the network guard's transport is synchronous, so a company's own base URL
    (`guarded`) has no async path (its calls keep the threads path, CatalogueBound.async_call) and asking for
    one is refused rather than connecting unchecked.
    """

    def __init__(self, make: Callable[[httpx2.AsyncClient], SDK], *, guarded: bool) -> None:
        self._make = make
        self._guarded = guarded
        self._lock = threading.Lock()
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SDK] = weakref.WeakKeyDictionary()

    def current(self) -> SDK:
        """The running loop's SDK client."""
        loop = asyncio.get_running_loop()
        sdk = self._by_loop.get(loop)
        if sdk is None:
            if self._guarded:
                raise RuntimeError("a company's own base URL has no async path (the network guard is synchronous)")
            with self._lock:
                sdk = self._by_loop.get(loop)
                if sdk is None:
                    http = httpx2.AsyncClient(follow_redirects=False, limits=async_pool_limits())
                    sdk = self._by_loop[loop] = self._make(http)
        return sdk

    def __len__(self) -> int:
        return len(self._by_loop)

    async def aclose(self) -> None:
        """Close the running loop's client (its connections), if it has one."""
        with self._lock:
            sdk = self._by_loop.pop(asyncio.get_running_loop(), None)
        if sdk is not None:
            await sdk.close()


class CallGuard:
    """The whole call's deadline and the caller's stop request, checked between streamed chunks.

    The HTTP read timeout alone cannot bound a call: a server trickling one byte per second never trips it.
    """

    def __init__(self, *, provider: str, timeout_seconds: float, should_stop: StopCheck):
        self.provider = provider
        self.timeout_seconds = timeout_seconds
        self.deadline = time.monotonic() + timeout_seconds
        self.should_stop = should_stop

    def remaining(self) -> float:
        return max(0.001, self.deadline - time.monotonic())

    def abandon_if_stopped(self) -> None:
        if self.should_stop():
            raise CallAbandoned(f"{self.provider}: call abandoned")

    def check(self) -> None:
        self.abandon_if_stopped()
        if time.monotonic() > self.deadline:
            raise self.timed_out()

    def timed_out(self) -> TransientProviderError:
        return TransientProviderError(
            f"{self.provider}: no complete answer within {self.timeout_seconds:g} s",
            error_code="PROVIDER_TIMEOUT",
        )


class StreamProgress:
    """Maps a growing answer to a rising percentage (the final size is unknown: estimated from max tokens),
    reported when it changes and at most every PROGRESS_INTERVAL_SECONDS, since each report is a database write.
    """

    def __init__(self, on_progress: ProgressCallback, expected_tokens: int | None):
        self.on_progress = on_progress
        self.expected_tokens = max(1, expected_tokens or 1024)
        self.reported = -1
        self.reported_at = 0.0

    def update(self, output_chars: int) -> None:
        percent = min(99, (output_chars // 4 + 1) * 100 // self.expected_tokens)
        now = time.monotonic()
        if percent > self.reported and (self.reported < 0 or now - self.reported_at >= PROGRESS_INTERVAL_SECONDS):
            self.reported, self.reported_at = percent, now
            self.on_progress(percent)


def sse_data(lines: Iterable[str], check: Callable[[], None]) -> Iterator[Any]:
    """The JSON data of each server-sent event in `lines` (a response body's lines), up to OpenAI's `[DONE]`.

    Plain JSON, not the SDK's models: a stream has one event per few tokens, and building a model for each
    costs more than the whole rest of reading it. After `[DONE]` the body is still read to its end: a
    response closed with bytes unread (the chunked encoding's last chunk) closes its connection, where a body
    read to the end returns it to the pool for the next call. `check` runs at every line, so a server that
    trickles lines without events cannot hold the call past its deadline or a stop.
    """
    reader = SSEReader()
    for line in lines:
        check()
        event = reader.feed(line)
        if event is not NOTHING:
            yield event
    event = reader.end()
    if event is not NOTHING:
        yield event


async def asse_data(lines: AsyncIterable[str], check: Callable[[], None]) -> AsyncIterator[Any]:
    """sse_data over an async body's lines (the asyncio executor's calls): the same events, the body read to its
    end after `[DONE]` (its connection back to the pool), `check` at every line."""
    reader = SSEReader()
    async for line in lines:
        check()
        event = reader.feed(line)
        if event is not NOTHING:
            yield event
    event = reader.end()
    if event is not NOTHING:
        yield event


NOTHING = object()


class SSEReader:
    """sse_data's and asse_data's parsing, a line at a time."""

    def __init__(self) -> None:
        self.data: list[str] = []
        self.done = False

    def feed(self, line: str) -> Any:
        """The event `line` completes (parsed JSON), else NOTHING."""
        if self.done:
            return NOTHING
        if line.startswith("data:"):
            self.data.append(line[6:] if line.startswith("data: ") else line[5:])
        elif not line and self.data:  # a blank line ends the event
            text, self.data = "\n".join(self.data), []
            if text.startswith("[DONE]"):
                self.done = True
            else:
                return json.loads(text)
        return NOTHING

    def end(self) -> Any:
        """The last event when the body ended without its blank line, else NOTHING."""
        if self.data and not self.done:
            text = "\n".join(self.data)
            if not text.startswith("[DONE]"):
                return json.loads(text)
        return NOTHING


def error_message(exc: Exception, default: str) -> str:
    """The provider's own message out of an SDK error body ({"message": …} or {"error": {"message": …}})."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        message = inner.get("message")
        if isinstance(message, str) and message:
            return message[:2000]
    return (getattr(exc, "message", None) or str(exc) or default)[:2000]


RATE_HEADER_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-", "retry-after")


def rate_headers(headers) -> dict[str, str]:
    """The rate-limit headers of an answer (OpenAI's x-ratelimit-*, Anthropic's anthropic-ratelimit-*,
    Retry-After), lower-cased; the rest of the headers is of no use past the client."""
    if headers is None:
        return {}
    return {name.lower(): value for name, value in headers.items() if name.lower().startswith(RATE_HEADER_PREFIXES)}


def estimate_tokens(text: str) -> int:
    """A rough token count (4 characters a token) when a server does not report usage."""
    return (len(text) + 3) // 4


def map_sdk_error(exc: Exception, provider: str, *, timeout_error: type, connection_error: type) -> ProviderError:
    """Shared by the OpenAI and Anthropic SDKs (same error shapes): 429, 408/409, 5xx (529 overloaded included),
    timeouts and connection trouble are worth a retry; any other 4xx is final, and so are a redirect (never
    followed) and an address the network guard refused."""
    refused = refused_in(exc)
    if refused is not None:
        return PermanentProviderError(
            f"{provider}: refused to connect to {refused}", error_code="PROVIDER_ADDRESS_REFUSED"
        )
    if isinstance(exc, (timeout_error, httpx2.TimeoutException)):  # httpx's own: a streamed body read by us
        return TransientProviderError(f"{provider}: request timed out", error_code="PROVIDER_TIMEOUT")
    if isinstance(exc, (connection_error, httpx2.TransportError)):
        return TransientProviderError(
            f"{provider}: connection failed ({error_message(exc, 'unreachable')})",
            error_code="PROVIDER_UNREACHABLE",
        )
    status = getattr(exc, "status_code", None)
    message = f"{provider}: {error_message(exc, 'error')}"
    headers = rate_headers(getattr(getattr(exc, "response", None), "headers", None))
    if status is not None and 300 <= status < 400:
        response = getattr(exc, "response", None)
        location = response.headers.get("location", "") if response is not None else ""
        return PermanentProviderError(
            f"{provider}: the server answered HTTP {status} (a redirect to '{location[:200]}'); redirects are not "
            f"followed: the base URL must be the final one",
            error_code="PROVIDER_REDIRECT_REFUSED",
            status_code=status,
        )
    if status == 429:
        return TransientProviderError(message, error_code="PROVIDER_RATE_LIMITED", status_code=status, headers=headers)
    if status is None or status in {408, 409} or status >= 500:
        return TransientProviderError(message, error_code="PROVIDER_UNAVAILABLE", status_code=status, headers=headers)
    if status in {401, 403}:
        return PermanentProviderError(message, error_code="PROVIDER_AUTH_FAILED", status_code=status)
    if status == 404:
        return PermanentProviderError(message, error_code="PROVIDER_NOT_FOUND", status_code=status)
    return PermanentProviderError(message, error_code="PROVIDER_REJECTED", status_code=status)
