"""GET /ai/jobs/dashboard/ (brand and company scope); bounded query counts on list, detail and dashboard."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from ai_core import services
from ai_core.models import JobStatus
from ai_core.tests.factories import AIJobFactory, AIJobTypeFactory

S = JobStatus


@pytest.fixture
def alice(personas, client_for):
    return client_for(personas.alice, personas.brand_a)


def test_dashboard_shape_and_numbers_for_one_brand(personas, alice):
    gen = AIJobTypeFactory(name="text_generation")
    for status in (S.PENDING, S.RUNNING, S.COMPLETED, S.COMPLETED, S.FAILED, S.CANCELLED, S.TIMEOUT):
        AIJobFactory(brand=personas.brand_a, created_by=personas.alice, status=status)
    AIJobFactory(brand=personas.brand_a, job_type=gen, created_at=timezone.now() - timedelta(days=3))
    AIJobFactory(brand=personas.brand_a, job_type=gen, created_at=timezone.now() - timedelta(days=45))
    AIJobFactory(brand=personas.brand_b)

    body = alice.get("/ai/jobs/dashboard/").json()

    assert body["stats"] == {
        "total_jobs": 9,
        "jobs_today": 7,
        "pending": 3,
        "running": 1,
        "completed": 2,
        "failed": 1,
        "cancelled": 1,
        "timeout": 1,
    }
    assert len(body["recent_jobs"]) == 9 and body["recent_jobs"][0]["brand"]["id"] == personas.brand_a.id
    assert body["top_job_types"] == [
        {"name": "chat_completion", "count": 7},
        {"name": "text_generation", "count": 2},
    ]
    days = body["daily_activity"]
    assert len(days) == 30
    assert days[0] == {"date": timezone.localdate().isoformat(), "jobs": 7, "total_cost": "0.00"}
    assert days[3]["jobs"] == 1 and sum(d["jobs"] for d in days) == 8  # the 45-day-old job is outside
    assert body["brand_breakdown"] == [{"brand_id": personas.brand_a.id, "brand_name": "A", "jobs": 9, "cost": "0.00"}]
    assert body["scope"] == "brand"


def test_recent_jobs_are_the_ten_newest(personas, alice):
    jobs = [AIJobFactory(brand=personas.brand_a) for _ in range(12)]

    recent = alice.get("/ai/jobs/dashboard/").json()["recent_jobs"]

    assert [j["job_id"] for j in recent] == [j.job_id for j in reversed(jobs)][:10]


def test_daily_cost_is_an_exact_decimal_string(personas, alice):
    for cost in (Decimal("0.125"), Decimal("0.0005"), Decimal("1.000001")):
        job = AIJobFactory(brand=personas.brand_a)
        started = services.job_start(job_pk=job.pk)
        services.job_complete(job_pk=job.pk, attempt=started.attempt, result_data={}, cost=cost)

    body = alice.get("/ai/jobs/dashboard/").json()

    assert body["daily_activity"][0]["total_cost"] == "1.125501"
    assert body["brand_breakdown"][0]["cost"] == "1.125501"


def test_company_scope_aggregates_every_brand_of_the_company(personas, client_for):
    AIJobFactory(brand=personas.brand_a, status=S.COMPLETED)
    AIJobFactory(brand=personas.brand_a)
    AIJobFactory(brand=personas.brand_b, status=S.FAILED)
    AIJobFactory(brand=personas.brand_z)

    body = client_for(personas.acme_admin, personas.brand_b).get("/ai/jobs/dashboard/", {"scope": "company"}).json()

    assert body["scope"] == "company"
    assert body["stats"]["total_jobs"] == 3
    assert (body["stats"]["completed"], body["stats"]["failed"], body["stats"]["pending"]) == (1, 1, 1)
    assert [(b["brand_name"], b["jobs"]) for b in body["brand_breakdown"]] == [("A", 2), ("B", 1)]
    assert {j["brand"]["name"] for j in body["recent_jobs"]} == {"A", "B"}


def test_company_scope_needs_a_company_admin(personas, client_for):
    response = client_for(personas.adam, personas.brand_a).get("/ai/jobs/dashboard/", {"scope": "company"})

    assert response.status_code == 403
    assert response.json()["error_code"] == "COMPANY_ADMIN_REQUIRED"


def test_an_empty_dashboard_has_zeros_not_nulls(personas, alice):
    body = alice.get("/ai/jobs/dashboard/").json()

    assert body["stats"]["total_jobs"] == 0 and body["recent_jobs"] == [] and body["top_job_types"] == []
    assert {d["total_cost"] for d in body["daily_activity"]} == {"0.00"}


# --- query counts: independent of the number of jobs --------------------------------------------------


def queries(client, url, params=None) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url, params).status_code == 200
    return len(captured)


@pytest.mark.parametrize(
    "url,params",
    [
        ("/ai/jobs/", None),
        ("/ai/jobs/", {"status": "completed"}),
        ("/ai/jobs/", {"search": "job"}),
        ("/ai/jobs/by_status/", {"status": "completed"}),
        ("/ai/jobs/dashboard/", None),
        ("/ai/jobs/dashboard/", {"scope": "company"}),
        ("/ai/job-types/", None),
    ],
)
def test_list_and_dashboard_queries_do_not_grow_with_the_jobs(
    personas, client_for, django_assert_max_num_queries, url, params
):
    client = client_for(personas.acme_admin, personas.brand_a)
    AIJobFactory(brand=personas.brand_a, status=S.COMPLETED)
    few = queries(client, url, params)
    for i in range(8):
        AIJobFactory(
            brand=(personas.brand_a, personas.brand_b)[i % 2],
            status=S.COMPLETED,
            created_by=(personas.alice, personas.adam, personas.acme_admin)[i % 3],
        )

    with django_assert_max_num_queries(10):
        assert client.get(url, params).status_code == 200
    assert queries(client, url, params) == few


def test_detail_queries_do_not_grow_with_the_events(personas, alice, django_assert_max_num_queries):
    short = AIJobFactory(brand=personas.brand_a)
    long = AIJobFactory(brand=personas.brand_a)
    for _ in range(5):
        started = services.job_start(job_pk=long.pk)
        services.job_requeue(job_pk=long.pk, attempt=started.attempt, reason="retry")

    with django_assert_max_num_queries(10):
        assert len(alice.get(f"/ai/jobs/{long.job_id}/").json()["events"]) == 11
    assert queries(alice, f"/ai/jobs/{short.pk}/") == queries(alice, f"/ai/jobs/{long.pk}/")
