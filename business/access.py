"""Which brands a user may act on, and the brand of a request (X-Brand-ID). The one place tenancy is decided."""

from django.db.models import Exists, OuterRef, Q, QuerySet

from business import statements
from business.errors import AccessDenied
from business.models import Brand, Membership, User
from business.numbers import parse_natural
from business.sql import prepared_cursor

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
        raise AccessDenied(
            "X-Brand-ID header is required (this user does not have exactly one brand)", error_code="BRAND_REQUIRED"
        )
    brand_id = parse_brand_header(header_value)
    if brand_id is None:
        raise AccessDenied("X-Brand-ID must name a brand you can access", error_code="BRAND_ACCESS_DENIED")
    brand = brand_for_user(user, brand_id)
    if brand is None:
        raise AccessDenied("You cannot act on this brand", error_code="BRAND_ACCESS_DENIED")
    return brand


def brand_for_user(user: User, brand_id: int) -> Brand | None:
    """The brand if the user may act on it (brands_for_user's rule), as a lookup by primary key.

    An EXISTS on the membership keeps it one row, where joining memberships with DISTINCT would read
    every membership of the brand.
    """
    if not user.company_id:
        return None
    brands = Brand.objects.select_related("company").filter(pk=brand_id, company_id=user.company_id)
    if not user.is_company_admin:
        brands = brands.filter(Exists(Membership.objects.filter(user_id=user.pk, brand_id=OuterRef("pk"))))
    return brands.first()


def parse_brand_header(header_value: str | None) -> int | None:
    """The brand id an X-Brand-ID header names, or None when it names none a database could hold."""
    return parse_natural((header_value or "").strip())


def user_with_brand(user_id, brand_id: int) -> tuple[User | None, Brand | None]:
    """The user and, when they may act on it, the brand: one query for what every /ai/ request needs first.

    The access rule is brands_for_user's: a brand of the user's own company, and a membership of it unless
    company admin. The brand and its company carry their ids and names; other fields load on first use.
    Hand-written (business.statements) because every API request runs it: as a raw() queryset it cost ~3x the Python.
    """
    read = statements.user_with_brand_read()
    with prepared_cursor() as cursor:
        cursor.execute(read.sql, [brand_id, user_id])
        row = cursor.fetchone()
    if row is None:
        return None, None
    user = read.user.instance(row)
    if not read.brand.present(row, len(read.user)):
        return user, None
    brand = read.brand.instance(row, len(read.user))
    brand.company = read.company.instance(row, len(read.user) + len(read.brand))
    return user, brand


def still_authorized(user: User, brand: Brand) -> bool:
    """Whether `user`, as authenticated earlier, may still act on `brand`: still active, still granted the
    brand, and the password unchanged since (a change revokes their tokens and sessions). One query.

    For what outlives a request, such as an event stream: a revocation must end it, not wait for it to close.
    """
    current, granted = user_with_brand(user.pk, brand.pk)
    return current is not None and current.is_active and current.password == user.password and granted is not None


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


def require_company_admin(request) -> None:
    """Credentials, quotas and brand settings bind the company's share of providers: only its company admins
    change them (of the request's brand's company)."""
    user = request.user
    if not (user.is_company_admin and user.company_id == request.brand.company_id):
        raise AccessDenied(
            "Only a company admin may change provider credentials, quotas and brand settings",
            error_code="COMPANY_ADMIN_REQUIRED",
        )
