"""Quota limits the database columns cannot hold, and other bad quota bodies: 400s, never 500s."""

import pytest

from ai_usage.models import Quota

BIGINT_MAX = 2**63 - 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    "limits",
    [
        {"monthly_token_limit": 2**63},
        {"monthly_token_limit": 10**30},
        {"monthly_token_limit": 1e30},
        {"monthly_token_limit": -1},
        {"monthly_cost_limit": 1e30},
        {"monthly_cost_limit": "1" + "0" * 30},
        {"monthly_cost_limit": "0.0000001"},
    ],
)
def test_a_limit_the_database_column_cannot_hold_is_a_400_on_create_and_update(personas, client_for, limits):
    # monthly_token_limit of 2^63 reached the bigint column and failed there: a 500.
    admin = client_for(personas.acme_admin, personas.brand_a)
    quota = Quota.objects.create(company=personas.brand_a.company, brand=personas.brand_a, monthly_token_limit=5)

    created = admin.post("/ai/providers/quotas/", limits, format="json")
    updated = admin.patch(f"/ai/providers/quotas/{quota.pk}/", limits, format="json")

    for response in (created, updated):
        assert response.status_code == 400, response.content
        assert response.json()["error_code"] == "VALIDATION_ERROR"
        assert set(response.json()["errors"]) == set(limits)
    assert list(Quota.objects.values_list("pk", "monthly_token_limit", "monthly_cost_limit")) == [(quota.pk, 5, None)]


@pytest.mark.django_db
def test_the_largest_token_limit_the_column_holds_is_accepted(personas, client_for):
    admin = client_for(personas.acme_admin, personas.brand_a)

    response = admin.post("/ai/providers/quotas/", {"monthly_token_limit": BIGINT_MAX}, format="json")

    assert response.status_code == 201, response.content
    assert Quota.objects.get(pk=response.json()["id"]).monthly_token_limit == BIGINT_MAX


@pytest.mark.django_db
def test_a_quota_on_an_unknown_provider_is_a_400_provider_not_found(personas, client_for):
    # It was an undocumented 404 (found by the fuzzer once it ran as a company admin).
    admin = client_for(personas.acme_admin, personas.brand_a)

    response = admin.post("/ai/providers/quotas/", {"provider": "nope", "monthly_token_limit": 5}, format="json")

    assert response.status_code == 400
    assert response.json()["error_code"] == "PROVIDER_NOT_FOUND"
    assert not Quota.objects.exists()
