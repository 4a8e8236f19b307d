"""Waiting for provider capacity, in this process (both passes, the embedded SQLite one included): a job that
finds no capacity, or gets a 429, goes back to pending with a reason and no attempt spent; past its type's
max_queue_seconds it ends timeout; the job API, the dashboard, /ai/providers/ and /metrics show it."""

import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from ai_core.engine import claim, finish
from ai_core.engine.claim import BrandRotation, claim_next
from ai_core.engine.runner import run_from_message
from ai_core.models import AIJob, AIJobEvent, AIJobType
from ai_providers.models import CapacityLimit
from ai_providers.tests.factories import CapacityLimitFactory
from business.models import Brand
from business.services import user_provision
from conftest import make_client
from testing.jobs import event_trail, submit

pytestmark = pytest.mark.django_db(transaction=True)  # the runner closes its connection around a call


def openai_chat(text: str) -> dict:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], "max_tokens": 16}


def submit_chat(brand, text: str = "hello") -> AIJob:
    return submit(brand, **openai_chat(text))


def rate_limited_once(retry_after: int) -> str:
    return f"[fake status=429 times=1 key={uuid.uuid4().hex} retry_after={retry_after}]"


def test_a_429_puts_the_job_back_to_wait_as_long_as_retry_after_says_without_spending_an_attempt(llm_env, personas):
    job = submit_chat(personas.brand_a, rate_limited_once(30))
    before = timezone.now()
    assert run_from_message(job.pk) == "pending"
    job.refresh_from_db()
    assert job.status == "pending" and job.attempts == 0
    assert job.waiting["reason"] == "provider_capacity" and job.waiting["provider"] == "openai"
    assert job.available_at >= before + timedelta(seconds=29)  # Retry-After: 30
    assert run_from_message(job.pk) is None  # not before its time
    detail = make_client(personas.alice, personas.brand_a).get(f"/ai/jobs/{job.job_id}/").json()
    assert detail["waiting"]["until"] and detail["waiting"]["model"] == "gpt-4o-mini"
    # Every caller of the endpoint waits, not only this job: the 429 paused it.
    other = submit_chat(personas.brand_b)
    assert run_from_message(other.pk) == "pending"
    # Time passes.
    CapacityLimit.objects.update(blocked_until=timezone.now())
    AIJob.objects.filter(pk__in=[job.pk, other.pk]).update(available_at=timezone.now())
    assert {run_from_message(job.pk), run_from_message(job.pk)} == {"completed"}
    job.refresh_from_db()
    assert job.attempts == 1 and job.waiting is None
    assert [to for _, to, _ in event_trail(job.pk)] == ["pending", "running", "pending", "running", "completed"]
    limit = CapacityLimit.objects.get(model="gpt-4o-mini")
    assert limit.rate_limited == 1 and limit.calls == 3


def test_a_wait_past_the_types_max_queue_seconds_ends_the_job_timeout(llm_env, personas):
    AIJobType.objects.filter(name="chat_completion").update(max_queue_seconds=5)
    job = submit_chat(personas.brand_a, rate_limited_once(60))
    assert run_from_message(job.pk) == "timeout"
    job.refresh_from_db()
    assert (job.status, job.error_code, job.attempts) == ("timeout", "CAPACITY_WAIT_EXCEEDED", 1)


