"""What a brand API key may do: its scopes, read against the request's method and the view."""

from rest_framework.permissions import SAFE_METHODS, BasePermission

from business.errors import AccessDenied
from business.models import ApiKey, ApiKeyScope


def key_scope_required(request, view) -> str | None:
    """The scope an API-key request needs here, or None when keys may not be used here at all.

    Reads (GET, HEAD) need `jobs:read` anywhere a key is accepted. Writes need `jobs:write`, and only views that
    create or change jobs accept them (`accepts_api_key_writes`): a key never manages the brand's settings
    (webhooks, credentials, quotas, other keys), whatever its creator's role.
    """
    if getattr(view, "api_key_scope", None):
        return view.api_key_scope
    if not getattr(view, "accepts_api_keys", True):
        return None
    if request.method in SAFE_METHODS:
        return ApiKeyScope.JOBS_READ
    return ApiKeyScope.JOBS_WRITE if getattr(view, "accepts_api_key_writes", False) else None


class ApiKeyScopes(BasePermission):
    """Requests authenticated with a JWT or a session pass; an API key passes with the scope the view needs."""

    def has_permission(self, request, view) -> bool:
        key = request.auth
        if not isinstance(key, ApiKey):
            return True
        needed = key_scope_required(request, view)
        if needed is None:
            raise AccessDenied("API keys cannot be used on this endpoint", error_code="API_KEY_NOT_ALLOWED")
        if needed not in key.scopes:
            raise AccessDenied(f"This API key lacks the '{needed}' scope", error_code="API_KEY_SCOPE_MISSING")
        return True
