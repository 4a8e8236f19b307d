from business.access import brands_for_user
from business.models import Membership, User


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
