"""The job API's hot paths issue a bounded number of queries, whatever the number of jobs (and the count
of a broad search does not read every match). Each test measures with a few jobs and again with more."""

import pytest
from django.conf import settings
from django.db import connection
from django.db.models import Sum
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from ai_core import selectors, services
from ai_core.models import AIJob, AIJobType, JobDailyStat
from ai_core.tests.factories import AIJobTypeFactory
from conftest import Personas

pytestmark = pytest.mark.django_db

CHAT = {"messages": [{"role": "user", "content": "hello"}]}


def _jobs(personas, n, *, description="plain job"):
    return [
        services.job_create(
            brand=personas.brand_a,
            user=personas.alice,
            job_type="chat_completion",
            input_data=CHAT,
            description=description,
        )[0]
        for _ in range(n)
    ]


def _grow(personas, before, after, check):
    """Run `check` with `before` jobs of brand A, then again with `after`: the same query budget holds."""
    _jobs(personas, before)
    check()
    _jobs(personas, after - before)
    check()


def test_list_and_filters_have_a_fixed_query_budget(personas, client_for, django_assert_max_num_queries):
    client = client_for(personas.alice, personas.brand_a)

    def check():
        # user with brand, count from the roll-up, the page (job types, brands and users joined in)
        for url in ("/ai/jobs/", "/ai/jobs/?status=pending", "/ai/jobs/?job_type=chat_completion"):
            with django_assert_max_num_queries(3):
                assert client.get(url).status_code == 200
        # + matching job type names, the count is a bounded one
        with django_assert_max_num_queries(4):
            assert client.get("/ai/jobs/?search=plain").status_code == 200

    _grow(personas, 2, 25, check)


def test_detail_has_a_fixed_query_budget(personas, client_for, django_assert_max_num_queries):
    client = client_for(personas.alice, personas.brand_a)
    job = _jobs(personas, 1)[0]
    services.job_start(job_pk=job.pk)

    def check():
        # user with brand; the job with its type, creator, one-to-one extensions and events
        with django_assert_max_num_queries(2):
            response = client.get(f"/ai/jobs/{job.job_id}/")
        assert response.status_code == 200
        assert [e["to_status"] for e in response.json()["events"]][:2] == ["pending", "running"]

    _grow(personas, 1, 12, check)


def test_create_has_a_fixed_query_budget(personas, client_for, django_assert_max_num_queries):
    client = client_for(personas.alice, personas.brand_a)

    def check():
        # user with brand, job type, the model's catalogue entry, the company's quotas (none here), and the job
        # with its event and roll-up +1: one statement on PostgreSQL, three elsewhere (in a savepoint: the test
        # runs in a transaction)
        with django_assert_max_num_queries(7 if connection.vendor == "postgresql" else 9):
            response = client.post("/ai/jobs/", {"job_type": "chat_completion", "input_data": CHAT}, format="json")
        assert response.status_code == 201

    _grow(personas, 1, 15, check)


@pytest.mark.skipif(not settings.IS_POSTGRES, reason="the one-statement creation is PostgreSQL's")
@pytest.mark.django_db(transaction=True)
def test_a_creation_without_quota_or_extension_is_one_statement_and_needs_no_transaction():
    personas = Personas()
    AIJobTypeFactory(name="chat_completion")  # a transactional test's flush removed the migration's rows
    day = timezone.localdate()
    with CaptureQueriesContext(connection) as queries:
        job, created = services.job_create(
            brand=personas.brand_a, user=personas.alice, job_type="chat_completion", input_data=CHAT
        )
    writes = [q["sql"] for q in queries.captured_queries if not q["sql"].startswith("SELECT")]
    assert created and len(writes) == 1 and writes[0].startswith("WITH job AS (INSERT")
    assert not any(q["sql"] in ("BEGIN", "COMMIT") for q in queries.captured_queries)
    # the statement itself checks that the company has no active quota: no separate probe
    assert [q["sql"] for q in queries.captured_queries if "ai_usage_quota" in q["sql"]] == writes
    stored = AIJob.objects.get(pk=job.pk)
    assert (stored.job_id, stored.status, stored.created_by_id) == (job.job_id, "pending", personas.alice.pk)
    assert list(stored.events.values_list("to_status", "reason", "actor_id")) == [
        ("pending", "created", personas.alice.pk)
    ]
    assert JobDailyStat.objects.get(brand=personas.brand_a, day=day, status="pending").jobs == 1


