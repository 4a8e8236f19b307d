"""Django's error views: API paths answer in the API's error shape ({detail, error_code}); the web pages keep
Django's own HTML pages."""

from django.http import JsonResponse
from django.views import defaults
from django.views.csrf import csrf_failure as html_csrf_failure

API_PREFIXES = ("/ai/", "/auth/", "/api/")


def _is_api(request) -> bool:
    return request.path.startswith(API_PREFIXES)


def _error(detail: str, error_code: str, status: int) -> JsonResponse:
    return JsonResponse({"detail": detail, "error_code": error_code}, status=status)


def bad_request(request, exception=None):
    if not _is_api(request):
        return defaults.bad_request(request, exception)
    return _error("Bad request", "BAD_REQUEST", 400)


def permission_denied(request, exception=None):
    if not _is_api(request):
        return defaults.permission_denied(request, exception)
    return _error("You do not have permission to perform this action", "PERMISSION_DENIED", 403)


def not_found(request, exception=None):
    if not _is_api(request):
        return defaults.page_not_found(request, exception)
    return _error("Not found", "NOT_FOUND", 404)


def server_error(request):
    if not _is_api(request):
        return defaults.server_error(request)
    return _error("Internal server error", "SERVER_ERROR", 500)


def csrf_failure(request, reason=""):
    if not _is_api(request):
        return html_csrf_failure(request, reason)
    return _error(f"CSRF verification failed: {reason}", "CSRF_FAILED", 403)
