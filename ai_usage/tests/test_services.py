"""Quotas hold: a reservation per submit in one conditional UPDATE, settled or released exactly once."""

import math
import threading
from datetime import date
from decimal import Decimal

import pytest
from django.db import connection, connections

from ai_core import services as jobs
from ai_core.engine.handlers import build_request
from ai_core.models import AIJob, AIJobType
from ai_core.workflow import IllegalTransition, StaleAttempt
from ai_providers.selectors import model_resolve
from ai_usage.models import AIJobUsage, Quota, QuotaPeriod, QuotaReservation
from ai_usage.services import month_start, next_month, quota_status, reservation_for
from ai_usage.tests.factories import QuotaFactory, QuotaPeriodFactory
from business.errors import ApplicationError

MESSAGE = {"messages": [{"role": "user", "content": "quota me"}], "model": "gpt-4o-mini", "max_tokens": 100}


def need():
    job = AIJob(job_type=AIJobType.objects.get(name="chat_completion"), input_data=MESSAGE)
    return reservation_for(request=build_request(job), choice=model_resolve("gpt-4o-mini"))


def submit(personas, data=MESSAGE):
    job, _ = jobs.job_create(
        brand=personas.brand_a, user=personas.alice, job_type="chat_completion", input_data=dict(data)
    )
    return job


def run(job, *, input_tokens=10, output_tokens=20):
    started = jobs.job_start(job_pk=job.pk)
    jobs.job_complete(
        job_pk=job.pk,
        attempt=started.attempt,
        result_data={"completion": "ok"},
        input_tokens=input_tokens,
        output_tokens=output_tokens,
    )
    return started.attempt


def period(quota):
    return QuotaPeriod.objects.get(quota=quota, month=month_start())


@pytest.mark.django_db
def test_when_exactly_one_more_job_fits_the_next_is_refused_with_the_remaining_quota(personas, llm_env):
    quota = Quota.objects.create(
        company=personas.brand_a.company, brand=personas.brand_a, monthly_token_limit=need().tokens * 2
    )
    submit(personas)
    submit(personas)  # exactly fits
    with pytest.raises(ApplicationError) as raised:
        submit(personas)
    assert raised.value.status_code == 429 and raised.value.error_code == "QUOTA_EXCEEDED"
    assert raised.value.extra["remaining_quota"] == {"tokens": 0, "cost": None}
    assert period(quota).reserved_tokens == need().tokens * 2


@pytest.mark.django_db
def test_the_api_answers_429_quota_exceeded_and_400_provider_not_configured(personas, client_for, llm_env, settings):
    Quota.objects.create(company=personas.brand_a.company, monthly_cost_limit=Decimal("0.000001"))
    alice = client_for(personas.alice, personas.brand_a)
    refused = alice.post("/ai/jobs/", {"job_type": "chat_completion", "input_data": MESSAGE}, format="json")
    assert refused.status_code == 429
    assert refused.json()["error_code"] == "QUOTA_EXCEEDED" and refused.json()["remaining_quota"]["cost"]
    settings.ANTHROPIC_API_KEY = ""
    unconfigured = alice.post(
        "/ai/jobs/",
        {
            "job_type": "chat_completion",
            "input_data": {"messages": [{"role": "user", "content": "x"}], "model": "claude-haiku-4-5"},
        },
        format="json",
    )
    assert unconfigured.status_code == 400 and unconfigured.json()["error_code"] == "PROVIDER_NOT_CONFIGURED"
    unknown = alice.post(
        "/ai/jobs/",
        {
            "job_type": "chat_completion",
            "input_data": {"messages": [{"role": "user", "content": "x"}], "model": "no-such-model"},
        },
        format="json",
    )
    assert unknown.status_code == 400 and unknown.json()["error_code"] == "MODEL_NOT_SUPPORTED"


