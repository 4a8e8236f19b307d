"""The gateway's hot path in statements: a non-streaming call is a durable, costed job in a fixed number of round
trips (counted, not timed: a regression that adds one fails here). On PostgreSQL, with the per-process memos on
(API key, job type, catalogue, credentials, circuits): the creation, already claimed, with its OpenAI row (1), the end
with usage and token counts (1), the brand's webhook endpoints (1); no transaction, and the answer comes from
the attempt's result, not from reading the row back."""

from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from ai_core.models import AIJob
from ai_usage.models import QuotaReservation
from business.services import api_key_create

pytestmark = [pytest.mark.django_db(transaction=True)]

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi [fake usage=100,20]"}]}
# The portable path (SQLite): a transaction per write, the claim a compare-and-set of its own.
STATEMENTS = {"postgresql": 3, "sqlite": 26}
# With a quota to reserve on (here the key's own monthly limit): the creation and the end are transactions, and
# the reservation reads its periods again for the budget alerts (ai_usage.alerts).
# PG: the OpenAI row is part of the creation statement; the end locks its reservations, then their quota periods
# (one statement each: the global lock order of ai_usage.services.quota_lock_open), then settles both.
STATEMENTS_WITH_QUOTA = {"postgresql": 22, "sqlite": 35}


@pytest.fixture
def memos_on(settings):
    settings.AICORE_API_KEY_CACHE_SECONDS = 60
    settings.AICORE_JOB_TYPE_CACHE_SECONDS = settings.AICORE_CATALOGUE_CACHE_SECONDS = 60
    settings.AICORE_CIRCUIT_CACHE_SECONDS = 60  # the providers' circuits (ai_core.engine.circuit)
    # The endpoints' capacity rows (2 s by default: a loaded machine's calls can outlast it, one more statement).
    settings.AICORE_CAPACITY_CACHE_SECONDS = 60


def calls(key: str, n: int) -> list[list[str]]:
    """The statements of each of `n` calls, after a first one that fills the memos."""
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    seen = []
    for _ in range(n + 1):
        with CaptureQueriesContext(connection) as statements:
            response = client.post("/v1/chat/completions", BODY, content_type="application/json")
        assert response.status_code == 200, response.content
        seen.append([q["sql"] for q in statements.captured_queries])
    return seen[1:]


def test_a_call_is_a_whole_job_in_a_fixed_number_of_statements(personas, llm_env, memos_on):
    key = api_key_create(name="sdk", brand=personas.brand_a, user=personas.adam)[1]
    for statements in calls(key, 3):
        assert len(statements) == STATEMENTS[connection.vendor], "\n".join(s[:120] for s in statements)
    job = AIJob.objects.select_related("usage", "openai_job").order_by("-pk").first()
    assert job.status == "completed" and job.attempts == 1 and job.task_id == f"gateway:{job.job_id}"
    assert [(e.from_status, e.to_status) for e in job.events.order_by("pk")] == [
        ("", "pending"),
        ("pending", "running"),
        ("running", "completed"),
    ]
    assert (job.usage.input_tokens, job.usage.output_tokens) == (100, 20) and job.usage.total_cost > 0
    assert (job.openai_job.prompt_tokens, job.openai_job.completion_tokens) == (100, 20)
    assert job.openai_job.openai_id.startswith("chatcmpl-")


def test_a_call_under_a_quota_reserves_and_settles(personas, llm_env, memos_on):
    key = api_key_create(name="sdk", brand=personas.brand_a, user=personas.adam, monthly_cost_limit=Decimal("5"))[1]
    for statements in calls(key, 2):
        assert len(statements) == STATEMENTS_WITH_QUOTA[connection.vendor], "\n".join(s[:120] for s in statements)
    job = AIJob.objects.select_related("usage").order_by("-pk").first()
    assert job.status == "completed" and job.usage.total_cost > 0
    assert [r.state for r in QuotaReservation.objects.filter(job=job)] == ["settled"]
    assert [(e.from_status, e.to_status) for e in job.events.order_by("pk")][:2] == [
        ("", "pending"),
        ("pending", "running"),
    ]


def test_a_call_whose_process_died_is_requeued_by_the_reaper_and_run_by_a_worker(personas, llm_env):
    from datetime import timedelta

    from django.utils import timezone

    from ai_core.engine.runner import execute, run_from_message
    from ai_core.engine.upkeep import reap
    from business.models import ApiKey
    from gateway.calls import CHAT_JOB_TYPE, call_open

    api_key_create(name="sdk", brand=personas.brand_a, user=personas.adam)
    opened = call_open(
        key=ApiKey.objects.select_related("brand", "created_by").get(),
        job_type=CHAT_JOB_TYPE,
        input_data={"model": "gpt-4o-mini", "messages": BODY["messages"]},
        idempotency_key=None,
        description="gateway: died",
    )
    assert opened.attempt == 1 and AIJob.objects.get(pk=opened.job.pk).status == "running"
    # The process dies before its attempt ends: no heartbeat any more.
    AIJob.objects.filter(pk=opened.job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert reap()["requeued"] == 1
    assert AIJob.objects.get(pk=opened.job.pk).status == "pending"
    assert run_from_message(opened.job.pk) == "completed"  # a worker's attempt 2
    # The dead process's attempt, should it wake up, is fenced off: its writes are discarded.
    assert execute(opened.job.pk, opened.attempt) is None
    job = AIJob.objects.select_related("usage").get(pk=opened.job.pk)
    assert (job.status, job.attempts) == ("completed", 2) and job.usage.total_cost > 0
    assert [e.to_status for e in job.events.order_by("pk")] == ["pending", "running", "pending", "running", "completed"]
