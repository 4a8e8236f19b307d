"""X-Brand-ID: which brand a request acts on (SPEC §3)."""

import pytest

from ai_core.tests.factories import AIJobFactory
from business.tests.factories import BrandFactory, CompanyFactory, UserFactory


def job_ids(response):
    return {job["job_id"] for job in response.json()["results"]}


def test_a_user_with_one_brand_acts_on_it_without_the_header(personas, client_for):
    job = AIJobFactory(brand=personas.brand_a, created_by=personas.alice)

    response = client_for(personas.alice).get("/ai/jobs/")

    assert response.status_code == 200
    assert job_ids(response) == {job.job_id}


def test_a_user_with_several_brands_must_name_one(personas, client_for):
    response = client_for(personas.acme_admin).get("/ai/jobs/")

    assert response.status_code == 403
    assert response.json()["error_code"] == "BRAND_REQUIRED"


def test_a_user_without_any_brand_gets_brand_required(db, client_for):
    loner = UserFactory(company=CompanyFactory())

    response = client_for(loner).get("/ai/jobs/")

    assert response.status_code == 403
    assert response.json()["error_code"] == "BRAND_REQUIRED"


def test_a_member_may_not_name_a_brand_they_do_not_belong_to(personas, client_for):
    response = client_for(personas.alice, personas.brand_b).get("/ai/jobs/")

    assert response.status_code == 403
    assert response.json()["error_code"] == "BRAND_ACCESS_DENIED"


def test_a_company_admin_acts_on_every_brand_of_their_company(personas, client_for):
    a_job = AIJobFactory(brand=personas.brand_a)
    b_job = AIJobFactory(brand=personas.brand_b)

    assert job_ids(client_for(personas.acme_admin, personas.brand_a).get("/ai/jobs/")) == {a_job.job_id}
    assert job_ids(client_for(personas.acme_admin, personas.brand_b).get("/ai/jobs/")) == {b_job.job_id}


def test_a_company_admin_may_not_act_on_another_companys_brand(personas, client_for):
    response = client_for(personas.carol, personas.brand_a).get("/ai/jobs/")

    assert response.status_code == 403
    assert response.json()["error_code"] == "BRAND_ACCESS_DENIED"


def test_a_membership_in_another_companys_brand_grants_nothing(personas, client_for):
    """Memberships are only honoured inside the user's own company (defence against bad provisioning)."""
    foreign = BrandFactory(company=CompanyFactory(name="Foreign"), name="F")
    UserFactory(username="mallory", company=personas.brand_a.company, brands=[foreign])
    from business.models import User

    mallory = User.objects.get(username="mallory")

    response = client_for(mallory, foreign).get("/ai/jobs/")

    assert response.status_code == 403
    assert response.json()["error_code"] == "BRAND_ACCESS_DENIED"


@pytest.mark.parametrize("header", ["abc", "-1", "0", "1.5", "999999999", "9" * 23, "١", " "])
def test_an_invalid_or_unknown_brand_header_is_denied_not_a_500(personas, client_for, header):
    client = client_for(personas.acme_admin)
    client.defaults["HTTP_X_BRAND_ID"] = header

    response = client.get("/ai/jobs/")

    assert response.status_code == 403
    assert response.json()["error_code"] in {"BRAND_ACCESS_DENIED", "BRAND_REQUIRED"}


def test_the_brand_is_never_taken_from_the_request_body(personas, client_for):
    response = client_for(personas.alice, personas.brand_a).post(
        "/ai/jobs/",
        {
            "job_type": "chat_completion",
            "input_data": {"messages": [{"role": "user", "content": "hi"}]},
            "brand": personas.brand_b.id,
            "brand_id": personas.brand_b.id,
        },
        format="json",
    )

    assert response.status_code == 201
    assert response.json()["brand"]["id"] == personas.brand_a.id
