"""Server-Sent Events: live transitions and progress of one job or of a whole brand.

These are async views: under ASGI an open stream is a suspended coroutine, not a busy worker thread, so
thousands of dashboards can stay connected. Each poll is one short query, run through the async ORM bridge.
Authentication and brand scoping mirror the REST API (Bearer + X-Brand-ID, or the web session), with
`?brand=` for browsers' EventSource, which cannot send headers.
"""

import asyncio
import json
import time

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.views.decorators.http import require_GET
from rest_framework.exceptions import APIException
from rest_framework_simplejwt.authentication import JWTAuthentication

from ai_core import selectors, streams
from business.access import BRAND_HEADER, SESSION_BRAND_KEY, resolve_request_brand
from business.api.authentication import api_key_brand, bearer_api_key
from business.errors import ApplicationError
from business.models import ApiKey, ApiKeyScope
from business.services import api_key_still_usable, api_key_use


def _error(exc: ApplicationError) -> JsonResponse:
    return JsonResponse({"detail": exc.detail, "error_code": exc.error_code, **exc.extra}, status=exc.status_code)


def _authenticate_and_scope(request: HttpRequest):
    """(user, brand) of the request, or raise ApplicationError (401 / 403) like the REST API would."""
    user = None
    raw_key = bearer_api_key(request)
    if raw_key is not None:
        return _scope_of_api_key(request, raw_key)
    if request.headers.get("Authorization", "").startswith("Bearer "):
        try:
            found = JWTAuthentication().authenticate(request)
        except APIException:
            found = None
        user = found[0] if found else None
    elif request.user.is_authenticated:
        user = request.user
    if user is None or not user.is_active:
        raise ApplicationError(
            "Authentication credentials were not provided or are invalid",
            error_code="NOT_AUTHENTICATED",
            status_code=401,
        )
    wanted = (
        request.META.get(BRAND_HEADER)
        or request.GET.get("brand")
        or (request.session.get(SESSION_BRAND_KEY) if hasattr(request, "session") else None)
    )
    return user, resolve_request_brand(user, str(wanted) if wanted is not None else None)


def _scope_of_api_key(request: HttpRequest, raw_key: str):
    """(key, brand) of a request with a brand API key: its own brand only, with the jobs:read scope."""
    key = api_key_use(raw_key)
    _, brand = api_key_brand(key, request.META.get(BRAND_HEADER) or request.GET.get("brand"))
    if brand is None:
        raise ApplicationError(
            "This API key cannot act on this brand", error_code="BRAND_ACCESS_DENIED", status_code=403
        )
    if ApiKeyScope.JOBS_READ not in key.scopes:
        raise ApplicationError(
            "This API key lacks the 'jobs:read' scope", error_code="API_KEY_SCOPE_MISSING", status_code=403
        )
    return key, brand


def _key_refused_frame(principal) -> str | None:
    """Per poll: an open stream of an API key that was revoked (or expired) meanwhile ends with a 401 error event."""
    if not isinstance(principal, ApiKey) or api_key_still_usable(principal.pk):
        return None
    body = {"detail": "This API key is no longer valid", "error_code": "API_KEY_REVOKED", "status": 401}
    return _frame(body, event="error")


def _last_event_id(request: HttpRequest) -> int | None:
    raw = request.headers.get("Last-Event-ID") or request.GET.get("last_event_id")
    if raw is None:
        return None
    try:
        return max(0, int(raw))
    except ValueError:
        raise ApplicationError(
            "Last-Event-ID must be an event id (an integer)", error_code="INVALID_LAST_EVENT_ID"
        ) from None


def _frame(data: dict, *, event: str, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _released(tick):
    """One poll, then the connection goes back (to the pool, or closed as CONN_MAX_AGE says): an open stream
    holds no database connection between polls, so streams never exhaust a process's pool."""

    def run(**kwargs):
        try:
            return tick(**kwargs)
        finally:
            close_old_connections()

    return sync_to_async(run)


def _stream_response(generator) -> StreamingHttpResponse:
    response = StreamingHttpResponse(generator, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # proxies must not hold events back
    return response


async def _ticker():
    """Yields before each poll: the poll interval, a heartbeat comment when idle, and a lifetime limit
    after which the client reconnects with Last-Event-ID (keeps long-lived state and tokens fresh)."""
    started = last_sent = time.monotonic()
    while time.monotonic() - started < settings.AICORE_SSE_MAX_SECONDS:
        heartbeat = time.monotonic() - last_sent >= settings.AICORE_SSE_HEARTBEAT_SECONDS
        if heartbeat:
            last_sent = time.monotonic()
        yield heartbeat
        await asyncio.sleep(settings.AICORE_SSE_POLL_MS / 1000)


@require_GET
async def job_events(request: HttpRequest, pk: str):
    """GET /ai/jobs/{id}/events/ — the job's transitions from the start (or after Last-Event-ID), its progress
    while running; the stream ends once the job is final and every event was sent."""
    try:
        principal, brand = await sync_to_async(_authenticate_and_scope)(request)
        last_id = _last_event_id(request)
        job = await sync_to_async(selectors.job_get)(brand=brand, lookup=pk)
    except ApplicationError as exc:
        return _error(exc)
    cursor = streams.EventCursor(after_id=last_id or 0)

    async def generate():
        yield f"retry: {settings.AICORE_SSE_RETRY_MS}\n\n"
        async for heartbeat in _ticker():
            refused = await _released(_key_refused_frame)(principal=principal)
            if refused:
                yield refused
                return
            events, progress, final = await _released(streams.job_stream_tick)(job_pk=job.pk, cursor=cursor)
            for event in events:
                yield _frame(event, event="status", event_id=event["event_id"])
            for item in progress:
                yield _frame(item, event="progress")
            if final:
                yield _frame({"id": job.pk, "job_id": job.job_id}, event="end")
                return
            if heartbeat and not events and not progress:
                yield ": keep-alive\n\n"

    return _stream_response(generate())


@require_GET
async def brand_events(request: HttpRequest):
    """GET /ai/jobs/events/ — every transition and progress of the brand's jobs from now
    (or after Last-Event-ID)."""
    try:
        principal, brand = await sync_to_async(_authenticate_and_scope)(request)
        last_id = _last_event_id(request)
        if last_id is None:
            last_id = await sync_to_async(streams.latest_event_id)()
    except ApplicationError as exc:
        return _error(exc)
    cursor = streams.EventCursor(after_id=last_id)

    async def generate():
        yield f"retry: {settings.AICORE_SSE_RETRY_MS}\n\n"
        async for heartbeat in _ticker():
            refused = await _released(_key_refused_frame)(principal=principal)
            if refused:
                yield refused
                return
            events, progress = await _released(streams.brand_stream_tick)(brand=brand, cursor=cursor)
            for event in events:
                yield _frame(event, event="status", event_id=event["event_id"])
            for item in progress:
                yield _frame(item, event="progress")
            if heartbeat and not events and not progress:
                yield ": keep-alive\n\n"

    return _stream_response(generate())
