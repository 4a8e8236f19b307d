"""Fallback models with a real worker process against the fake OpenAI and Anthropic servers (real SDKs, real
HTTP): a primary that answers 503 until its attempts run out, a primary whose circuit is open, no fallback."""

import math
from decimal import Decimal

import pytest

from ai_core.models import AIJob, AIJobEvent, AIJobType
from ai_usage.models import AIJobUsage, Quota, QuotaPeriod, QuotaReservation
from conftest import make_client
from testing.jobs import all_final, wait_for
from testing.workers import purge_broker

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
FALLBACK = "claude-3-5-haiku-latest"
MAX_TOKENS = 50


@pytest.fixture(scope="module")
def llm_worker(workers, fake_llm):
    purge_broker()
    proc = workers.start(
        concurrency=4,
        OPENAI_API_KEY="sk-worker",
        OPENAI_BASE_URL=fake_llm.openai_base_url,
        ANTHROPIC_API_KEY="sk-ant-worker",
        ANTHROPIC_BASE_URL=fake_llm.base_url,
        AICORE_CIRCUIT_FAILURES="2",
    )
    workers.wait_ready(proc)
    return workers


@pytest.fixture
def two_attempts(llm_env, job_types):
    """Each model gets two attempts (retries 100-400 ms apart in tests: workers.FAST_ENGINE). The fake server."""
    AIJobType.objects.filter(name="chat_completion").update(max_attempts=2)
    return llm_env


def chat(content: str, **extra) -> dict:
    return {
        "job_type": "chat_completion",
        "input_data": {
            "model": "gpt-4o-mini",
            "max_tokens": MAX_TOKENS,
            "messages": [{"role": "user", "content": content}],
            **extra,
        },
    }


def calls_of(fake, content: str) -> dict[str, int]:
    """The fake server's calls carrying `content`, by wire format."""
    calls = {"openai": 0, "anthropic": 0}
    for request in list(fake.requests):
        if any(m.get("content") == content for m in request["body"].get("messages") or []):
            calls["anthropic" if request["path"].rstrip("/").endswith("/messages") else "openai"] += 1
    return calls


def finished(job_id: str, workers) -> AIJob:
    job = AIJob.objects.get(job_id=job_id)
    wait_for(lambda: all_final([job.pk]), timeout=60, what=lambda: f"job {job_id} to finish\n{workers.logs()}")
    job.refresh_from_db()
    return job


def test_a_primary_down_until_its_attempts_run_out_completes_on_the_fallback(llm_worker, two_attempts, personas):
    alice = make_client(personas.alice, personas.brand_a)
    Quota.objects.create(company=personas.brand_a.company, brand=personas.brand_a, monthly_cost_limit=Decimal("10"))
    content = "bonjour [fake status=503 api=openai usage=10,20]"
    response = alice.post("/ai/jobs/", chat(content, fallback_models=[FALLBACK]), format="json")
    assert response.status_code == 201, response.content
    job = finished(response.json()["job_id"], llm_worker)

    assert (job.status, job.attempts, job.fallback_attempts) == ("completed", 3, 2), llm_worker.logs()
    assert job.result_data["completion"] == f"Fake: {content}"
    assert calls_of(two_attempts, content) == {"openai": 2, "anthropic": 1}
    detail = alice.get(f"/ai/jobs/{job.job_id}/").json()
    assert detail["model"] == FALLBACK
    assert detail["fallback"] == {
        "model": FALLBACK,
        "provider": "anthropic",
        "primary_model": "gpt-4o-mini",
        "after_attempts": 2,
    }
    assert [e["to_status"] for e in detail["events"]] == [
        *["pending", "running", "pending", "running"],  # the primary's two attempts
        *["pending", "running", "completed"],  # the switch, then the fallback's first attempt
    ]
    assert detail["events"][4]["reason"] == (
        f"fallback gpt-4o-mini -> {FALLBACK}: PROVIDER_UNAVAILABLE after 2 attempts on gpt-4o-mini"
    )

    # Charged at the fallback's price: 10 input tokens × $0.80/1M + 20 output tokens × $4.00/1M.
    usage = AIJobUsage.objects.get(job=job)
    assert (usage.model_name, usage.provider_name) == (FALLBACK, "anthropic")
    assert (usage.input_tokens, usage.output_tokens, usage.error_count) == (10, 20, 2)
    assert (usage.input_cost, usage.output_cost, usage.total_cost) == (
        Decimal("0.000008"),
        Decimal("0.000080"),
        Decimal("0.000088"),
    )
    assert detail["usage"]["total_cost"] == "0.000088" and detail["usage"]["model_name"] == FALLBACK

    # The reservation followed the model: re-made at the fallback's price when the job switched, then settled.
    # Its bound: a token per byte of the message (role and content) + 4 per message + 16 per request, and
    # the 50 output tokens asked for.
    prompt_bound = 16 + 4 + len(b"user") + len(content.encode())
    primary_micros = math.ceil(prompt_bound * Decimal("0.15") + MAX_TOKENS * Decimal("0.60"))
    fallback_micros = math.ceil(prompt_bound * Decimal("0.80") + MAX_TOKENS * Decimal("4.00"))
    assert fallback_micros != primary_micros
    reservation = QuotaReservation.objects.get(job=job)
    assert (reservation.state, reservation.cost_micros) == ("settled", fallback_micros)
    assert (reservation.tokens, reservation.settled_cost_micros) == (prompt_bound + MAX_TOKENS, 88)
    period = QuotaPeriod.objects.get(quota__brand=personas.brand_a)
    assert (period.used_cost_micros, period.reserved_cost_micros, period.used_tokens) == (88, 0, 30)


def test_an_open_circuit_sends_jobs_straight_to_their_fallback_and_without_one_a_job_fails_as_before(
    llm_worker, two_attempts, personas
):
    alice = make_client(personas.alice, personas.brand_a)
    down = "the provider is down [fake status=503 api=openai]"
    response = alice.post("/ai/jobs/", chat(down), format="json")
    lone = finished(response.json()["job_id"], llm_worker)
    # No fallback named: failed after its two attempts, as before. Two failures in a row open the circuit.
    assert (lone.status, lone.attempts, lone.error_code, lone.fallback_model) == (
        "failed",
        2,
        "PROVIDER_UNAVAILABLE",
        "",
    )
    assert calls_of(two_attempts, down)["openai"] == 2

    # The type names the fallback this time; its job does not call the provider whose circuit is open.
    AIJobType.objects.filter(name="chat_completion").update(fallback_models=[FALLBACK])
    skipping = "while it is down [fake status=503 api=openai]"
    response = alice.post("/ai/jobs/", chat(skipping), format="json")
    job = finished(response.json()["job_id"], llm_worker)
    assert (job.status, job.attempts, job.fallback_model, job.fallback_provider) == (
        "completed",
        2,
        FALLBACK,
        "anthropic",
    )
    assert calls_of(two_attempts, skipping) == {"openai": 0, "anthropic": 1}
    switch = AIJobEvent.objects.get(job=job, from_status="running", to_status="pending")
    assert switch.reason == f"fallback gpt-4o-mini -> {FALLBACK}: the openai circuit is open"
    assert AIJobUsage.objects.get(job=job).model_name == FALLBACK
