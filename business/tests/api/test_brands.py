"""/ai/brand/: a brand's capacity settings (weight, running limit), read by its users, changed by company admins."""

from business.models import Brand
from conftest import make_client


def test_a_company_admin_sets_a_brands_weight_and_running_limit_and_others_cannot(personas):
    admin = make_client(personas.acme_admin, personas.brand_b)
    assert admin.get("/ai/brand/").json() == {
        "id": personas.brand_b.pk,
        "name": "B",
        "capacity_weight": 1,
        "max_running_jobs": None,
    }
    answer = admin.patch("/ai/brand/", {"capacity_weight": 3, "max_running_jobs": 5}, format="json")
    assert answer.status_code == 200, answer.content
    assert (answer.json()["capacity_weight"], answer.json()["max_running_jobs"]) == (3, 5)
    answer = admin.patch("/ai/brand/", {"max_running_jobs": None}, format="json")
    assert (answer.json()["capacity_weight"], answer.json()["max_running_jobs"]) == (3, None)
    brand = Brand.objects.get(pk=personas.brand_b.pk)
    assert (brand.capacity_weight, brand.max_running_jobs) == (3, None)

    for bad in ({"capacity_weight": 0}, {"max_running_jobs": 0}, {"capacity_weight": None}, {"capacity_weight": "x"}):
        refused = admin.patch("/ai/brand/", bad, format="json")
        assert (refused.status_code, refused.json()["error_code"]) == (400, "VALIDATION_ERROR"), bad

    # A brand admin and a member read it but may not change it; another company's admin cannot name the brand.
    for user, brand in ((personas.adam, personas.brand_a), (personas.bob, personas.brand_b)):
        client = make_client(user, brand)
        assert client.get("/ai/brand/").json()["id"] == brand.pk
        refused = client.patch("/ai/brand/", {"capacity_weight": 9}, format="json")
        assert (refused.status_code, refused.json()["error_code"]) == (403, "COMPANY_ADMIN_REQUIRED")
    outsider = make_client(personas.carol, personas.brand_b)
    refused = outsider.patch("/ai/brand/", {"capacity_weight": 9}, format="json")
    assert (refused.status_code, refused.json()["error_code"]) == (403, "BRAND_ACCESS_DENIED")
    assert Brand.objects.get(pk=personas.brand_b.pk).capacity_weight == 3
    assert Brand.objects.get(pk=personas.brand_a.pk).capacity_weight == 1
