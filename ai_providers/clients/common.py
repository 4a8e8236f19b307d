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


def endpoint_url(sdk, path: str) -> str:
    """The absolute URL of `path` under the SDK client's base URL, joined as the SDK joins a relative one (its
    base URL ends with a slash), computed once per client: given a relative path, the SDK parses and joins it
    again on every call."""
    base = sdk.base_url
    return str(base.copy_with(raw_path=base.raw_path + path.lstrip("/").encode()))


def json_body(body: dict[str, Any]) -> bytes:
    """A request's JSON body as the SDKs would write it (UTF-8, compact, no NaN), written by us: the SDKs send
    bytes as they are, and their own encoder (a JSONEncoder subclass for their models and dates, of which a
    call's plain JSON has none) is built anew for every call."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


ASYNC_KEEPALIVE_SECONDS = 30.0


def async_pool_limits() -> httpx2.Limits:
    """The pools of an event loop's HTTP client, together (ShardedAsyncTransport shares them out): as many
    connections kept alive as the asyncio executor has calls in flight (AICORE_ENGINE_IN_FLIGHT), so a call
    ending gives its connection to the next one instead of closing it once more than the SDKs' default 100 are
    open; and kept idle for ASYNC_KEEPALIVE_SECONDS, not httpx's 5 s: the executor starts its calls in bursts (a
    claim of up to AICORE_ENGINE_BATCH jobs), and a pause of a few seconds between two (a busy database) would
    otherwise close every connection of the last burst. A connection the server closed meanwhile is seen
    (readable while idle) and replaced, not used."""
    in_flight = settings.AICORE_ENGINE_IN_FLIGHT
    return httpx2.Limits(
        max_connections=max(SDK_LIMITS.max_connections, in_flight),
        max_keepalive_connections=max(SDK_LIMITS.max_keepalive_connections, in_flight),
        keepalive_expiry=ASYNC_KEEPALIVE_SECONDS,
    )


POOL_SHARD_CONNECTIONS = 8  # the asyncio executor: one pool per this many calls in flight


class PoolShards:
    """HTTP connections in several small pools (httpx transports), each call sent through the pool with the
    fewest calls in flight, and counted out when its response closes (its connection back in that pool).

    One pool of many connections costs every call its size: each time a call starts and each time its response
    closes, httpcore's pool looks at each of its connections, under the pool's lock, and asks the socket of each
    idle one whether the server closed it. On an event loop that question is Python (anyio builds the socket's
    attributes each time): with 64 calls in flight it was a fifth of an asyncio worker's samples, and the
    OpenAI run's worker CPU per job fell by a fifth to a third with pools of 8. On threads it is a poll() per
    idle connection, cheap in CPU (neither a gain nor a cost the threads benchmark could tell from its noise),
    so the threads' client keeps one pool: small pools little used would let their idle connections expire and
    open new ones (a TLS handshake each, against a real provider).
    Keep-alive is the same (a connection serves its pool's next calls), and any number of calls may be in
    flight: each pool opens what it must up to the limits' max_connections.
    """

    def __init__(self, make: Callable[[httpx2.Limits], Any], limits: httpx2.Limits, count: int) -> None:
        """`make(limits)`: one pool's transport; `limits`: the whole's (the connections kept alive shared out)."""
        count = max(1, count)
        kept = limits.max_keepalive_connections or count
        shard = httpx2.Limits(
            max_connections=limits.max_connections,
            max_keepalive_connections=-(-kept // count),
            keepalive_expiry=limits.keepalive_expiry,
        )
        self.pools = [make(shard) for _ in range(count)]
        self.calls = [0] * count  # in flight on each pool: their request being sent, or their body open

    def pick(self) -> int:
        """The least busy pool, counted in (an event loop's calls only: one thread, no lock)."""
        calls = self.calls
        index = calls.index(min(calls))
        calls[index] += 1
        return index

    def done(self, index: int) -> None:
        self.calls[index] -= 1


class ShardedAsyncTransport(httpx2.AsyncBaseTransport):
    """PoolShards for an event loop's client (LoopSDKs: one pool per POOL_SHARD_CONNECTIONS calls the asyncio
    executor has in flight).

    The pools share one TLS context, built as httpx builds its default one (the system's CA bundle, or
    SSL_CERT_FILE / SSL_CERT_DIR): each transport would otherwise build its own, loading the whole CA bundle
    again (20-200 ms of CPU each; 63 pools at the default 500 calls in flight), on the loop's first call."""

    def __init__(self, limits: httpx2.Limits, count: int) -> None:
        self.tls = httpx2.create_ssl_context()
        self.shards = PoolShards(lambda shard: httpx2.AsyncHTTPTransport(verify=self.tls, limits=shard), limits, count)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        shards = self.shards
        index = shards.pick()
        try:
            response = await shards.pools[index].handle_async_request(request)
        except BaseException:
            shards.done(index)
            raise
        response.stream = _AsyncPoolCall(response.stream, shards, index)
        return response

    async def aclose(self) -> None:
        for pool in self.shards.pools:
            await pool.aclose()


class _AsyncPoolCall(httpx2.AsyncByteStream):
    """A response's body that counts its call out of its pool once closed (read to its end, or abandoned)."""

    def __init__(self, stream, shards: PoolShards, index: int) -> None:
        self._stream, self._shards, self._index = stream, shards, index

    def __aiter__(self):
        return self._stream.__aiter__()

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            if self._shards is not None:
                self._shards.done(self._index)
                self._shards = None


SDK = TypeVar("SDK")


class LoopSDKs(Generic[SDK]):
    """A provider client's async SDK clients, one per event loop, made on first use in that loop and kept.

    An httpx AsyncClient's connections belong to the loop they were opened on, so a loop cannot share another's;
    the asyncio executor has one loop per process, so this is one async client per (endpoint, key,
    organisation) per process, whose pools (ShardedAsyncTransport) every call of the loop reuses (keep-alive):
    no client is built per call. `make(http_client)` builds the SDK client on the given HTTP client.

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
                    limits = async_pool_limits()
                    pools = -(-settings.AICORE_ENGINE_IN_FLIGHT // POOL_SHARD_CONNECTIONS)
                    http = httpx2.AsyncClient(
                        follow_redirects=False, limits=limits, transport=ShardedAsyncTransport(limits, pools)
                    )
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


def sse_data(chunks: Iterable[bytes], check: Callable[[], None]) -> Iterator[Any]:
    """The JSON data of each server-sent event in `chunks` (a response body's bytes as they arrive), up to
    OpenAI's `[DONE]`.

    Plain JSON, not the SDK's models: a stream has one event per few tokens, and building a model for each
    costs more than the whole rest of reading it. Read as bytes (SSEReader), not through httpx's text and line
    decoders, two generator layers per chunk that cost more than our parsing. After `[DONE]` the body is still
    read to its end: a response closed with bytes unread (the chunked encoding's last chunk) closes its
    connection, where a body read to the end returns it to the pool for the next call. `check` runs at every
    chunk received, so a server that trickles bytes without events cannot hold the call past its deadline or a
    stop.
    """
    reader = SSEReader()
    for chunk in chunks:
        check()
        yield from reader.feed(chunk)
    yield from reader.end()


async def asse_data(chunks: AsyncIterable[bytes], check: Callable[[], None]) -> AsyncIterator[Any]:
    """sse_data over an async body's bytes (the asyncio executor's calls): the same events, the body read to its
    end after `[DONE]` (its connection back to the pool), `check` at every chunk."""
    reader = SSEReader()
    async for chunk in chunks:
        check()
        for event in reader.feed(chunk):
            yield event
    for event in reader.end():
        yield event


class SSEReader:
    """sse_data's and asse_data's parsing: the body's bytes, a chunk at a time, split into lines (LF, CRLF or CR
    ends one, as the SSE format says) and events (a blank line ends one); only `data:` fields are kept (their
    lines joined with LF), parsed as JSON."""

    def __init__(self) -> None:
        self.pending = b""  # the start of a line the next chunk ends
        self.data: list[bytes] = []
        self.done = False

    def feed(self, chunk: bytes) -> list[Any]:
        """The events `chunk` completes (parsed JSON), in order."""
        if self.done:
            return []
        buffer = self.pending + chunk if self.pending else chunk
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
            # A CR at the very end may be the first half of a CRLF: it stays pending with its line.
            tail = buffer.endswith(b"\r")
            buffer = (buffer[:-1] if tail else buffer).replace(b"\r", b"\n") + (b"\r" if tail else b"")
        lines = buffer.split(b"\n")
        self.pending = lines.pop()
        events = []
        for line in lines:
            if line.startswith(b"data:"):
                self.data.append(line[6:] if line.startswith(b"data: ") else line[5:])
            elif not line and self.data:  # a blank line ends the event
                text, self.data = b"\n".join(self.data), []
                if text.startswith(b"[DONE]"):
                    self.done = True
                    break
                events.append(json.loads(text))
        return events

    def end(self) -> list[Any]:
        """The last event when the body ended without its blank line."""
        if self.done:
            return []
        events = self.feed(b"\n")  # the body's end ends its last line
        if self.data and not self.done:
            text = b"\n".join(self.data)
            self.data = []
            if not text.startswith(b"[DONE]"):
                events.append(json.loads(text))
        return events


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
RAW_RATE_HEADER_PREFIXES = tuple(prefix.encode() for prefix in RATE_HEADER_PREFIXES)


def rate_headers(headers) -> dict[str, str]:
    """The rate-limit headers of an answer (OpenAI's x-ratelimit-*, Anthropic's anthropic-ratelimit-*,
    Retry-After), lower-cased; the rest of the headers is of no use past the client.

    An httpx response's headers are read as the bytes they came in (`Headers.raw`), decoded only when they are
    ours (as httpx decodes them): every answer has them, and decoding each of its headers to pick none cost
    three times as much."""
    if headers is None:
        return {}
    raw = getattr(headers, "raw", None)
    if raw is None:  # a mapping of text
        return {name.lower(): value for name, value in headers.items() if name.lower().startswith(RATE_HEADER_PREFIXES)}
    ours = [(name, value) for name, value in raw if name.lower().startswith(RAW_RATE_HEADER_PREFIXES)]
    if not ours:
        return {}
    encoding = headers.encoding
    return {name.lower().decode(encoding): value.decode(encoding) for name, value in ours}


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
