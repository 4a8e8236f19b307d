"""The error shape of each path, for the errors answered before (or outside) a view: Django's error views and
the middleware's guards (503 DATABASE_UNAVAILABLE, 413 PAYLOAD_TOO_LARGE). The API paths answer in the API's
shape ({detail, error_code}); the OpenAI-compatible gateway (/v1/) in OpenAI's ({"error": {message, type, code,
param}}, what every OpenAI client maps to its exception classes); the web pages keep Django's own HTML pages."""

from django.http import JsonResponse
from django.views import defaults
from django.views.csrf import csrf_failure as html_csrf_failure

API_PREFIXES = ("/ai/", "/auth/", "/api/")
OPENAI_PREFIXES = ("/v1/",)

_OPENAI_TYPE_BY_STATUS = {401: "authentication_error", 403: "permission_error", 404: "invalid_request_error"}


def openai_error_type(status: int) -> str:
    """OpenAI's error type for an HTTP status (when the error names no type of its own)."""
    return _OPENAI_TYPE_BY_STATUS.get(status, "api_error" if status >= 500 else "invalid_request_error")


def openai_error_body(message: str, *, status: int, code: str, param: str | None = None, type_: str = "") -> dict:
    return {"error": {"message": message, "type": type_ or openai_error_type(status), "code": code, "param": param}}


def error_response(request, detail: str, error_code: str, status: int) -> JsonResponse | None:
    """The error in the shape of the request's path; None for a web page (the caller answers in HTML)."""
    if request.path.startswith(OPENAI_PREFIXES):
        return JsonResponse(openai_error_body(detail, status=status, code=error_code), status=status)
    if request.path.startswith(API_PREFIXES):
        return JsonResponse({"detail": detail, "error_code": error_code}, status=status)
    return None


def bad_request(request, exception=None):
    return error_response(request, "Bad request", "BAD_REQUEST", 400) or defaults.bad_request(request, exception)


def permission_denied(request, exception=None):
    return error_response(
        request, "You do not have permission to perform this action", "PERMISSION_DENIED", 403
    ) or defaults.permission_denied(request, exception)


def not_found(request, exception=None):
    return error_response(request, "Not found", "NOT_FOUND", 404) or defaults.page_not_found(request, exception)


def server_error(request):
    return error_response(request, "Internal server error", "SERVER_ERROR", 500) or defaults.server_error(request)


def csrf_failure(request, reason=""):
    return error_response(request, f"CSRF verification failed: {reason}", "CSRF_FAILED", 403) or html_csrf_failure(
        request, reason
    )