def test_a_job_beyond_a_configured_limit_waits_and_shows_as_waiting(llm_env, personas):
    CapacityLimitFactory(model="gpt-4o-mini", requests_per_minute=1)
    first, second = submit_chat(personas.brand_a), submit_chat(personas.brand_a)
    assert run_from_message(first.pk) == "completed"
    assert run_from_message(second.pk) == "pending"
    second.refresh_from_db()
    assert second.attempts == 0 and second.waiting["until"] > (timezone.now() + timedelta(seconds=50)).isoformat()
    assert run_from_message(second.pk) == "pending"  # claimable, but woken only with a free slot: still none
    client = make_client(personas.alice, personas.brand_a)
    listed = {job["job_id"]: job for job in client.get("/ai/jobs/").json()["results"]}
    assert listed[second.job_id]["waiting"]["reason"] == "provider_capacity"
    assert listed[first.job_id]["waiting"] is None
    page = Client()
    page.force_login(personas.alice)
    rows = page.get("/dashboard/jobs/?fragment=rows").content.decode()
    assert 'class="badge waiting"' in rows and "for openai capacity" in rows
    capacity = next(p for p in client.get("/ai/providers/").json() if p["name"] == "openai")["capacity"]
    assert capacity[0]["configured"]["requests_per_minute"] == 1
    assert capacity[0]["in_use"]["requests_last_minute"] == 1 and capacity[0]["waits"] == 2


def test_metrics_export_capacity_waits_429s_and_queue_wait(llm_env, personas):
    job = submit_chat(personas.brand_a, rate_limited_once(30))
    run_from_message(job.pk)
    scrape = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {settings.AICORE_METRICS_TOKEN}")
    body = scrape.content.decode()
    assert (
        'aicore_provider_rate_limited_total{endpoint="environment",model="gpt-4o-mini",provider="openai"} 1.0' in body
    )
    assert "aicore_jobs_waiting_capacity 1.0" in body
    assert 'aicore_queue_wait_seconds{priority="normal"}' in body


def test_brands_are_served_by_weight_within_a_priority(job_types, make_brands, monkeypatch):
    heavy, light = make_brands(2)
    heavy.capacity_weight = 2
    heavy.save()
    monkeypatch.setattr(claim, "rotation", BrandRotation())
    for _ in range(6):
        submit(heavy), submit(light)
    order = [AIJob.objects.get(pk=claim_next().job_pk).brand_id for _ in range(6)]
    first = order[0]
    # Two of the heavy brand for one of the light one, in turns.
    assert order.count(heavy.pk) == 4 and order.count(light.pk) == 2, order
    assert order[:3].count(first) in (1, 2) and order[3:].count(heavy.pk) == 2


def test_a_brand_at_its_max_running_jobs_is_skipped_by_the_claim_and_other_brands_are_served(
    job_types, make_brands, monkeypatch
):
    """The limited brand's jobs are urgent, so a claim that did not skip it would take them first."""
    limited, other = make_brands(2)
    limited.max_running_jobs = 1
    limited.save()
    monkeypatch.setattr(claim, "rotation", BrandRotation())
    for _ in range(3):
        submit(limited, priority="urgent")
    for _ in range(2):
        submit(other)
    claimed = [AIJob.objects.get(pk=claim_next().job_pk) for _ in range(3)]
    assert [job.brand_id for job in claimed] == [limited.pk, other.pk, other.pk]
    assert claim_next() is None  # nothing spent: the limited brand's two others stay pending, unclaimed
    assert list(AIJob.objects.filter(brand=limited).values_list("status", "attempts").order_by("id")) == [
        ("running", 1),
        ("pending", 0),
        ("pending", 0),
    ]
    # Its running job ends: the next one is claimed, and again only one.
    assert finish.fail(claimed[0].pk, 1, "PROVIDER_ERROR", "done") == "failed"
    assert AIJob.objects.get(pk=claim_next().job_pk).brand_id == limited.pk
    assert claim_next() is None
    # No limit: the last one runs beside it.
    Brand.objects.filter(pk=limited.pk).update(max_running_jobs=None)
    assert AIJob.objects.get(pk=claim_next().job_pk).brand_id == limited.pk
    assert AIJob.objects.filter(brand=limited, status="running").count() == 2


