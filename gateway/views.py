"""/v1/: the OpenAI-compatible gateway. Every call is a job of the key's brand (gateway.calls)."""

import asyncio
import contextvars
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import close_old_connections
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from ai_providers.models import ProviderModel
from ai_providers.selectors import key_source
from business.access import BRAND_HEADER
from business.api.authentication import api_key_brand, bearer_api_key
from business.models import ApiKey, ApiKeyScope
from business.services import ApiKeyRefused, api_key_use
from gateway.calls import CHAT_JOB_TYPE, EMBEDDING_JOB_TYPE, OpenCall, call_open, call_run
from gateway.errors import GatewayError
from gateway.wire import (
    ChatCall,
    ChunkWriter,
    chat_call_parse,
    completion_body,
    embedding_call_parse,
    embeddings_body,
)
from kernel.jsonread import JSONRefused, json_parse

JOB_HEADER = "X-AICore-Job-Id"
MAX_WAIT_HEADER = "X-AICore-Max-Wait"
MAX_IDEMPOTENCY_KEY = 255
MAX_WAIT_BOUND = 300  # seconds: a longer wait is a job for /ai/jobs/, not a request held open
DISCONNECTED = "aicore.disconnected"  # in a request's ASGI scope (config.asgi): an Event set on the client's hang-up


def gateway_key(request: HttpRequest) -> ApiKey:
    """The brand API key of a /v1/ request, with the `gateway` scope, acting on its own brand only."""
    raw = bearer_api_key(request)
    if raw is None:
        raise GatewayError(
            "Missing API key: send Authorization: Bearer aic_…", status=401, code="invalid_api_key", param=None
        )
    try:
        key = api_key_use(raw)
    except ApiKeyRefused as exc:
        raise GatewayError(exc.detail, status=401, code=exc.error_code) from None
    if api_key_brand(key, request.META.get(BRAND_HEADER))[1] is None:
        raise GatewayError("This API key cannot act on this brand", status=403, code="BRAND_ACCESS_DENIED")
    if ApiKeyScope.GATEWAY not in key.scopes:
        raise GatewayError("This API key lacks the 'gateway' scope", status=403, code="API_KEY_SCOPE_MISSING")
    return key


def _body(request: HttpRequest):
    """The body, read as every JSON input of the hub is (no NaN, no lone surrogate, bounded nesting)."""
    try:
        return json_parse(request.body.decode() or "null", max_depth=settings.AICORE_MAX_JSON_DEPTH + 4)
    except UnicodeDecodeError:
        raise GatewayError("The request body is not UTF-8", code="invalid_json", param="body") from None
    except JSONRefused as refused:
        raise GatewayError(refused.detail, code=refused.error_code, param="body") from None


def _idempotency_key(request: HttpRequest) -> str | None:
    value = request.headers.get("Idempotency-Key")
    if value is not None and not 1 <= len(value) <= MAX_IDEMPOTENCY_KEY:
        raise GatewayError("Idempotency-Key must be 1 to 255 characters", code="INVALID_IDEMPOTENCY_KEY")
    return value


def _max_wait(request: HttpRequest) -> float:
    """How long the call may wait for provider capacity (seconds, X-AICore-Max-Wait: 0 to 300, default 30)."""
    value = request.headers.get(MAX_WAIT_HEADER)
    if value is None:
        return float(settings.AICORE_GATEWAY_MAX_WAIT_SECONDS)
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_WAIT_BOUND:  # NaN fails this too
        raise GatewayError(
            f"{MAX_WAIT_HEADER} must be a number of seconds from 0 to {MAX_WAIT_BOUND}",
            code="INVALID_MAX_WAIT",
            param=MAX_WAIT_HEADER,
        )
    return seconds


def _open_chat(request: HttpRequest, chat: ChatCall) -> OpenCall:
    try:
        key = gateway_key(request)
        description = f"gateway: {key.name}" + (f" (user {chat.user})" if chat.user else "")
        return call_open(
            key=key,
            job_type=CHAT_JOB_TYPE,
            input_data=chat.input_data,
            idempotency_key=_idempotency_key(request),
            description=description[:2000],
        )
    finally:
        close_old_connections()


