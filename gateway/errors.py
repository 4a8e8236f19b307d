"""Errors in OpenAI's shape, `{"error": {"message", "type", "code", "param"}}`, so every OpenAI client maps them
to its own exception classes (401 AuthenticationError, 403 PermissionDenied, 404 NotFound, 400 BadRequest, 429
RateLimit)."""

from django.http import JsonResponse

from business.api.errors import openai_error_body, openai_error_type
from business.errors import ApplicationError

# Our error codes → (HTTP status, OpenAI error type). Anything else keeps its status, as invalid_request_error.
_BY_CODE = {
    "MODEL_NOT_SUPPORTED": (404, "invalid_request_error"),
    "QUOTA_EXCEEDED": (429, "insufficient_quota"),
    "VALIDATION_ERROR": (400, "invalid_request_error"),
    "JOB_TYPE_NOT_FOUND": (400, "invalid_request_error"),
    "CAPACITY_WAIT_EXCEEDED": (429, "rate_limit_error"),
}


class GatewayError(Exception):
    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        code: str,
        param: str | None = None,
        type_: str = "",
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.message, self.status, self.code, self.param = message, status, code, param
        self.headers = headers or {}  # e.g. Retry-After on a 429
        self.type = type_ or openai_error_type(status)

    def body(self) -> dict:
        return openai_error_body(self.message, status=self.status, code=self.code, param=self.param, type_=self.type)

    def response(self) -> JsonResponse:
        return JsonResponse(self.body(), status=self.status, headers=self.headers)

    @classmethod
    def of(cls, exc: ApplicationError) -> "GatewayError":
        status, type_ = _BY_CODE.get(exc.error_code, (exc.status_code, ""))
        param = "model" if exc.error_code == "MODEL_NOT_SUPPORTED" else None
        if exc.error_code == "VALIDATION_ERROR" and isinstance(exc.extra.get("errors"), dict):
            param = next(iter(exc.extra["errors"]), None)
        return cls(exc.detail, status=status, code=exc.error_code, param=param, type_=type_)
