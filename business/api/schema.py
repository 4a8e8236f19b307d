"""OpenAPI generation: every operation documents the error responses it can really give, in the one shape
the exception handler produces ({detail, error_code, ...})."""

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated

from business.api.mixins import BrandScopedMixin

BRAND_HEADER_PARAMETER = OpenApiParameter(
    "X-Brand-ID",
    OpenApiTypes.INT,
    OpenApiParameter.HEADER,
    required=False,
    description="Brand to act on (required when the user can act on several brands)",
)


# Routes kept working for existing clients but documented once, under their canonical path.
UNDOCUMENTED_ALIASES = {"/ai/usage/quotas/": "/ai/providers/quotas/"}


def exclude_aliases(endpoints):
    """drf-spectacular pre-processing hook: each resource appears once in the document."""
    return [endpoint for endpoint in endpoints if not endpoint[0].startswith(tuple(UNDOCUMENTED_ALIASES))]


class JWTBrandScheme(SimpleJWTScheme):
    """Our JWT authentication is simplejwt's (plus the brand read): document it as the same bearer scheme."""

    target_class = "business.api.authentication.JWTBrandAuthentication"


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """A brand API key (`aic_…`) in the same Authorization header: it acts as its brand, with its scopes."""

    target_class = "business.api.authentication.ApiKeyAuthentication"
    name = "brandApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "`Authorization: Bearer aic_…`: a brand API key, acting as its brand with its scopes.",
        }


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    error_code = serializers.CharField()
    errors = serializers.DictField(required=False, help_text="Field errors of a VALIDATION_ERROR")
    current_status = serializers.CharField(required=False, help_text="The job's status, for conflicts")
    error = serializers.CharField(required=False, help_text="Kept by cancel for compatibility")


ERROR_DESCRIPTIONS = {
    "400": "Invalid input (VALIDATION_ERROR, MALFORMED_JSON, JOB_TYPE_NOT_FOUND, INVALID_STATUS, ...)",
    "401": "Missing, invalid or expired credentials",
    "403": "BRAND_ACCESS_DENIED, BRAND_REQUIRED or COMPANY_ADMIN_REQUIRED",
    "404": "Not found, or owned by another brand",
    "409": "The job's state forbids this (JOB_RUNNING, JOB_NOT_PENDING, JOB_NOT_CANCELLABLE, ...)",
    "413": "Body or input_data too large",
    "415": "Body is not JSON",
    "429": "Too many failed logins, or over quota",
}


class ErrorAwareAutoSchema(AutoSchema):
    """AutoSchema that adds the error responses of our exception handler to each operation, and the
    X-Brand-ID header to every brand-scoped view."""

    def get_tags(self):
        """Swagger UI groups by the URL's resource: /ai/jobs/… "jobs", /ai/providers/quotas/… "providers",
        /auth/… "auth" (drf-spectacular's default puts every /ai/ operation under one "ai")."""
        segments = [segment for segment in self.path.split("/") if segment]
        return [segments[1] if segments[0] == "ai" and len(segments) > 1 else segments[0]]

    def get_override_parameters(self):
        parameters = list(super().get_override_parameters())
        if isinstance(self.view, BrandScopedMixin):
            parameters.insert(0, BRAND_HEADER_PARAMETER)  # a view's own declaration (later) wins
        return parameters

    def _error_codes(self) -> set[str]:
        """The codes this operation can answer besides success; views add their own in `error_codes`."""
        codes = set()
        is_public = not any(isinstance(p, IsAuthenticated) for p in self.view.get_permissions())
        has_body = self.method in {"POST", "PUT", "PATCH"} and self.get_request_serializer() is not None
        paginated = getattr(self.view, "pagination_class", None) is not None and self.method == "GET"
        if not is_public:
            codes |= {"401", "403"}  # credentials; X-Brand-ID
        if has_body:
            codes |= {"400", "413", "415"}
        if paginated and (self._is_list_view() or getattr(self.view, "action", None) == "by_status"):
            codes |= {"400", "404"}  # bad page_size or filter; a page past the end
        if self.method == "GET" and any(p.get("in") == "query" for p in self._get_parameters()):
            codes.add("400")  # a query parameter out of range
        if "{" in self.path:
            codes.add("404")
        codes |= set(
            getattr(self.view, "error_codes", {}).get(getattr(self.view, "action", None) or self.method.lower(), ())
        )
        return codes

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for code in sorted(self._error_codes()):
            if code not in responses:
                responses[code] = self._get_response_for_code(ErrorSerializer, code, direction=direction)
                responses[code]["description"] = ERROR_DESCRIPTIONS[code]
        return responses
