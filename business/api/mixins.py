from business.access import BRAND_HEADER, parse_brand_header, resolve_request_brand
from business.errors import AccessDenied
from business.models import ApiKey


class BrandScopedMixin:
    """For every /ai/ view: after authentication, `request.brand` is the brand named by X-Brand-ID."""

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        header = request.META.get(BRAND_HEADER)
        found = getattr(request._request, "aicore_brand", None)
        if found is not None and found[0] == parse_brand_header(header):
            # JWTBrandAuthentication already read it with the user (None: the user may not act on it).
            if found[1] is None:
                raise AccessDenied("You cannot act on this brand", error_code="BRAND_ACCESS_DENIED")
            request.brand = found[1]
            return
        if isinstance(request.auth, ApiKey):  # a key acts on its own brand only (ApiKeyAuthentication set it)
            raise AccessDenied("This API key cannot act on this brand", error_code="BRAND_ACCESS_DENIED")
        request.brand = resolve_request_brand(request.user, header)
