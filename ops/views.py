"""Operator endpoints: /metrics (Prometheus), /healthz (process answers), /readyz (DB and broker answer, and
some worker is alive where workers are expected)."""

import hmac
import logging

from django.conf import settings
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from kombu import Connection
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ai_core.engine.upkeep import workers_alive
from ops.metrics import registry

logger = logging.getLogger(__name__)


@require_GET
def metrics(request):
    """Brand names and volumes are other companies' business: a scraper shows AICORE_METRICS_TOKEN. Only a
    development installation with no token configured serves them openly (production refuses to boot so)."""
    token = settings.AICORE_METRICS_TOKEN
    if token or settings.AICORE_ENV != "development":
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not token or not hmac.compare_digest(given.encode(), token.encode()):
            return JsonResponse(
                {"detail": "A valid metrics token is required", "error_code": "NOT_AUTHENTICATED"}, status=401
            )
    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)


@require_GET
def healthz(request):
    return JsonResponse({"status": "ok"})


def _check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any failure means "not ready"; the reason is logged, not shown
        logger.warning("readiness: database check failed", exc_info=True)
        return type(exc).__name__
    return None


def _check_broker() -> str | None:
    try:
        with Connection(
            settings.CELERY_BROKER_URL,
            connect_timeout=settings.AICORE_READYZ_TIMEOUT_SECONDS,
            transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS,
        ) as conn:
            conn.ensure_connection(max_retries=1, timeout=settings.AICORE_READYZ_TIMEOUT_SECONDS)
    except Exception as exc:
        logger.warning("readiness: broker check failed", exc_info=True)
        return type(exc).__name__
    return None


def _check_workers() -> str | None:
    try:
        alive = workers_alive()
    except Exception:
        logger.warning("readiness: worker heartbeat check failed", exc_info=True)
        return "no worker heartbeat (database unavailable)"
    return None if alive else "no worker heartbeat"


@require_GET
def readyz(request):
    checks = {"database": _check_database(), "broker": _check_broker()}
    if settings.AICORE_READYZ_REQUIRE_WORKER:
        checks["workers"] = _check_workers()
    ready = not any(checks.values())
    body = {
        "status": "ready" if ready else "not ready",
        "checks": {name: "ok" if error is None else f"failed: {error}" for name, error in checks.items()},
    }
    return JsonResponse(body, status=200 if ready else 503)
