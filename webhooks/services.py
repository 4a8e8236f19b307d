"""Webhook endpoints (writes) and deliveries: created when a job becomes final, sent by a Celery task,
signed, retried with backoff, logged."""

import json
import logging
import time
from datetime import timedelta
from functools import partial

import httpx2
from celery import current_app
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from ai_core.models import AIJob
from aicore.webhooks import sign
from business.errors import ApplicationError
from business.memo import TTLMemo
from business.models import Brand, User
from business.timestamps import api_timestamp
from kernel.backoff import Backoff
from kernel.netguard import AddressRefused, guarded_client
from webhooks import statements
from webhooks.models import (
    BATCH_COMPLETED,
    EVENTS,
    FINAL_EVENTS,
    QUOTA_THRESHOLD,
    WebhookDelivery,
    WebhookEndpoint,
    new_secret,
)
from webhooks.safety import check_target, webhook_policy

logger = logging.getLogger(__name__)
DELIVER_TASK = "webhooks.deliver"
# While one attempt is in flight its delivery is not due, so a duplicate message cannot send it twice at once.
ATTEMPT_LEASE = timedelta(minutes=2)
EARLY_TOLERANCE = timedelta(seconds=5)  # a message may arrive a little before next_attempt_at (clock skew)
UNSAFE = "UNSAFE_WEBHOOK_URL"  # the guard refused the address: final, no retry
REDIRECT_REFUSED = "WEBHOOK_REDIRECT_REFUSED"  # retried like any other non-2xx answer: the receiver may fix it

D = WebhookDelivery.Status


# --- endpoints ----------------------------------------------------------------------------------------


def _clean_events(events: list[str] | None) -> list[str]:
    if events is None:
        return list(FINAL_EVENTS)
    unknown = sorted(set(events) - set(EVENTS))
    if unknown or not events:
        raise ApplicationError(
            f"events must be a non-empty subset of {', '.join(EVENTS)}",
            error_code="VALIDATION_ERROR",
            errors={"events": ["Unknown or empty."]},
        )
    return sorted(set(events), key=EVENTS.index)


def endpoint_create(
    *,
    brand: Brand,
    user: User | None,
    url: str,
    description: str = "",
    events: list[str] | None = None,
    is_active: bool = True,
) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(
        brand=brand,
        created_by=user,
        url=check_target(url),
        description=description,
        events=_clean_events(events),
        is_active=is_active,
    )


def endpoint_update(*, endpoint: WebhookEndpoint, data: dict) -> WebhookEndpoint:
    if "url" in data:
        endpoint.url = check_target(data["url"])
    if "events" in data:
        endpoint.events = _clean_events(data["events"])
    for field in ("description", "is_active"):
        if field in data:
            setattr(endpoint, field, data[field])
    endpoint.save()
    return endpoint


def endpoint_rotate_secret(*, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    endpoint.secret = new_secret()
    endpoint.save(update_fields=["secret", "updated_at"])
    return endpoint


def endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    endpoint.delete()


# --- deliveries ---------------------------------------------------------------------------------------


def on_jobs_final(committed: list) -> None:
    """The lifecycle's on_final_committed hook: each job's deliveries (one failing job does not keep the others'
    from being queued)."""
    for item in committed:
        try:
            on_job_final(job_pk=item.job_pk, status=item.status, brand_id=item.brand_id)
        except Exception:
            logger.exception("webhook deliveries of job %s could not be queued", item.job_pk)


def on_job_final(sender=None, *, job_pk: int, status: str, brand_id: int, **_) -> list[int]:
    """After a job's final state committed: one delivery per active endpoint of its brand that wants it."""
    from webhooks.payloads import job_event

    event = f"job.{status}"
    active = endpoints_memo.get(brand_id, partial(_active_endpoints, brand_id))
    wanted = [pk for pk, events in active if event in events]
    if not wanted:
        return []
    endpoints = list(WebhookEndpoint.objects.filter(pk__in=wanted))
    job = AIJob.objects.select_related("job_type", "brand", "created_by").filter(pk=job_pk).first()
    if job is None:
        return []
    now = timezone.now()
    payload = job_event(job, event, now)
    deliveries = WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(endpoint=e, job=job, job_ref=job.job_id, event=event, payload=payload, next_attempt_at=now)
            for e in endpoints
        ]
    )
    ids = [d.pk for d in deliveries]  # bulk_create returns primary keys on PostgreSQL and SQLite
    for delivery_id in ids:
        publish_delivery(delivery_id)
    return ids


