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
from business.access import BRAND_HEADER, SESSION_BRAND_KEY, resolve_request_brand, still_authorized
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


def _released(tick, *, principal, brand):
    """One poll, then the connection goes back (to the pool, or closed as CONN_MAX_AGE says): an open stream
    holds no database connection between polls, so streams never exhaust a process's pool.

    Each poll first checks that the principal may still watch the brand (one query): a deactivated user, a
    removed membership, a password change, a revoked or expired API key end the stream within one poll, not
    when it reaches its lifetime. The poll answers (the stream's last frame, None) then, else (None, the tick's).
    """

    def run(**kwargs):
        try:
            refusal = _refusal(principal, brand)
            return (refusal, None) if refusal else (None, tick(**kwargs))
        finally:
            close_old_connections()

    return sync_to_async(run)


def _refusal(principal, brand) -> str | None:
    if isinstance(principal, ApiKey):
        return None if api_key_still_usable(principal.pk) else _KEY_REVOKED
    return None if still_authorized(principal, brand) else _REVOKED


# The last frame of a stream whose access was revoked; reconnecting then answers 401 or 403.
_REVOKED = _frame({"detail": "Access to this stream was revoked", "error_code": "ACCESS_REVOKED"}, event="error")
_KEY_REVOKED = _frame(
    {"detail": "This API key is no longer valid", "error_code": "API_KEY_REVOKED", "status": 401}, event="error"
)


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
        poll = _released(streams.job_stream_tick, principal=principal, brand=brand)
        async for heartbeat in _ticker():
            refused, polled = await poll(job_pk=job.pk, cursor=cursor)
            if refused:
                yield refused
                return
            events, progress, final = polled
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
        poll = _released(streams.brand_stream_tick, principal=principal, brand=brand)
        async for heartbeat in _ticker():
            refused, polled = await poll(brand=brand, cursor=cursor)
            if refused:
                yield refused
                return
            events, progress = polled
            for event in events:
                yield _frame(event, event="status", event_id=event["event_id"])
            for item in progress:
                yield _frame(item, event="progress")
            if heartbeat and not events and not progress:
                yield ": keep-alive\n\n"

    return _stream_response(generate())


# --- OpenAPI ------------------------------------------------------------------------------------------
# These plain async views are outside DRF, so drf-spectacular cannot see them; this hook adds them to the
# document by hand (POSTPROCESSING_HOOKS in settings).

_STREAM_FORMAT = """Frames are `text/event-stream` (one blank line between frames):

- `retry: <ms>` once, first: how long a client waits before it reconnects.
- `event: status` with `id: <event id>` — a transition: `data` is
  `{"event_id", "id", "job_id", "from_status", "to_status", "status", "attempt", "reason", "at"}`
  (`at`: ISO 8601 in UTC with a `Z` suffix, like every timestamp of the API).
- `event: progress` — `data` is `{"id", "job_id", "status", "progress_percentage"}` while a job runs.
- `: keep-alive` comments while nothing happens.

The stream closes after `AICORE_SSE_MAX_SECONDS`; reconnect with `Last-Event-ID` (or `?last_event_id=`) to
resume exactly after the last event received. Browsers' `EventSource` cannot send headers: it may use the web
session and `?brand=` instead of `Authorization` and `X-Brand-ID`."""


def _stream_parameters() -> list[dict]:
    return [
        {
            "in": "header",
            "name": "X-Brand-ID",
            "schema": {"type": "integer"},
            "description": "Brand to act on (required when the user can act on several brands)",
        },
        {"in": "query", "name": "brand", "schema": {"type": "integer"}, "description": "X-Brand-ID, for EventSource"},
        {
            "in": "header",
            "name": "Last-Event-ID",
            "schema": {"type": "integer", "minimum": 0},
            "description": "Resume after this event id",
        },
        {
            "in": "query",
            "name": "last_event_id",
            "schema": {"type": "integer", "minimum": 0},
            "description": "Last-Event-ID, for EventSource",
        },
    ]


def _stream_operation(*, operation_id: str, summary: str, description: str, errors: dict[str, str]) -> dict:
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    return {
        "operationId": operation_id,
        "summary": summary,
        "description": f"{description}\n\n{_STREAM_FORMAT}",
        "tags": ["jobs"],
        "security": [{"jwtAuth": []}, {"cookieAuth": []}],
        "responses": {
            "200": {
                "description": "An open event stream",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            **{code: {"description": text, "content": error} for code, text in errors.items()},
        },
    }


def document_streams(result, generator, request, public):
    """drf-spectacular post-processing hook: the two SSE streams in the OpenAPI document."""
    errors = {
        "400": "INVALID_LAST_EVENT_ID",
        "401": "Missing, invalid or expired credentials",
        "403": "BRAND_ACCESS_DENIED or BRAND_REQUIRED",
    }
    job_id = {"in": "path", "name": "id", "required": True, "schema": {"type": "string"}}
    job_id["description"] = "The job's id or job_id"
    result["paths"]["/ai/jobs/{id}/events/"] = {
        "get": {
            **_stream_operation(
                operation_id="ai_jobs_events_stream",
                summary="Follow one job live (SSE)",
                description=(
                    "Streams the job's transitions from its creation (or after Last-Event-ID) and its progress "
                    'while it runs, then `event: end` (`data` `{"id", "job_id"}`) once the job is final and '
                    "every event was sent. Another brand's job is a 404."
                ),
                errors={**errors, "404": "No such job in this brand (JOB_NOT_FOUND)"},
            ),
            "parameters": [job_id, *_stream_parameters()],
        }
    }
    result["paths"]["/ai/jobs/events/"] = {
        "get": {
            **_stream_operation(
                operation_id="ai_jobs_events_brand_stream",
                summary="Follow every job of the brand live (SSE)",
                description=(
                    "Streams every transition and progress of the brand's jobs from now on (or after "
                    "Last-Event-ID). Events of other brands never appear. The stream has no end event."
                ),
                errors=errors,
            ),
            "parameters": _stream_parameters(),
        }
    }
    return result