@pytest.mark.skipif(not settings.IS_POSTGRES, reason="the one-statement creation is PostgreSQL's")
@pytest.mark.django_db(transaction=True)
def test_a_creation_in_a_company_with_a_quota_writes_nothing_in_one_statement_then_reserves():
    from ai_usage.models import Quota, QuotaReservation

    personas = Personas()
    AIJobTypeFactory(name="chat_completion")
    Quota.objects.create(company=personas.brand_a.company, monthly_token_limit=1_000_000)
    with CaptureQueriesContext(connection) as queries:
        job, created = services.job_create(
            brand=personas.brand_a, user=personas.alice, job_type="chat_completion", input_data=CHAT
        )
    sql = [q["sql"] for q in queries.captured_queries]
    assert created and sql.count("BEGIN") == 1 and sql.count("COMMIT") == 1
    assert AIJob.objects.filter(brand=personas.brand_a).count() == 1  # the guarded statement wrote nothing
    assert JobDailyStat.objects.filter(brand=personas.brand_a).aggregate(n=Sum("jobs"))["n"] == 1
    assert QuotaReservation.objects.get(job=job).tokens > 0


@pytest.mark.skipif(not settings.IS_POSTGRES, reason="the one-statement end is PostgreSQL's")
def test_an_engine_end_without_quota_is_one_statement_with_its_usage_row(personas):
    """A worker's completion of a job with no quota reservation and no OpenAI row: transition, event, roll-up
    and usage row in one statement, no transaction around it; a duplicate of it writes nothing."""
    from ai_core.engine import finish, runner
    from ai_core.engine.claim import claim_next
    from ai_providers.clients.base import ChatResult
    from ai_usage.models import AIJobUsage

    _jobs(personas, 1)
    with CaptureQueriesContext(connection) as claim:
        claimed = claim_next(task_id="t-1", also_return=runner.CLAIMED.sql)
    assert len(claim) == 1  # levels, pick, compare-and-set, event, roll-up and the job's row: one statement
    job = runner._job_from(runner.CLAIMED, claimed.extra)
    loaded = runner._load(claimed.job_pk)
    assert [getattr(job, f.attname) for f in AIJob._meta.concrete_fields] == [
        getattr(loaded, f.attname) for f in AIJob._meta.concrete_fields
    ]
    assert (job.status, job.attempts, job.task_id, job.company_id) == ("running", 1, "t-1", personas.brand_a.company_id)
    assert job.holds_quota_reservation is False
    result = ChatResult(
        completion="hi", finish_reason="stop", model="echo-1", request_id=None, input_tokens=3, output_tokens=2
    )
    with CaptureQueriesContext(connection) as queries:
        assert finish.complete(claimed.job_pk, claimed.attempt, result, job=job) == "completed"
    writes = [q["sql"] for q in queries.captured_queries if not q["sql"].startswith("SELECT")]
    assert len(writes) == 1 and "INSERT INTO ai_usage_aijobusage" in writes[0]
    assert not any(q["sql"] in ("BEGIN", "COMMIT") for q in queries.captured_queries)
    usage = AIJobUsage.objects.get(job_id=claimed.job_pk)
    assert (usage.input_tokens, usage.output_tokens, usage.final_status) == (3, 2, "completed")
    assert AIJob.objects.get(pk=claimed.job_pk).status == "completed"

    assert finish.complete(claimed.job_pk, claimed.attempt, result, job=job) is None  # a duplicate delivery
    assert AIJobUsage.objects.filter(job_id=claimed.job_pk).count() == 1


