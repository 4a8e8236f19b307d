"""Django's error views, answering in the API's error shape ({detail, error_code}) instead of HTML pages."""

from django.http import JsonResponse


def _error(detail: str, error_code: str, status: int) -> JsonResponse:
    return JsonResponse({"detail": detail, "error_code": error_code}, status=status)


def bad_request(request, exception=None):
    return _error("Bad request", "BAD_REQUEST", 400)


def permission_denied(request, exception=None):
    return _error("You do not have permission to perform this action", "PERMISSION_DENIED", 403)


def not_found(request, exception=None):
    return _error("Not found", "NOT_FOUND", 404)


def server_error(request):
    return _error("Internal server error", "SERVER_ERROR", 500)


def csrf_failure(request, reason=""):
    return _error(f"CSRF verification failed: {reason}", "CSRF_FAILED", 403)