@pytest.mark.django_db
def test_completion_settles_the_reservation_to_the_real_cost(personas, llm_env):
    quota = Quota.objects.create(
        company=personas.brand_a.company,
        brand=personas.brand_a,
        monthly_token_limit=100_000,
        monthly_cost_limit=Decimal("10"),
    )
    job = submit(personas)
    assert (period(quota).reserved_tokens, period(quota).reserved_cost_micros) == (
        need().tokens,
        need().cost_micros,
    )
    run(job, input_tokens=1000, output_tokens=50)
    counters = period(quota)
    # 1000 × 0.15 + 50 × 0.60 = 180 micro-dollars
    assert (counters.reserved_tokens, counters.used_tokens) == (0, 1050)
    assert (counters.reserved_cost_micros, counters.used_cost_micros) == (0, 180)
    status = quota_status(quota=quota)
    assert status["used"] == {"tokens": 1050, "cost": "0.000180"} and status["reserved"]["tokens"] == 0
    assert status["remaining"] == {"tokens": 100_000 - 1050, "cost": "9.999820"}
    assert status["near_limit"] is False and status["reset_at"] == next_month(month_start()).isoformat()


@pytest.mark.django_db
def test_failed_timed_out_cancelled_and_deleted_jobs_release_their_reservation(personas, llm_env):
    quota = Quota.objects.create(company=personas.brand_a.company, monthly_token_limit=1_000_000)
    failed, timed_out, cancelled, deleted = (submit(personas) for _ in range(4))
    attempt = jobs.job_start(job_pk=failed.pk).attempt
    jobs.job_fail(job_pk=failed.pk, attempt=attempt, error_message="provider said no", error_code="PROVIDER_REJECTED")
    attempt = jobs.job_start(job_pk=timed_out.pk).attempt
    jobs.job_timeout(job_pk=timed_out.pk, attempt=attempt)
    jobs.job_cancel(job_pk=cancelled.pk)
    jobs.job_delete(job=deleted)
    counters = period(quota)
    assert (counters.reserved_tokens, counters.used_tokens, counters.reserved_cost_micros) == (0, 0, 0)
    assert set(QuotaReservation.objects.values_list("state", flat=True)) == {"released"}
    # failed and timeout jobs still get a usage row (success_rate 0); a cancelled job does not
    rows = {u.final_status: u for u in AIJobUsage.objects.all()}
    assert set(rows) == {"failed", "timeout"}
    assert rows["failed"].success_rate == 0 and rows["failed"].error_count == 1 and rows["failed"].total_cost == 0


@pytest.mark.django_db
def test_a_duplicate_delivery_charges_once(personas, llm_env):
    quota = Quota.objects.create(company=personas.brand_a.company, monthly_token_limit=1_000_000)
    job = submit(personas)
    attempt = run(job, input_tokens=100, output_tokens=10)
    with pytest.raises((IllegalTransition, StaleAttempt)):
        jobs.job_complete(
            job_pk=job.pk,
            attempt=attempt,
            result_data={"completion": "again"},
            input_tokens=100,
            output_tokens=10,
        )
    with pytest.raises(IllegalTransition):
        jobs.job_fail(job_pk=job.pk, attempt=attempt, error_message="late failure")
    assert AIJobUsage.objects.filter(job=job).count() == 1
    assert period(quota).used_tokens == 110


@pytest.mark.django_db
def test_no_month_ever_ends_above_its_limit(personas, llm_env):
    limit = need().tokens * 3 + need().tokens // 2
    quota = QuotaFactory(brand=personas.brand_a, monthly_token_limit=limit)
    admitted = 0
    for _ in range(10):
        try:
            job = submit(personas)
        except ApplicationError:
            break
        admitted += 1
        # a model answering with as much as it was allowed: max_tokens and a prompt at its upper bound
        run(job, input_tokens=need().tokens - 100, output_tokens=100)
    counters = period(quota)
    assert admitted == 3 and counters.used_tokens + counters.reserved_tokens <= limit


@pytest.mark.django_db
def test_quota_status_is_near_the_limit_at_80_percent_and_months_roll_over(personas, llm_env):
    quota = QuotaFactory(company=personas.brand_a.company, monthly_token_limit=1000)
    last_month = month_start(month_start() - __import__("datetime").timedelta(days=1))
    QuotaPeriodFactory(quota=quota, month=last_month, used_tokens=1000)
    status = quota_status(quota=quota)
    assert status["used"]["tokens"] == 0 and status["near_limit"] is False  # a new month starts at zero
    assert quota_status(quota=quota, month=last_month)["exceeded"] is True
    QuotaPeriodFactory(quota=quota, used_tokens=790, reserved_tokens=10)
    assert quota_status(quota=quota)["near_limit"] is True
    assert next_month(date(2026, 12, 1)) == date(2027, 1, 1) and month_start(date(2027, 1, 31)) == date(2027, 1, 1)


