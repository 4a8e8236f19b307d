from business.access import BRAND_HEADER, resolve_request_brand


class BrandScopedMixin:
    """For every /ai/ view: after authentication, `request.brand` is the brand named by X-Brand-ID."""

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        request.brand = resolve_request_brand(request.user, request.META.get(BRAND_HEADER))
