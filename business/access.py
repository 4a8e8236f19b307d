"""Which brands a user may act on, and the brand of a request (X-Brand-ID). The one place tenancy is decided."""

from django.db.models import Q, QuerySet

from business.errors import AccessDenied
from business.models import Brand, User

BRAND_HEADER = "HTTP_X_BRAND_ID"
# The brand a web-dashboard session acts on (chosen with the brand switcher, checked on every use).
SESSION_BRAND_KEY = "aicore_brand_id"


def brands_for_user(user: User) -> QuerySet[Brand]:
    """Brands the user may act on: their memberships, plus every brand of their company if company admin."""
    if not user.company_id:
        return Brand.objects.none()
    # Memberships count only inside the user's own company, whatever the rows say.
    condition = Q(memberships__user=user)
    if user.is_company_admin:
        condition = Q()
    return Brand.objects.filter(condition, company_id=user.company_id).distinct().select_related("company")


def resolve_request_brand(user: User, header_value: str | None) -> Brand:
    """The brand named by X-Brand-ID (or the user's only brand). Never read from a request body."""
    if header_value is None or header_value.strip() == "":
        brands = list(brands_for_user(user)[:2])
        if len(brands) == 1:
            return brands[0]
        raise AccessDenied("X-Brand-ID header is required (this user does not have exactly one brand)",
                           error_code="BRAND_REQUIRED")
    text = header_value.strip()
    # ASCII digits only: int() would also accept "١" or "1_0", which are not brand ids.
    if not (text.isascii() and text.isdigit() and len(text) <= 18):
        raise AccessDenied("X-Brand-ID must name a brand you can access", error_code="BRAND_ACCESS_DENIED")
    brand_id = int(text)
    brand = brands_for_user(user).filter(pk=brand_id).first()
    if brand is None:
        raise AccessDenied("You cannot act on this brand", error_code="BRAND_ACCESS_DENIED")
    return brand


def company_brands(user: User, brand: Brand) -> QuerySet[Brand]:
    """The brands a company-wide view may aggregate: only for a company admin, only their own company."""
    if not (user.is_company_admin and user.company_id == brand.company_id):
        raise AccessDenied("Company scope is reserved to company admins", error_code="COMPANY_ADMIN_REQUIRED")
    return Brand.objects.filter(company_id=user.company_id)


def can_administer_brand(user: User, brand: Brand) -> bool:
    """Brand settings (webhooks…) are for the brand's admins and the admins of its company."""
    if user.is_company_admin and user.company_id == brand.company_id:
        return True
    return brand.memberships.filter(user=user, role="admin").exists()