@pytest.mark.django_db
def test_quotas_of_another_brand_or_company_are_404(personas, client_for):
    quota_b = QuotaFactory(brand=personas.brand_b, monthly_token_limit=5)
    alice = client_for(personas.alice, personas.brand_a)
    assert alice.get(f"/ai/providers/quotas/{quota_b.pk}/").status_code == 404
    assert alice.get(f"/ai/providers/quotas/{quota_b.pk}/quota_status/").status_code == 404
    assert alice.get("/ai/providers/quotas/").json() == []
    bob = client_for(personas.bob, personas.brand_b)
    assert bob.get(f"/ai/providers/quotas/{quota_b.pk}/quota_status/").json()["limits"]["tokens"] == 5
    admin = client_for(personas.acme_admin, personas.brand_a)
    created = admin.post(
        "/ai/providers/quotas/",
        {"scope": "company", "provider": "openai", "monthly_cost_limit": "25.50"},
        format="json",
    )
    assert created.status_code == 201 and created.json()["scope"] == "company"
    assert alice.post("/ai/providers/quotas/", {"monthly_token_limit": 1}, format="json").status_code == 403
    status = alice.get("/ai/providers/quotas/status/").json()
    assert [s["provider"] for s in status] == ["openai"] and status[0]["limits"]["cost"] == "25.500000"
    carol = client_for(personas.carol, personas.brand_z)
    assert carol.get(f"/ai/providers/quotas/{created.json()['id']}/").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_fifty_parallel_submits_admit_exactly_one_when_one_fits(personas, llm_env):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises every writer: the race this test exercises only exists on PostgreSQL")
    quota = Quota.objects.create(
        company=personas.brand_a.company,
        brand=personas.brand_a,
        monthly_token_limit=need().tokens + need().tokens // 2,
    )
    barrier = threading.Barrier(50)
    outcomes = []

    def attempt():
        try:
            barrier.wait()
            submit(personas)
            outcomes.append("admitted")
        except ApplicationError as exc:
            outcomes.append(exc.error_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=attempt) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("admitted") == 1 and outcomes.count("QUOTA_EXCEEDED") == 49
    assert period(quota).reserved_tokens == need().tokens


@pytest.mark.django_db
def test_the_openapi_document_gives_the_shape_of_quota_exceeded_and_its_remaining_quota(client):
    document = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    schemas = document["components"]["schemas"]
    for path in ("/ai/jobs/", "/ai/openai/chat/", "/ai/batches/"):
        response = document["paths"][path]["post"]["responses"]["429"]
        reference = response["content"]["application/json"]["schema"]["$ref"]
        assert reference == "#/components/schemas/QuotaExceeded", path
    body = schemas["QuotaExceeded"]
    assert {"detail", "error_code", "remaining_quota", "required"} <= set(body["required"])
    remaining = schemas[body["properties"]["remaining_quota"]["allOf"][0]["$ref"].rsplit("/", 1)[1]]
    assert set(remaining["properties"]) == {"tokens", "cost"}
    assert remaining["properties"]["tokens"]["nullable"] and remaining["properties"]["cost"]["nullable"]


@pytest.mark.django_db
def test_a_request_asking_for_cache_writes_reserves_its_prompt_at_the_dearest_write_rate(personas, llm_env):
    plain = {"messages": [{"role": "user", "content": "x" * 1000}], "model": "claude-sonnet-4-5", "max_tokens": 10}
    cached = {
        **plain,
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "x" * 1000, "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
            }
        ],
    }
    choice = model_resolve("claude-sonnet-4-5")
    chat = AIJobType.objects.get(name="chat_completion")
    without, with_cache = (
        reservation_for(request=build_request(AIJob(job_type=chat, input_data=data)), choice=choice)
        for data in (plain, cached)
    )
    # $3/1M per prompt token without caching, $6/1M (a 1-hour write) with it; 10 output tokens at $15/1M.
    assert without.cost_micros == math.ceil(Decimal(without.tokens - 10) * 3 + 150)
    assert with_cache.cost_micros == math.ceil(Decimal(with_cache.tokens - 10) * 6 + 150)
