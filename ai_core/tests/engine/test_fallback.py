"""Fallback models as a request or a job type names them: checked against the catalogue (400 with an error_code),
shown by the job-types API, checked by the admin; which model comes next; the circuit breaker's rules; a
fallback the quota cannot afford."""

from decimal import Decimal

import pytest
from django.utils import timezone

from ai_core.admin import AIJobTypeForm
from ai_core.engine import circuit
from ai_core.engine.fallback import next_fallback
from ai_core.engine.retry import RetryPolicy
from ai_core.engine.runner import run_from_message
from ai_core.models import AIJob, AIJobType
from ai_core.services import job_create
from ai_providers.clients.base import TransientProviderError
from ai_providers.models import CapacityLimit
from ai_usage.models import AIJobUsage, Quota, QuotaPeriod
from conftest import make_client

FALLBACK = "claude-3-5-haiku-latest"


def chat(content: str, **extra) -> dict:
    return {
        "job_type": "chat_completion",
        "input_data": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}], **extra},
    }


@pytest.mark.parametrize(
    ("fallback_models", "error_code"),
    [
        (["llama-nonexistent"], "MODEL_NOT_SUPPORTED"),
        ("claude-3-5-haiku-latest", "VALIDATION_ERROR"),
        (["gpt-4o-mini"], "VALIDATION_ERROR"),  # the job's own model
        ([FALLBACK, FALLBACK], "VALIDATION_ERROR"),
        (["gpt-4o", "gpt-4.1", "gpt-4.1-mini", FALLBACK], "VALIDATION_ERROR"),  # more than three
    ],
)
def test_it_rejects_fallbacks_the_catalogue_cannot_run(personas, llm_env, fallback_models, error_code):
    alice = make_client(personas.alice, personas.brand_a)
    response = alice.post("/ai/jobs/", chat("hi", fallback_models=fallback_models), format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error_code"] == error_code
    assert not AIJob.objects.exists()


def test_the_job_types_api_shows_a_types_fallbacks(personas, llm_env):
    AIJobType.objects.filter(name="chat_completion").update(fallback_models=[FALLBACK])
    types = make_client(personas.alice, personas.brand_a).get("/ai/job-types/").json()
    assert next(t for t in types if t["name"] == "chat_completion")["fallback_models"] == [FALLBACK]


def test_the_admin_refuses_a_type_fallback_the_catalogue_does_not_know(llm_env):
    job_type = AIJobType.objects.get(name="chat_completion")
    data = {"default_model": "gpt-4o-mini", "fallback_models": '["llama-nonexistent"]'}
    form = AIJobTypeForm(data=data, instance=job_type)
    assert not form.is_valid()
    assert "not in the provider catalogue" in str(form.errors["fallback_models"])
    form = AIJobTypeForm(data={**data, "fallback_models": f'["{FALLBACK}"]'}, instance=job_type)
    assert form.is_valid(), form.errors


def test_the_next_fallback_follows_the_current_model_and_a_request_replaces_the_types_list(personas, llm_env):
    AIJobType.objects.filter(name="chat_completion").update(fallback_models=["gpt-4o"])
    job_type = AIJobType.objects.get(name="chat_completion")
    job = AIJob(job_type=job_type, brand=personas.brand_a, input_data=chat("hi")["input_data"])
    assert next_fallback(job).name == "gpt-4o"
    job.input_data["fallback_models"] = [FALLBACK, "gpt-4o"]
    assert (next_fallback(job).name, next_fallback(job).provider.name) == (FALLBACK, "anthropic")
    job.fallback_model = FALLBACK
    assert next_fallback(job).name == "gpt-4o"
    job.fallback_model = "gpt-4o"
    assert next_fallback(job) is None
    job.input_data["fallback_models"] = []
    job.fallback_model = ""
    assert next_fallback(job) is None


def test_a_circuit_opens_after_consecutive_failures_ignores_429s_and_one_success_closes_it(db, settings):
    settings.AICORE_CIRCUIT_FAILURES = 2
    unavailable = TransientProviderError("503", status_code=503)
    assert circuit.means_down(unavailable) and circuit.means_down(TransientProviderError("timed out"))
    assert not circuit.means_down(TransientProviderError("slow down", status_code=429))
    circuit.record_failure("openai", "503")
    assert not circuit.is_open("openai")
    circuit.record_failure("openai", "503")
    assert circuit.is_open("openai") and not circuit.is_open("anthropic")
    circuit.record_success("openai")
    assert not circuit.is_open("openai")
    circuit.record_failure("openai", "503")  # counting starts over after a success
    assert not circuit.is_open("openai")


@pytest.mark.django_db(transaction=True)
def test_a_fallback_dearer_than_the_quota_has_room_for_fails_the_job_and_gives_the_reservation_back(
    personas, llm_env, job_types
):
    """In this process (the runner against the fake server): the primary's reservation fits a $0.0001 quota,
    the fallback's (at $0.80/$4.00 per 1M, 50 output tokens: over 200 µ$) does not."""
    AIJobType.objects.filter(name="chat_completion").update(max_attempts=1)
    Quota.objects.create(company=personas.brand_a.company, brand=personas.brand_a, monthly_cost_limit=Decimal("0.0001"))
    data = chat("hi [fake status=503 api=openai]", max_tokens=50, fallback_models=[FALLBACK])["input_data"]
    job, _ = job_create(brand=personas.brand_a, user=None, job_type="chat_completion", input_data=data)
    assert QuotaPeriod.objects.get().reserved_cost_micros > 0

    assert run_from_message(job.pk, policy=RetryPolicy(base_seconds=0)) == "failed"
    job.refresh_from_db()
    assert (job.status, job.error_code, job.fallback_model) == ("failed", "QUOTA_EXCEEDED", "")
    assert f"fallback to {FALLBACK}" in job.error_message
    period = QuotaPeriod.objects.get()
    assert (period.reserved_cost_micros, period.used_cost_micros) == (0, 0)


@pytest.mark.django_db(transaction=True)
def test_a_capacity_wait_past_the_bound_runs_the_job_on_its_fallback_and_a_short_one_waits(
    personas, llm_env, job_types, settings
):
    """In this process: the primary endpoint answers 429 with Retry-After 600 s (past the 60 s bound), which
    pauses it for every job; a job with a fallback completes on it, one without waits. A 429 asking for 5 s
    is waited out even by a job with fallbacks."""
    settings.AICORE_FALLBACK_AFTER_WAIT_SECONDS = 60
    short = chat("hi [fake status=429 times=1 key=short-wait api=openai retry_after=5]", fallback_models=[FALLBACK])
    job, _ = job_create(brand=personas.brand_a, user=None, job_type="chat_completion", input_data=short["input_data"])
    assert run_from_message(job.pk) == "pending"
    job.refresh_from_db()
    assert (job.fallback_model, job.attempts, job.waiting["provider"]) == ("", 0, "openai")
    CapacityLimit.objects.update(blocked_until=None)
    AIJob.objects.filter(pk=job.pk).update(available_at=timezone.now())
    assert run_from_message(job.pk) == "completed"

    long = chat("hi [fake status=429 api=openai retry_after=600]", fallback_models=[FALLBACK])
    job, _ = job_create(brand=personas.brand_a, user=None, job_type="chat_completion", input_data=long["input_data"])
    assert run_from_message(job.pk) == "pending"  # the 429, then the switch
    job.refresh_from_db()
    assert (job.fallback_model, job.fallback_provider) == (FALLBACK, "anthropic")
    assert "waiting too long for capacity" in job.events.order_by("-id").first().reason
    assert run_from_message(job.pk) == "completed"
    job.refresh_from_db()
    assert (job.status, job.waiting) == ("completed", None)
    assert AIJobUsage.objects.get(job=job).model_name == FALLBACK

    # The endpoint stays paused for everyone: a job with fallbacks does not call it; one without waits.
    calls = CapacityLimit.objects.get(model="gpt-4o-mini").calls
    data = chat("hi", fallback_models=[FALLBACK])["input_data"]
    other, _ = job_create(brand=personas.brand_b, user=None, job_type="chat_completion", input_data=data)
    assert [run_from_message(other.pk), run_from_message(other.pk)] == ["pending", "completed"]
    other.refresh_from_db()
    assert (other.status, other.fallback_model) == ("completed", FALLBACK)
    assert CapacityLimit.objects.get(model="gpt-4o-mini").calls == calls
    data = chat("hi")["input_data"]
    lone, _ = job_create(brand=personas.brand_b, user=None, job_type="chat_completion", input_data=data)
    assert run_from_message(lone.pk) == "pending"
    lone.refresh_from_db()
    assert (lone.fallback_model, lone.waiting["provider"]) == ("", "openai")
