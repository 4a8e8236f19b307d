"""GET /ai/usage/ (filters), /ai/usage/dashboard/?days=, /ai/usage/cost_breakdown/?month=."""

import pytest
from django.utils import timezone

from ai_core import services as jobs

pytestmark = pytest.mark.django_db


def finished(brand, user, *, model, tokens=(100, 50), fail=False):
    job, _ = jobs.job_create(
        brand=brand,
        user=user,
        job_type="chat_completion",
        input_data={"messages": [{"role": "user", "content": "x"}], "model": model},
    )
    attempt = jobs.job_start(job_pk=job.pk).attempt
    if fail:
        jobs.job_fail(job_pk=job.pk, attempt=attempt, error_message="no")
    else:
        jobs.job_complete(
            job_pk=job.pk,
            attempt=attempt,
            result_data={"completion": "ok"},
            input_tokens=tokens[0],
            output_tokens=tokens[1],
        )
    return job


@pytest.fixture
def usage_world(personas, llm_env):
    finished(personas.brand_a, personas.alice, model="gpt-4o-mini", tokens=(1_000_000, 0))  # $0.15
    finished(personas.brand_a, personas.adam, model="gpt-4o", tokens=(0, 100_000))  # $1.00
    finished(personas.brand_a, personas.alice, model="echo-1", fail=True)
    finished(personas.brand_b, personas.bob, model="gpt-4o", tokens=(1_000_000, 0))  # $2.50, brand B
    return personas


def test_the_usage_list_filters_by_provider_model_user_and_success(usage_world, client_for):
    alice = client_for(usage_world.alice, usage_world.brand_a)
    assert alice.get("/ai/usage/").json()["count"] == 3
    assert alice.get("/ai/usage/", {"provider": "openai"}).json()["count"] == 2
    only = alice.get("/ai/usage/", {"model": "gpt-4o"}).json()["results"]
    assert len(only) == 1 and only[0]["total_cost"] == "1.000000" and only[0]["output_cost"] == "1.000000"
    assert alice.get("/ai/usage/", {"user": usage_world.adam.id}).json()["count"] == 1
    failed = alice.get("/ai/usage/", {"success": "false"}).json()["results"]
    assert [(r["final_status"], r["success_rate"]) for r in failed] == [("failed", 0.0)]
    assert alice.get("/ai/usage/", {"created_at__gte": "2999-01-01T00:00:00Z"}).json()["count"] == 0


def test_the_usage_dashboard_sums_the_days_and_breaks_down_by_provider_and_model(usage_world, client_for):
    body = client_for(usage_world.alice, usage_world.brand_a).get("/ai/usage/dashboard/", {"days": 7}).json()
    assert body["totals"]["jobs"] == 3 and body["totals"]["total_cost"] == "1.150000"
    assert body["totals"]["success_rate"] == round(2 / 3, 4)
    assert len(body["daily"]) == 7 and body["daily"][-1]["date"] == timezone.localdate().isoformat()
    assert body["daily"][-1]["total_cost"] == "1.15"
    assert {r["provider_name"]: r["total_cost"] for r in body["by_provider"]} == {
        "openai": "1.150000",
        "echo": "0.000000",
    }
    bad = client_for(usage_world.alice, usage_world.brand_a).get("/ai/usage/dashboard/", {"days": "0"})
    assert bad.status_code == 400 and bad.json()["error_code"] == "INVALID_DAYS"


def test_the_cost_breakdown_of_a_month_by_provider_model_type_user_and_brand(usage_world, client_for):
    month = timezone.localdate().strftime("%Y-%m")
    body = client_for(usage_world.alice, usage_world.brand_a).get("/ai/usage/cost_breakdown/", {"month": month}).json()
    assert body["month"] == month and body["totals"]["total_cost"] == "1.150000"
    assert [(m["model_name"], m["total_cost"]) for m in body["by_model"]] == [
        ("gpt-4o", "1.000000"),
        ("gpt-4o-mini", "0.150000"),
        ("echo-1", "0.000000"),
    ]
    assert {u["username"]: u["total_cost"] for u in body["by_user"]} == {
        "adam": "1.000000",
        "alice": "0.150000",
    }
    assert body["by_job_type"] == [
        {"job_type": "chat_completion", "jobs": 3, "total_tokens": 1_100_000, "total_cost": "1.150000"}
    ]
    assert [b["brand_name"] for b in body["by_brand"]] == ["A"]
    company = (
        client_for(usage_world.acme_admin, usage_world.brand_a)
        .get("/ai/usage/cost_breakdown/", {"month": month, "scope": "company"})
        .json()
    )
    assert {b["brand_name"]: b["total_cost"] for b in company["by_brand"]} == {
        "A": "1.150000",
        "B": "2.500000",
    }
    assert (
        client_for(usage_world.alice, usage_world.brand_a)
        .get("/ai/usage/cost_breakdown/", {"scope": "company"})
        .status_code
        == 403
    )
    empty = client_for(usage_world.alice, usage_world.brand_a).get("/ai/usage/cost_breakdown/", {"month": "2001-01"})
    assert empty.json()["totals"]["jobs"] == 0
    assert (
        client_for(usage_world.alice, usage_world.brand_a)
        .get("/ai/usage/cost_breakdown/", {"month": "2026-13"})
        .json()["error_code"]
        == "INVALID_MONTH"
    )


def test_the_jobs_dashboard_now_shows_money(usage_world, client_for):
    body = (
        client_for(usage_world.acme_admin, usage_world.brand_a).get("/ai/jobs/dashboard/", {"scope": "company"}).json()
    )
    assert body["daily_activity"][0]["total_cost"] == "3.65"
    assert {b["brand_name"]: b["cost"] for b in body["brand_breakdown"]} == {"A": "1.15", "B": "2.50"}


@pytest.mark.parametrize("month", ["9999-12", "10000-01", "0000-01", "2026-00"])
def test_a_month_whose_end_the_calendar_cannot_hold_is_a_400(usage_world, client_for, month):
    # 9999-12 parsed, then its next month (year 10000) overflowed: a 500.
    response = client_for(usage_world.alice, usage_world.brand_a).get("/ai/usage/cost_breakdown/", {"month": month})

    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_MONTH"


def test_the_last_and_first_months_the_calendar_holds_are_answered(usage_world, client_for):
    alice = client_for(usage_world.alice, usage_world.brand_a)
    for month in ("9999-11", "0001-01"):
        response = alice.get("/ai/usage/cost_breakdown/", {"month": month})

        assert response.status_code == 200, response.content
        assert response.json()["month"] == month and response.json()["totals"]["jobs"] == 0