def test_dashboard_has_a_fixed_query_budget(personas, client_for, django_assert_max_num_queries):
    brand_admin = client_for(personas.alice, personas.brand_a)
    company_admin = client_for(personas.acme_admin, personas.brand_a)

    def check():
        # user with brand, type names, the roll-up by (brand, type, status), the roll-up by day, recent jobs
        with django_assert_max_num_queries(5):
            assert brand_admin.get("/ai/jobs/dashboard/").status_code == 200
        # + the company's brands, + the newest ids per brand then their rows
        with django_assert_max_num_queries(7):
            response = company_admin.get("/ai/jobs/dashboard/?scope=company")
        assert response.status_code == 200
        stats, total = response.json()["stats"], selectors.jobs_of(personas.brand_a).count()
        assert stats["total_jobs"] == stats["pending"] == stats["jobs_today"] == total
        assert len(response.json()["recent_jobs"]) == min(total, 10)

    _grow(personas, 2, 14, check)


def test_company_dashboard_recent_jobs_are_the_newest_across_brands(personas, client_for):
    older = _jobs(personas, 3)
    newer = services.job_create(brand=personas.brand_b, user=personas.bob, job_type="chat_completion", input_data=CHAT)[
        0
    ]
    body = client_for(personas.acme_admin, personas.brand_a).get("/ai/jobs/dashboard/?scope=company").json()
    assert [j["job_id"] for j in body["recent_jobs"]] == [newer.job_id] + [j.job_id for j in reversed(older)]
    assert {b["brand_name"]: b["jobs"] for b in body["brand_breakdown"]} == {"A": 3, "B": 1}


def test_search_count_is_exact_up_to_the_limit_then_flagged_as_estimated(personas, client_for, settings):
    _jobs(personas, 4, description="quarterly invoice")
    _jobs(personas, 2, description="something else")
    client = client_for(personas.alice, personas.brand_a)

    settings.AICORE_SEARCH_EXACT_COUNT_LIMIT = 10
    exact = client.get("/ai/jobs/?search=invoice")
    assert exact.json()["count"] == 4 and "X-Count-Estimated" not in exact

    settings.AICORE_SEARCH_EXACT_COUNT_LIMIT = 2
    estimated = client.get("/ai/jobs/?search=invoice&page_size=2")
    assert estimated["X-Count-Estimated"] == "true"
    assert estimated.json()["count"] >= 3 and len(estimated.json()["results"]) == 2
    count, exact_flag = selectors.job_count_bounded(selectors.jobs_of(personas.brand_a), limit=100)
    assert (count, exact_flag) == (6, True)


def test_search_matches_job_type_names_job_ids_and_descriptions(personas, client_for):
    job = _jobs(personas, 1, description="Quarterly INVOICE summary")[0]
    client = client_for(personas.alice, personas.brand_a)
    for term in ("invoice", "chat_compl", job.job_id[-6:].upper()):
        assert [r["job_id"] for r in client.get(f"/ai/jobs/?search={term}").json()["results"]] == [job.job_id]
    assert client.get("/ai/jobs/?search=nothing-like-this").json()["count"] == 0


def test_job_type_cache_serves_creation_and_an_admin_save_clears_it(personas, client_for, settings):
    services.job_type_cache_clear()
    settings.AICORE_JOB_TYPE_CACHE_SECONDS = 60
    client = client_for(personas.alice, personas.brand_a)
    body = {"job_type": "content_analysis", "input_data": {"content": "some text"}}
    try:
        with CaptureQueriesContext(connection) as first:
            assert client.post("/ai/jobs/", body, format="json").status_code == 201
        with CaptureQueriesContext(connection) as second:
            assert client.post("/ai/jobs/", body, format="json").status_code == 201
        # the second creation reads no job type: it comes from the cache
        assert len(second) == len(first) - 1
        assert not any("ai_core_aijobtype" in q["sql"] for q in second.captured_queries)
        job_type = AIJobType.objects.get(name="content_analysis")
        job_type.is_active = False
        job_type.save()
        refused = client.post("/ai/jobs/", body, format="json")
        assert refused.status_code == 400 and refused.json()["error_code"] == "JOB_TYPE_NOT_FOUND"
    finally:
        services.job_type_cache_clear()
