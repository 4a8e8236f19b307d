"""The whole path with a real worker process against the fake OpenAI/Anthropic server (real SDKs, real HTTP):
API → broker → worker → catalogue → client → fake server → final state, usage, quota and roll-up.
"""

from decimal import Decimal

import pytest

from ai_core.models import AIJob, AIJobType
from ai_usage.models import AIJobUsage, QuotaPeriod
from ai_usage.services import month_start
from ai_usage.tests.factories import QuotaFactory
from conftest import make_client
from testing.jobs import all_final, wait_for
from testing.workers import purge_broker

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
    quota = QuotaFactory(brand=personas.brand_a, monthly_token_limit=10_000_000)
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
    # A 429 is a wait for capacity, not a failure: it spends no attempt (issue 12).
    assert (final["flaky"].status, final["flaky"].attempts) == ("completed", 1), ready.logs()
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


def test_cached_cache_write_and_reasoning_tokens_are_recorded_and_charged_as_by_hand(ready, personas):
    """The issue's example through the engine: gpt-4o, 2 010 prompt tokens of which 2 000 served from OpenAI's
    prompt cache, 3 output tokens; and an Anthropic answer with cache reads and both kinds of cache writes."""
    quota = QuotaFactory(brand=personas.brand_a, monthly_cost_limit=Decimal("100"))
    alice = make_client(personas.alice, personas.brand_a)

    def submit(data):
        response = alice.post("/ai/jobs/", {"job_type": "chat_completion", "input_data": data}, format="json")
        assert response.status_code == 201, response.content
        return response.json()["job_id"]

    openai_job = submit(chat("cached [fake usage=2010,3 cached=2000 reasoning=2]", model="gpt-4o"))
    claude_job = submit(
        chat("cached [fake usage=100,50 cached=1000 cache_write=200 cache_write_1h=300]", model="claude-sonnet-4-5")
    )
    wait_for(
        lambda: all_final(AIJob.objects.filter(job_id__in=[openai_job, claude_job]).values_list("pk", flat=True)),
        timeout=60,
        what="the jobs to finish",
    )
    gpt = AIJobUsage.objects.get(job__job_id=openai_job)
    assert gpt.final_status == "completed", ready.logs()
    # OpenAI's prompt_tokens include the cached ones: 10 uncached × $2.50/1M + 2 000 cached × $1.25/1M
    # = 0.000025 + 0.0025; 3 output × $10/1M = 0.00003. At the full input price it was 0.005055.
    assert (gpt.input_tokens, gpt.cached_input_tokens, gpt.output_tokens, gpt.reasoning_tokens) == (2010, 2000, 3, 2)
    assert (gpt.input_cost, gpt.output_cost, gpt.total_cost) == (
        Decimal("0.002525"),
        Decimal("0.000030"),
        Decimal("0.002555"),
    )
    claude = AIJobUsage.objects.get(job__job_id=claude_job)
    # Anthropic's input_tokens exclude cache reads and writes: 100 + 1 000 + 200 + 300 = 1 600 prompt tokens.
    # 100 × $3 + 1 000 × $0.30 (read, 10 %) + 200 × $3.75 (5 min, 125 %) + 300 × $6 (1 h, 200 %) per 1M
    # = 0.0003 + 0.0003 + 0.00075 + 0.0018 = 0.00315; 50 × $15/1M = 0.00075.
    assert (claude.input_tokens, claude.cached_input_tokens, claude.cache_write_5m_tokens) == (1600, 1000, 200)
    assert (claude.cache_write_1h_tokens, claude.output_tokens) == (300, 50)
    assert (claude.input_cost, claude.output_cost, claude.total_cost) == (
        Decimal("0.003150"),
        Decimal("0.000750"),
        Decimal("0.003900"),
    )
    detail = alice.get(f"/ai/jobs/{openai_job}/").json()["usage"]
    assert (detail["cached_input_tokens"], detail["reasoning_tokens"], detail["total_cost"]) == (2000, 2, "0.002555")
    # The quota is settled with the same arithmetic.
    counters = QuotaPeriod.objects.get(quota=quota, month=month_start())
    assert (counters.used_cost_micros, counters.reserved_cost_micros) == (2555 + 3900, 0)
    breakdown = alice.get("/ai/usage/cost_breakdown/").json()
    assert breakdown["totals"]["total_cost"] == "0.006455"
    assert (breakdown["totals"]["cached_input_tokens"], breakdown["totals"]["cache_write_1h_tokens"]) == (3000, 300)
    listed = alice.get("/ai/usage/", {"model": "gpt-4o"}).json()["results"][0]
    assert (listed["cached_input_tokens"], listed["reasoning_tokens"]) == (2000, 2)
