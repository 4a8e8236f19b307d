import logging

from django.conf import settings
from django.db import InterfaceError, OperationalError, connections
from django.http import HttpResponse, JsonResponse
from django.utils.deprecation import MiddlewareMixin

from business.api.errors import error_response

logger = logging.getLogger(__name__)


class RequestSizeLimitMiddleware:
    """Refuse an oversized body with 413 before anything reads it (Content-Length is checked up front)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        # Bulk submission (POST /ai/batches/) carries up to 50 000 jobs: its own, larger limit.
        bulk = request.path == "/ai/batches/" and request.method == "POST"
        limit = settings.AICORE_MAX_BATCH_BODY_BYTES if bulk else settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if length > limit:
            detail = f"Request body too large (limit {limit} bytes)"
            refused = error_response(request, detail, "PAYLOAD_TOO_LARGE", 413)
            if refused is None:  # a web page: the same JSON body (there is no HTML form posting that much)
                refused = JsonResponse({"detail": detail, "error_code": "PAYLOAD_TOO_LARGE"}, status=413)
            return refused
        return self.get_response(request)


# Seconds a client should wait before retrying after DATABASE_UNAVAILABLE: about what a PostgreSQL restart
# or failover takes, and long enough for the pool to replace its connections.
DATABASE_RETRY_AFTER_SECONDS = 5


class DatabaseUnavailableMiddleware(MiddlewareMixin):  # the mixin makes it async-capable too (SSE views)
    """A request that meets a dropped or refused database connection (a PostgreSQL restart, a failover, an
    exhausted pool) answers 503 DATABASE_UNAVAILABLE with Retry-After instead of a 500, and leaves no broken
    connection behind for the next request.

    Connections are not health-checked before each use (CONN_HEALTH_CHECKS would cost a round trip per
    checkout on the hot path); instead, when one fails, it is closed (the pool discards a broken connection
    it gets back), and the pool checks its idle ones, which died with it, so the next request gets a live one.
    """

    def process_exception(self, request, exception):
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        logger.warning("database unavailable for %s %s", request.method, request.path, exc_info=exception)
        _discard_broken_connections()
        detail = "The database is unavailable; retry shortly"
        response = error_response(request, detail, "DATABASE_UNAVAILABLE", 503)
        if response is None:
            response = HttpResponse(f"<h1>Service unavailable</h1><p>{detail}.</p>", status=503)
        response["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
        return response


def _discard_broken_connections() -> None:
    for conn in connections.all(initialized_only=True):
        if conn.connection is None or conn.is_usable():
            continue
        pool = getattr(conn, "pool", None)  # Django's psycopg pool (PostgreSQL with DB_POOL)
        try:
            conn.close()
            if pool is not None:
                pool.check()
        except Exception:  # the database is still away: the next request tries again
            logger.warning("could not discard a broken database connection", exc_info=True)
