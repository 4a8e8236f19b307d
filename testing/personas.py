"""The personas every test meets (healthchecks-style alice, bob, carol …) and API clients signed in as them."""

from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from business.services import user_provision


class Personas:
    """Company Acme has brands A and B; company Zeta is another tenant entirely.

    alice: member of A.  adam: admin of A.  bob: member of B.  carol: company admin of Zeta.
    """

    def __init__(self):
        self.alice = user_provision(username="alice", password="alice-pass-1", company_name="Acme", member_of=["A"])
        self.adam = user_provision(username="adam", password="adam-pass-1", company_name="Acme", admin_of=["A"])
        self.bob = user_provision(username="bob", password="bob-pass-1", company_name="Acme", member_of=["B"])
        self.carol = user_provision(
            username="carol", password="carol-pass-1", company_name="Zeta", member_of=["Z"], company_admin=True
        )
        self.acme_admin = user_provision(username="ada", password="ada-pass-1", company_name="Acme", company_admin=True)
        from business.models import Brand

        self.brand_a = Brand.objects.get(name="A")
        self.brand_b = Brand.objects.get(name="B")
        self.brand_z = Brand.objects.get(name="Z")


def make_client(user, brand=None) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
    if brand is not None:
        client.defaults["HTTP_X_BRAND_ID"] = str(brand.id)
    return client