def _whole(request: HttpRequest, chat: ChatCall, max_wait: float) -> JsonResponse:
    opened = _open_chat(request, chat)
    try:
        outcome = call_run(opened, max_wait=max_wait)
    except GatewayError as exc:
        response = exc.response()
        response[JOB_HEADER] = opened.job.job_id
        return response
    body = completion_body(
        job_id=opened.job.job_id,
        model=chat.model,
        created=int(opened.job.created_at.timestamp()),
        result=outcome.result,
        usage=outcome.usage,
    )
    return JsonResponse(body, headers={JOB_HEADER: opened.job.job_id})


@csrf_exempt
def chat_completions(request: HttpRequest):
    """POST /v1/chat/completions — OpenAI's chat completion, non-streaming or streaming (SSE chunks).

    A sync view: the whole non-streaming call runs on the request's one thread (an async view would hop between
    the event loop and threads several times per request, through the sync middleware). A stream's call runs
    in a thread of its own; the view waits for its first event before it answers, so that a call refused before
    any text (no provider capacity within X-AICore-Max-Wait, the provider's refusal) is an HTTP error in OpenAI's
    shape (a 429 is the SDK's RateLimitError), not an error event in a 200 stream. The rest is an async
    generator the server iterates on its event loop (served by ASGI, as `make run` does).
    """
    if request.method != "POST":
        return GatewayError("Use POST", status=405, code="method_not_allowed").response()
    try:
        chat = chat_call_parse(_body(request))
        max_wait = _max_wait(request)
        if not chat.stream:
            return _whole(request, chat, max_wait)
        opened = _open_chat(request, chat)
    except GatewayError as exc:
        return exc.response()
    background = request.headers.get("X-AICore-Background", "").strip().lower() == "true"
    # Served by config.asgi, the client's hang-up is known while we wait for the first event (the capacity wait).
    disconnected = getattr(request, "scope", {}).get(DISCONNECTED)
    relay = _Relay(opened, background=background, max_wait=max_wait, disconnected=disconnected)
    first = relay.first()
    if first[0] == "error":
        response = first[1].response()
        response[JOB_HEADER] = opened.job.job_id
        return response
    response = StreamingHttpResponse(relay.chunks(chat, first), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    response[JOB_HEADER] = opened.job.job_id
    return response


# The streamed calls' own threads, kept (made as concurrent streams need them, reused after): starting a thread
# per stream cost as much CPU as a tenth of a call.
_relay_threads = ThreadPoolExecutor(max_workers=settings.AICORE_GATEWAY_MAX_THREADS, thread_name_prefix="v1-stream")


class _Relay:
    """The provider's tokens to the client as they arrive. The call runs in a thread of its own, started here;
    its events ("token", text), ("done", Outcome), ("error", GatewayError) are read once synchronously (the
    view's `first`, before the response's headers) and then from the event loop (`chunks`). If the client hangs
    up, the call is abandoned and the job cancelled, unless `X-AICore-Background: true` asked it to run on."""

    def __init__(self, opened: OpenCall, *, background: bool, max_wait: float, disconnected=None):
        self.opened = opened
        self.hung_up = disconnected if disconnected is not None else threading.Event()
        self.sent = threading.Event()
        self.sent_chars = 0
        self._lock = threading.Lock()
        self._items: deque = deque()
        self._arrived = threading.Event()  # for the synchronous first read
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None  # for the event loop's reads, set on the loop
        self._background, self._max_wait = background, max_wait
        _relay_threads.submit(contextvars.Context().run, self._work)  # as a new thread's: an empty context

    def _put(self, item) -> None:
        with self._lock:
            self._items.append(item)
            loop, wake = self._loop, self._wake
        self._arrived.set()
        if loop is not None:
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # the loop is gone (the server stopped): nobody is listening any more
                pass

    def _on_token(self, text: str) -> None:
        self.sent.set()
        self.sent_chars += len(text)
        self._put(("token", text))

    def _work(self) -> None:
        try:
            outcome = call_run(
                self.opened,
                max_wait=self._max_wait,
                on_token=self._on_token,
                hung_up=None if self._background else self.hung_up.is_set,
                streamed=self.sent.is_set,
                streamed_chars=lambda: self.sent_chars,
            )
            self._put(("done", outcome))
        except GatewayError as exc:
            self._put(("error", exc))
        except Exception as exc:  # a bug: the client gets an error rather than a stream that never ends
            self._put(("error", GatewayError(f"{type(exc).__name__}: {exc}", status=500, code="GATEWAY_ERROR")))

    def first(self):
        """The call's first event, waited for in the view's thread."""
        self._arrived.wait()
        with self._lock:
            return self._items.popleft()

    async def _next(self):
        with self._lock:
            if self._loop is None:
                self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        while True:
            with self._lock:
                if self._items:
                    return self._items.popleft()
                self._wake.clear()
            await self._wake.wait()

    async def chunks(self, chat: ChatCall, first):
        writer = ChunkWriter(job_id=self.opened.job.job_id, model=chat.model, include_usage=chat.include_usage)
        finished = False
        try:
            yield writer.delta({"role": "assistant", "content": ""})
            streamed_any = False
            kind, value = first
            while True:
                if kind == "token":
                    streamed_any = True
                    yield writer.delta({"content": value})
                elif kind == "error":
                    finished = True
                    yield writer.error(value)
                    return
                else:
                    finished = True
                    if not streamed_any and value.result.get("completion"):
                        # Not streamed by us (a replay, a worker ran it, a provider that does not stream): at once.
                        yield writer.delta({"content": value.result["completion"]})
                    for chunk in writer.end(result=value.result, usage=value.usage):
                        yield chunk
                    return
                kind, value = await self._next()
        finally:
            if not finished:
                self.hung_up.set()


def _embeddings(request: HttpRequest) -> JsonResponse:
    call = embedding_call_parse(_body(request))
    max_wait = _max_wait(request)
    key = gateway_key(request)
    opened = call_open(
        key=key,
        job_type=EMBEDDING_JOB_TYPE,
        input_data=call.input_data,
        idempotency_key=_idempotency_key(request),
        description=f"gateway: {key.name}"[:2000],
    )
    try:
        outcome = call_run(opened, max_wait=max_wait)
    except GatewayError as exc:
        response = exc.response()
        response[JOB_HEADER] = opened.job.job_id
        return response
    body = embeddings_body(call=call, result=outcome.result, input_tokens=outcome.usage["prompt_tokens"])
    return JsonResponse(body, headers={JOB_HEADER: opened.job.job_id})


@csrf_exempt
def embeddings(request: HttpRequest):
    """POST /v1/embeddings — OpenAI's embeddings, one `embedding` job per call, priced per input token."""
    if request.method != "POST":
        return GatewayError("Use POST", status=405, code="method_not_allowed").response()
    try:
        return _embeddings(request)
    except GatewayError as exc:
        return exc.response()
    finally:
        close_old_connections()


def models(request: HttpRequest):
    """GET /v1/models — the models this brand may call (their provider has a key for its company)."""
    if request.method != "GET":
        return GatewayError("Use GET", status=405, code="method_not_allowed").response()
    try:
        key = gateway_key(request)
    except GatewayError as exc:
        return exc.response()
    rows = ProviderModel.objects.filter(is_active=True, provider__is_active=True).select_related("provider")
    usable: dict[int, bool] = {}
    data = []
    for model in rows.order_by("provider__name", "name"):
        if model.provider_id not in usable:
            usable[model.provider_id] = key_source(company_id=key.brand.company_id, provider=model.provider) is not None
        if usable[model.provider_id]:
            created = int(model.created_at.timestamp()) if getattr(model, "created_at", None) else int(time.time())
            data.append({"id": model.name, "object": "model", "created": created, "owned_by": model.provider.name})
    return JsonResponse({"object": "list", "data": data})
