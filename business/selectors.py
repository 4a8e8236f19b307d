from django.db.models import Q, QuerySet

from business.access import brands_for_user
from business.errors import NotFound
from business.models import ApiKey, Brand, Membership, User


def user_profile(user: User) -> dict:
    """The user as login returns it: identity, company, and each brand with the user's role on it."""
    roles = dict(Membership.objects.filter(user=user).values_list("brand_id", "role"))
    brands = [
        {
            "id": brand.id,
            "name": brand.name,
            "role": "admin" if user.is_company_admin else roles.get(brand.id, Membership.Role.MEMBER),
        }
        for brand in brands_for_user(user).order_by("id")
    ]
    company = {"id": user.company.id, "name": user.company.name} if user.company_id else None
    return {
        "id": user.id,
        "username": user.username,
        "email": user.email,
        "company": company,
        "is_company_admin": user.is_company_admin,
        "brands": brands,
    }


def brand_users(brand: Brand) -> QuerySet[User]:
    """The users who may act on the brand: its members and its company's admins (who may create its jobs)."""
    return (
        User.objects.filter(Q(memberships__brand=brand) | Q(company_id=brand.company_id, is_company_admin=True))
        .distinct()
        .order_by("username")
    )


def api_keys_of(brand: Brand) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(brand=brand).select_related("created_by")


def api_key_get(*, brand: Brand, pk) -> ApiKey:
    """The brand's key by id; another brand's key (or a bad id) is a 404."""
    key = api_keys_of(brand).filter(pk=pk).first() if str(pk).isdigit() else None
    if key is None:
        raise NotFound("API key not found", error_code="API_KEY_NOT_FOUND")
    return key