def on_quota_threshold(sender=None, *, quota, payload: dict, **_) -> list[int]:
    """After a budget alert committed: one `quota.threshold` delivery per active endpoint that subscribed to it,
    among the quota's brand's endpoints (a company-wide quota: those of every brand of the company)."""
    brands = Brand.objects.filter(company_id=quota.company_id)
    if quota.brand_id:
        brands = brands.filter(pk=quota.brand_id)
    endpoints = [
        e
        for e in WebhookEndpoint.objects.filter(brand__in=brands, is_active=True)
        if QUOTA_THRESHOLD in (e.events or [])
    ]
    if not endpoints:
        return []
    now = timezone.now()
    body = {"event": QUOTA_THRESHOLD, "created_at": api_timestamp(now), "data": payload}
    deliveries = WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(endpoint=e, job=None, job_ref="", event=QUOTA_THRESHOLD, payload=body, next_attempt_at=now)
            for e in endpoints
        ]
    )
    ids = [d.pk for d in deliveries]
    for delivery_id in ids:
        publish_delivery(delivery_id)
    return ids


def delivery_redeliver(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send a delivery's event again: a new delivery of the same payload to the same endpoint, attempted by the
    same code (delivery_attempt) with its own retries. The original stays in the log as it was."""
    if not delivery.endpoint.is_active:
        raise ApplicationError("This webhook is disabled; enable it first", error_code="WEBHOOK_INACTIVE")
    again = WebhookDelivery.objects.create(
        endpoint=delivery.endpoint,
        job_id=delivery.job_id,
        job_ref=delivery.job_ref,
        event=delivery.event,
        payload=delivery.payload,
        next_attempt_at=timezone.now(),
    )
    # After commit: the worker must find the row it is told about.
    transaction.on_commit(lambda: publish_delivery(again.pk))
    return again


def on_batch_completed(sender=None, *, batch, summary: dict, **_) -> list[int]:
    """After a batch's completion committed: one `batch.completed` delivery per active endpoint of its brand
    that subscribed to it."""
    endpoints = [
        e
        for e in WebhookEndpoint.objects.filter(brand_id=batch.brand_id, is_active=True)
        if BATCH_COMPLETED in (e.events or [])
    ]
    if not endpoints:
        return []
    now = timezone.now()
    data = {
        "id": batch.pk,
        "batch_id": batch.batch_id,
        "brand_id": batch.brand_id,
        "completion_window": batch.completion_window,
        "completed_at": api_timestamp(batch.completed_at),
        **summary,
    }
    body = {"event": BATCH_COMPLETED, "created_at": api_timestamp(now), "data": data}
    deliveries = WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(
                endpoint=e, job=None, job_ref=batch.batch_id, event=BATCH_COMPLETED, payload=body, next_attempt_at=now
            )
            for e in endpoints
        ]
    )
    ids = [d.pk for d in deliveries]
    for delivery_id in ids:
        publish_delivery(delivery_id)
    return ids


# Each brand's active endpoints and their events, per process, read at every job's end (most brands have
# none). A save or delete of an endpoint in this process applies at once (TTLMemo.clear_on_change, from
# webhooks.apps); one made in another process within AICORE_WEBHOOK_ENDPOINT_CACHE_SECONDS.
endpoints_memo = TTLMemo("AICORE_WEBHOOK_ENDPOINT_CACHE_SECONDS")


def _active_endpoints(brand_id: int) -> tuple[tuple[int, frozenset[str]], ...]:
    """(endpoint id, subscribed events) of the brand's active endpoints: one plain statement, no ORM."""
    field = WebhookEndpoint._meta.get_field("events")
    rows = statements.endpoints_of_brand(brand_id)
    return tuple((pk, frozenset(field.from_db_value(events, None, connection) or ())) for pk, events in rows)


def publish_delivery(delivery_id: int, *, countdown: float | None = None) -> None:
    try:
        current_app.send_task(DELIVER_TASK, args=[delivery_id], countdown=countdown)
    except Exception:  # the broker is down: deliveries_sweep re-publishes what is due
        logger.warning("could not publish webhook delivery %s", delivery_id, exc_info=True)


def retry_delay(attempt: int) -> float:
    """The kernel's backoff: base * 4**(attempt-1) seconds ± 20 %, capped (a receiver down for hours still gets
    its deliveries within AICORE_WEBHOOK_MAX_ATTEMPTS). At the cap the wait is jittered too (0.8 to 1 × the cap),
    so endpoints that failed together are not retried together."""
    return Backoff(
        base_seconds=settings.AICORE_WEBHOOK_RETRY_BASE_SECONDS,
        factor=4,
        max_seconds=settings.AICORE_WEBHOOK_RETRY_MAX_SECONDS,
        jitter=(0.8, 1.2),
    ).delay(attempt)


def delivery_attempt(*, delivery_id: int) -> float | None:
    """Send one due delivery once. Returns the delay before the next attempt, or None when it is settled
    (succeeded, failed for good, not due, or gone)."""
    now = timezone.now()
    claimed = WebhookDelivery.objects.filter(
        pk=delivery_id, status=D.PENDING, next_attempt_at__lte=now + EARLY_TOLERANCE
    ).update(attempts=F("attempts") + 1, next_attempt_at=now + ATTEMPT_LEASE)
    if not claimed:
        return None
    delivery = WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)
    endpoint = delivery.endpoint
    body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()
    status_code, error = None, ""
    started = time.monotonic()
    try:
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "AICore-Webhooks/1",
            "X-AICore-Event": delivery.event,
            "X-AICore-Delivery": str(delivery.pk),
            "X-AICore-Timestamp": str(timestamp),
            "X-AICore-Signature": sign(endpoint.secret, timestamp, body),
        }
        # Outside any transaction: a slow receiver must not hold database locks. The guarded client checks the
        # address it connects to (the host may resolve elsewhere since the endpoint was saved) and never follows
        # a redirect: that would be a second request to a place nobody checked.
        with guarded_client(webhook_policy, timeout=settings.AICORE_WEBHOOK_TIMEOUT_SECONDS) as client:
            response = client.post(endpoint.url, content=body, headers=headers)
        status_code = response.status_code
        if 300 <= status_code < 400:
            location = response.headers.get("location", "")[:300]
            error = f"{REDIRECT_REFUSED}: HTTP {status_code} to '{location}'; redirects are not followed"
        elif not 200 <= status_code < 300:
            error = f"HTTP {status_code}: {response.text[:500]}"
    except AddressRefused as exc:
        error = f"{UNSAFE}: {exc}"
    except httpx2.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:1000]
    return _record(
        delivery,
        status_code=status_code,
        error=error,
        unsafe=error.startswith(UNSAFE),
        duration_ms=int((time.monotonic() - started) * 1000),
    )


