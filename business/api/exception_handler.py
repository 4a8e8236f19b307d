"""One exception handler: every error leaves the API as {"detail": str, "error_code": str, ...}."""

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from business.errors import ApplicationError

logger = logging.getLogger(__name__)

_CODES = {
    exceptions.ParseError: "MALFORMED_JSON",
    exceptions.AuthenticationFailed: "AUTHENTICATION_FAILED",
    exceptions.NotAuthenticated: "NOT_AUTHENTICATED",
    exceptions.PermissionDenied: "PERMISSION_DENIED",
    exceptions.NotFound: "NOT_FOUND",
    exceptions.MethodNotAllowed: "METHOD_NOT_ALLOWED",
    exceptions.NotAcceptable: "NOT_ACCEPTABLE",
    exceptions.UnsupportedMediaType: "UNSUPPORTED_MEDIA_TYPE",
    exceptions.Throttled: "THROTTLED",
}


def _first_message(errors) -> str:
    if isinstance(errors, dict):
        for field, value in errors.items():
            message = _first_message(value)
            return message if field == "non_field_errors" else f"{field}: {message}"
    if isinstance(errors, list) and errors:
        return _first_message(errors[0])
    return str(errors)


def api_exception_handler(exc, context):
    if isinstance(exc, ApplicationError):
        body = {"detail": exc.detail, "error_code": exc.error_code, **exc.extra}
        return Response(body, status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(getattr(exc, "message_dict", None) or exc.messages)
    elif isinstance(exc, RequestDataTooBig):
        return Response({"detail": str(exc), "error_code": "PAYLOAD_TOO_LARGE"}, status=413)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a real bug: let Django log it and answer 500

    if isinstance(exc, exceptions.ValidationError):
        errors = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        response.data = {
            "detail": _first_message(errors),
            "error_code": getattr(exc, "error_code", "VALIDATION_ERROR"),
            "errors": errors,
        }
        response.status_code = status.HTTP_400_BAD_REQUEST
        return response

    code = getattr(exc, "error_code", None) or next((c for k, c in _CODES.items() if isinstance(exc, k)), "ERROR")
    detail = exc.detail if isinstance(exc.detail, str) else _first_message(exc.detail)
    data = {"detail": str(detail), "error_code": code}
    if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
        data["retry_after_seconds"] = int(exc.wait)
    response.data = data
    return response
