"""The one domain error type. The API's exception handler renders it as {"detail", "error_code", ...}."""

from typing import Any


class ApplicationError(Exception):
    status_code = 400
    error_code = "BAD_REQUEST"

    def __init__(
        self,
        detail: str,
        *,
        error_code: str | None = None,
        status_code: int | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if error_code is not None:
            self.error_code = error_code
        if status_code is not None:
            self.status_code = status_code
        self.extra = extra


class NotFound(ApplicationError):
    status_code = 404
    error_code = "NOT_FOUND"


class Conflict(ApplicationError):
    status_code = 409
    error_code = "CONFLICT"


class AccessDenied(ApplicationError):
    status_code = 403
    error_code = "PERMISSION_DENIED"
