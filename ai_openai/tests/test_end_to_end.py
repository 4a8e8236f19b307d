"""The whole path with a real worker process against the fake OpenAI/Anthropic server (real SDKs, real HTTP):
API → broker → worker → catalogue → client → fake server → final state, usage, quota and roll-up.
"""

from decimal import Decimal

import pytest

from ai_core.models import AIJob, AIJobType
from ai_core.tests.helpers import all_final, wait_for
from ai_core.tests.workers import purge_broker
from ai_usage.models import AIJobUsage, Quota, QuotaPeriod
from ai_usage.services import month_start
from conftest import make_client

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def llm_worker(workers, fake_llm):
    purge_broker()
    workers.start(
        concurrency=8,
        OPENAI_API_KEY="sk-worker",
        OPENAI_BASE_URL=fake_llm.openai_base_url,
        ANTHROPIC_API_KEY="sk-ant-worker",
        ANTHROPIC_BASE_URL=fake_llm.base_url,
    )
    return workers


@pytest.fixture
def ready(llm_worker, personas, llm_env):
    """A first echo job run to its end: the worker process is up (a loaded machine may take a while to boot it)."""
    from ai_core.services import job_create

    probe, _ = job_create(
        brand=personas.brand_b,
        user=None,
        job_type="chat_completion",
        input_data={"model": "echo-1", "messages": [{"role": "user", "content": "ready?"}]},
    )
    wait_for(
        lambda: AIJob.objects.filter(pk=probe.pk, status="completed").exists(),
        timeout=120,
        what="the worker to come up",
    )
    return llm_worker


def chat(text, model="gpt-4o-mini", **extra):
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def test_a_sync_chat_answers_201_with_tokens_and_cost_and_the_job_carries_its_extensions(ready, personas):
    alice = make_client(personas.alice, personas.brand_a)
    response = alice.post(
        "/ai/openai/chat/",
        {**chat("hello [fake usage=1000,500 chunks=3]"), "response_format": {"type": "json_object"}},
        format="json",
    )
    assert response.status_code == 201, (response.content, ready.logs())
    body = response.json()
    # 1000 × $0.15/1M + 500 × $0.60/1M = 0.00015 + 0.0003
    assert body["usage"] == {
        "prompt_tokens": 1000,
        "completion_tokens": 500,
        "total_tokens": 1500,
        "cost_usd": "0.000450",
    }
    assert body["status"] == "completed" and body["model"] == "gpt-4o-mini"
    assert body["result"]["json"] == {"answer": "hello [fake usage=1000,500 chunks=3]"}
    assert body["result"]["request_id"].startswith("req_fake") and body["execution_time_ms"] >= 0
    detail = alice.get(f"/ai/jobs/{body['job_id']}/").json()
    assert detail["openai_job"]["openai_id"].startswith("chatcmpl-fake")
    assert detail["openai_job"]["prompt_tokens"] == 1000 and detail["openai_job"]["response_format"]
    assert detail["usage"]["total_cost"] == "0.000450" and detail["usage"]["provider_name"] == "openai"
    today = alice.get("/ai/jobs/dashboard/").json()["daily_activity"][0]
    assert today["total_cost"] == "0.00045"
    usage = alice.get("/ai/usage/", {"model": "gpt-4o-mini"}).json()
    assert usage["count"] == 1 and usage["results"][0]["total_cost"] == "0.000450"


def test_transient_errors_retry_permanent_ones_fail_at_once_and_a_hung_server_times_out(ready, personas):
    AIJobType.objects.filter(name="text_generation").update(timeout_seconds=2, max_attempts=3)
    quota = Quota.objects.create(
        company=personas.brand_a.company, brand=personas.brand_a, monthly_token_limit=10_000_000
    )
    alice = make_client(personas.alice, personas.brand_a)

    def submit(job_type, data):
        response = alice.post("/ai/jobs/", {"job_type": job_type, "input_data": data}, format="json")
        assert response.status_code == 201, response.content
        return response.json()["job_id"]

    jobs = {
        "flaky": submit("chat_completion", chat("[fake status=429 times=1 key=e2e-flaky]")),
        "down": submit("chat_completion", chat("[fake status=500]")),
        "bad": submit("chat_completion", chat("[fake status=400]")),
        "hung": submit("text_generation", {"prompt": "[fake hang]", "model": "gpt-4o-mini"}),
        "trickle": submit("text_generation", {"prompt": "[fake trickle=0.2]", "model": "gpt-4o-mini"}),
        "claude": submit("chat_completion", chat("bonjour [fake usage=2000,100]", model="claude-haiku-4-5")),
    }
    wait_for(
        lambda: all_final(AIJob.objects.filter(job_id__in=jobs.values()).values_list("pk", flat=True)),
        timeout=60,
        what="the jobs to finish",
    )
    final = {name: AIJob.objects.get(job_id=job_id) for name, job_id in jobs.items()}
    assert (final["flaky"].status, final["flaky"].attempts) == ("completed", 2), ready.logs()
    assert (final["down"].status, final["down"].attempts) == ("failed", 3)
    assert (final["bad"].status, final["bad"].attempts) == ("failed", 1)
    assert "fake failure 400" in final["bad"].error_message and final["bad"].error_code == "PROVIDER_REJECTED"
    assert final["hung"].status == "timeout" and final["trickle"].status == "timeout"
    assert final["claude"].status == "completed"
    # 2000 × $1/1M + 100 × $5/1M = 0.002 + 0.0005
    assert AIJobUsage.objects.get(job=final["claude"]).total_cost == Decimal("0.002500")
    assert AIJobUsage.objects.get(job=final["down"]).success_rate == 0
    # failures released their reservations; only the two completed jobs count
    counters = QuotaPeriod.objects.get(quota=quota, month=month_start())
    assert counters.reserved_tokens == 0 and counters.reserved_cost_micros == 0
    assert counters.used_cost_micros == 2500 + AIJobUsage.objects.get(job=final["flaky"]).total_cost * 1_000_000


def test_an_async_chat_answers_202_with_where_to_follow_it(ready, personas):
    alice = make_client(personas.alice, personas.brand_a)
    response = alice.post("/ai/openai/chat/", {**chat("later"), "run_async": True}, format="json")
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "async" and body["task_id"] == body["job_id"] and body["estimated_completion"]
    wait_for(
        lambda: AIJob.objects.filter(job_id=body["job_id"], status="completed").exists(),
        timeout=30,
        what="the async job to complete",
    )