def test_claims_that_raced_past_a_brands_max_running_jobs_give_the_later_job_back(job_types, make_brands):
    """Two claims that each saw room (their statements' snapshots did not see each other): once committed, the
    brand's first job by start keeps running, the later one goes back to pending, its attempt given back."""
    (brand,) = make_brands(1)
    first, second = submit(brand), submit(brand)
    claims = {claimed.job_pk: claimed for claimed in (claim_next(), claim_next())}
    assert set(claims) == {first.pk, second.pk}
    Brand.objects.filter(pk=brand.pk).update(max_running_jobs=1)
    assert claim._over_brand_limit([claims[first.pk]], {first.pk: 1}) == set()
    assert claim._over_brand_limit([claims[second.pk]], {second.pk: 1}) == {second.pk}
    assert [(j.pk, j.status, j.attempts) for j in AIJob.objects.filter(brand=brand).order_by("id")] == [
        (first.pk, "running", 1),
        (second.pk, "pending", 0),
    ]
    assert "max_running_jobs 1" in AIJobEvent.objects.filter(job_id=second.pk).latest("id").reason
    assert claim_next() is None


def test_a_company_admin_configures_its_credentials_limits_and_others_cannot(llm_env, personas):
    admin = make_client(personas.acme_admin, personas.brand_a)
    created = admin.post(
        "/ai/providers/credentials/", {"provider": "openai", "api_key": "sk-acme-own"}, format="json"
    ).json()
    url = f"/ai/providers/credentials/{created['id']}/capacity/"
    answer = admin.put(
        url, {"model": "gpt-4o-mini", "requests_per_minute": 500, "concurrent_requests": 4}, format="json"
    )
    assert answer.status_code == 200, answer.content
    assert answer.json()["requests_per_minute"] == 500 and answer.json()["tokens_per_minute"] is None
    assert admin.get(url).json()[0]["concurrent_requests"] == 4
    bad = admin.put(url, {"model": "gpt-4o-mini", "requests_per_minute": 0}, format="json")
    assert bad.status_code == 400 and bad.json()["error_code"]
    member = make_client(personas.alice, personas.brand_a)
    assert member.put(url, {"requests_per_minute": 5}, format="json").json()["error_code"] == "COMPANY_ADMIN_REQUIRED"
    outsider = make_client(personas.carol, personas.brand_z)
    assert outsider.get(url).status_code == 404
    row = CapacityLimit.objects.get(credential_id=created["id"])
    assert (row.requests_per_minute, row.concurrent_requests) == (500, 4)


def test_staff_configure_the_environment_endpoints_limits_and_others_only_read_them(llm_env, personas):
    staff = user_provision(username="sam", password="sam-pass-1", company_name="Acme", member_of=["A"], staff=True)
    url = "/ai/providers/openai/capacity/"
    operator = make_client(staff, personas.brand_a)
    answer = operator.put(
        url, {"model": "gpt-4o-mini", "requests_per_minute": 1, "concurrent_requests": 2}, format="json"
    )
    assert answer.status_code == 200, answer.content
    assert (answer.json()["requests_per_minute"], answer.json()["tokens_per_minute"]) == (1, None)
    row = CapacityLimit.objects.get(provider__name="openai", credential=None, model="gpt-4o-mini")
    assert (row.requests_per_minute, row.concurrent_requests) == (1, 2)
    # Every company calling with the environment's key is bound by it: the second job of the minute waits.
    assert run_from_message(submit_chat(personas.brand_a).pk) == "completed"
    assert run_from_message(submit_chat(personas.brand_z).pk) == "pending"

    bad = operator.put(url, {"model": "gpt-4o-mini", "requests_per_minute": 0}, format="json")
    assert bad.status_code == 400 and bad.json()["error_code"]
    assert operator.put("/ai/providers/nope/capacity/", {"model": ""}, format="json").status_code == 404
    for user, brand in ((personas.acme_admin, personas.brand_a), (personas.carol, personas.brand_z)):
        client = make_client(user, brand)
        refused = client.put(url, {"model": "gpt-4o-mini", "requests_per_minute": 500}, format="json")
        assert (refused.status_code, refused.json()["error_code"]) == (403, "STAFF_REQUIRED")
        assert [r["requests_per_minute"] for r in client.get(url).json()] == [1]
    assert CapacityLimit.objects.get(pk=row.pk).requests_per_minute == 1
