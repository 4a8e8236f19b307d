"""X-Brand-ID is resolved together with the user (one query): the same access rules as brands_for_user."""

import pytest

pytestmark = pytest.mark.django_db


def test_brand_header_grants_exactly_the_brands_the_user_may_act_on(personas, client_for):
    cases = [
        (personas.alice, personas.brand_a, 200),  # member
        (personas.bob, personas.brand_a, 403),  # member of another brand of the same company
        (personas.acme_admin, personas.brand_b, 200),  # company admin, no membership
        (personas.carol, personas.brand_a, 403),  # company admin of another company
    ]
    for user, brand, expected in cases:
        response = client_for(user, brand).get("/ai/jobs/")
        assert response.status_code == expected, (user.username, brand.name)
        if expected == 403:
            assert response.json()["error_code"] == "BRAND_ACCESS_DENIED"
    for header in ("abc", "0", "-1", str(2**70), ""):
        client = client_for(personas.adam)
        client.defaults["HTTP_X_BRAND_ID"] = header
        body = client.get("/ai/jobs/").json()
        # adam has one brand: an empty header falls back to it; anything else names no brand of his
        assert body.get("error_code") == (None if header == "" else "BRAND_ACCESS_DENIED"), header


def test_an_inactive_user_is_refused_even_with_a_valid_brand(personas, client_for):
    client = client_for(personas.alice, personas.brand_a)
    personas.alice.is_active = False
    personas.alice.save()
    assert client.get("/ai/jobs/").status_code == 401