def _record(
    delivery: WebhookDelivery, *, status_code: int | None, error: str, unsafe: bool, duration_ms: int
) -> float | None:
    now = timezone.now()
    fields = {"last_status_code": status_code, "last_error": error, "last_duration_ms": duration_ms}
    delay = None
    if not error:
        fields.update(status=D.SUCCEEDED, delivered_at=now)
    elif unsafe or delivery.attempts >= settings.AICORE_WEBHOOK_MAX_ATTEMPTS:
        fields.update(status=D.FAILED)
    else:
        delay = retry_delay(delivery.attempts)
        fields.update(next_attempt_at=now + timedelta(seconds=delay))
    WebhookDelivery.objects.filter(pk=delivery.pk, status=D.PENDING).update(**fields)
    logger.info(
        "webhook delivery %s attempt %s: %s",
        delivery.pk,
        delivery.attempts,
        "delivered" if not error else error[:200],
        extra={"job_id": delivery.job_ref, "attempt": delivery.attempts},
    )
    return delay


def deliveries_sweep(*, limit: int = 500) -> int:
    """Re-publish pending deliveries that are overdue (a lost message or a crashed worker)."""
    overdue = timezone.now() - timedelta(minutes=1)
    ids = list(
        WebhookDelivery.objects.filter(status=D.PENDING, next_attempt_at__lt=overdue)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
    for delivery_id in ids:
        publish_delivery(delivery_id)
    return len(ids)
