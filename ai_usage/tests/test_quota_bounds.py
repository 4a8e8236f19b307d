"""No request shape or update can overspend a quota: what is reserved is exactly what the provider is held to.

Jobs run through the engine in this process, over real HTTP to the fake OpenAI server, which answers by
echoing the prompt cut to the output bound it received (like a real model held to max_tokens).
"""

import uuid
from decimal import Decimal

import pytest

from ai_core.engine.runner import run_from_message
from ai_core.models import AIJob
from ai_usage.models import AIJobUsage, Quota, QuotaPeriod, QuotaReservation
from ai_usage.services import month_start
from conftest import make_client

pytestmark = pytest.mark.django_db(transaction=True)

BOUNDS = ("max_tokens", "max_completion_tokens")


def run_all() -> None:
    while run_from_message(0) is not None:
        pass


def sent_to_provider(fake_llm, marker: str) -> dict:
    """The body of the one request the fake server received for the job whose prompt holds `marker`."""
    bodies = [r["body"] for r in fake_llm.requests if marker in str(r["body"].get("messages"))]
    assert len(bodies) == 1, f"{len(bodies)} requests carried {marker}"
    return bodies[0]


def counters(quota: Quota) -> QuotaPeriod:
    return QuotaPeriod.objects.get(quota=quota, month=month_start())


def reservation_of(job: AIJob) -> QuotaReservation:
    return QuotaReservation.objects.get(job_id=job.pk)


def chat_job(client, text: str, **input_data):
    return client.post(
        "/ai/jobs/",
        {"job_type": "chat_completion", "input_data": {"messages": [{"role": "user", "content": text}], **input_data}},
        format="json",
    )


def prompt_of(marker: str) -> str:
    return (marker + " ") * (100_000 // 33)  # 100 KB


@pytest.mark.parametrize("model", ["gpt-4o", "o3-mini"])
@pytest.mark.parametrize("small,large", [BOUNDS[::-1], BOUNDS])
def test_the_provider_is_held_to_the_one_output_bound_that_was_reserved(personas, llm_env, model, small, large):
    """The issue's case: max_completion_tokens 1 with max_tokens 25 000 on a 100 KB prompt the fake echoes back
    reserved $0.25006 and was charged $0.3125 against a $0.2501 limit."""
    quotas = [
        Quota.objects.create(company=brand.company, brand=brand, monthly_cost_limit=Decimal("0.2501"))
        for brand in (personas.brand_a, personas.brand_b)
    ]
    marker, other = uuid.uuid4().hex, uuid.uuid4().hex
    both = chat_job(
        make_client(personas.alice, personas.brand_a), prompt_of(marker), model=model, **{small: 1, large: 25_000}
    )
    assert both.status_code == 201, both.content
    only_one = chat_job(make_client(personas.bob, personas.brand_b), prompt_of(other), model=model, **{small: 1})
    assert only_one.status_code == 201, only_one.content
    both_job, one_job = (AIJob.objects.get(job_id=r.json()["job_id"]) for r in (both, only_one))
    # the larger bound changes nothing: the same reservation, the same request
    assert (reservation_of(both_job).tokens, reservation_of(both_job).cost_micros) == (
        reservation_of(one_job).tokens,
        reservation_of(one_job).cost_micros,
    )
    run_all()

    body = sent_to_provider(llm_env, marker)
    family_bound = "max_completion_tokens" if model.startswith("o") else "max_tokens"
    assert [key for key in BOUNDS if key in body] == [family_bound] and body[family_bound] == 1
    for job in (both_job, one_job):
        job.refresh_from_db()
        assert job.status == "completed", job.error_message
        usage = AIJobUsage.objects.get(job=job)
        assert usage.output_tokens <= 1
        reservation = reservation_of(job)
        assert reservation.settled_cost_micros <= reservation.cost_micros
        assert reservation.settled_tokens <= reservation.tokens
    for quota in quotas:
        period = counters(quota)
        assert period.reserved_cost_micros == 0
        assert Decimal(period.used_cost_micros) / 1_000_000 <= quota.monthly_cost_limit


@pytest.mark.parametrize(
    "job_type,input_data",
    [
        ("content_analysis", {"content": "x"}),
        ("chat_completion", {"messages": [{"role": "user", "name": "n" * 64, "content": "x"}] * 3}),
    ],
)
def test_the_prompt_reserved_covers_every_byte_the_provider_receives(personas, llm_env, job_type, input_data):
    """No tokenizer packs less than a byte into a token: the prompt reserved must count every byte of what the
    job actually sends (the content-analysis instructions the handler adds, each message's role and name)."""
    Quota.objects.create(company=personas.brand_a.company, brand=personas.brand_a, monthly_token_limit=10**9)
    marker = uuid.uuid4().hex
    data = {"model": "gpt-4o-mini", **input_data}
    if job_type == "content_analysis":
        data["content"] += marker
    else:
        data["messages"] = [{**m, "content": m["content"] + marker} for m in data["messages"]]
    created = make_client(personas.alice, personas.brand_a).post(
        "/ai/jobs/", {"job_type": job_type, "input_data": data}, format="json"
    )
    assert created.status_code == 201, created.content
    job = AIJob.objects.get(job_id=created.json()["job_id"])
    reserved = reservation_of(job).tokens
    run_all()

    body = sent_to_provider(llm_env, marker)
    sent_bytes = sum(
        len(str(m.get(field) or "").encode()) for m in body["messages"] for field in ("role", "name", "content")
    )
    assert reserved >= body["max_tokens"] + sent_bytes


def test_an_update_of_input_data_reserves_again_and_checks_the_provider_again(personas, llm_env, settings):
    """The issue's case: echo-1 patched to gpt-4o with a large max_tokens was charged $1.000025 against $0.01."""
    quota = Quota.objects.create(
        company=personas.brand_a.company, brand=personas.brand_a, monthly_cost_limit=Decimal("0.01")
    )
    alice = make_client(personas.alice, personas.brand_a)
    created = chat_job(alice, "cheap", model="echo-1")
    assert created.status_code == 201, created.content
    job_id = created.json()["job_id"]
    before = counters(quota)
    held = (before.reserved_tokens, before.reserved_cost_micros)
    marker = uuid.uuid4().hex

    def patch(model, text=marker, **bounds):
        data = {"messages": [{"role": "user", "content": text}], "model": model, **bounds}
        return alice.patch(f"/ai/jobs/{job_id}/", {"input_data": data}, format="json")

    refused = patch("gpt-4o", text=marker * 1000, max_tokens=100_000)
    assert refused.status_code == 429 and refused.json()["error_code"] == "QUOTA_EXCEEDED", refused.content
    settings.ANTHROPIC_API_KEY = ""
    unconfigured = patch("claude-haiku-4-5")
    assert unconfigured.status_code == 400 and unconfigured.json()["error_code"] == "PROVIDER_NOT_CONFIGURED"
    unknown = patch("no-such-model")
    assert unknown.status_code == 400 and unknown.json()["error_code"] == "MODEL_NOT_SUPPORTED"
    # every refusal left the job and its reservation as they were
    assert alice.get(f"/ai/jobs/{job_id}/").json()["input_data"]["model"] == "echo-1"
    after = counters(quota)
    assert (after.reserved_tokens, after.reserved_cost_micros) == held

    accepted = patch("gpt-4o-mini", max_tokens=50)
    assert accepted.status_code == 200, accepted.content
    job = AIJob.objects.get(job_id=job_id)
    reservation = reservation_of(job)
    assert reservation.cost_micros > 0 and counters(quota).reserved_cost_micros == reservation.cost_micros
    assert QuotaReservation.objects.filter(job=job).count() == 1
    run_all()

    body = sent_to_provider(llm_env, marker)
    assert body["model"] == "gpt-4o-mini" and body["max_tokens"] == 50
    job.refresh_from_db()
    assert job.status == "completed" and job.openai_job.model == "gpt-4o-mini"
    period = counters(quota)
    assert period.reserved_cost_micros == 0 and 0 < period.used_cost_micros <= reservation.cost_micros


def test_a_price_rise_already_scheduled_is_reserved_for(personas, llm_env):
    """A job is charged at the price of its start: a pending job may start after a scheduled rise took effect."""
    from datetime import timedelta

    from django.utils import timezone

    from ai_providers.models import ModelPrice, ProviderModel
    from ai_providers.services import price_set

    quota = Quota.objects.create(company=personas.brand_a.company, brand=personas.brand_a, monthly_cost_limit=10)
    rise = price_set(
        model=ProviderModel.objects.get(name="gpt-4o-mini"),
        input_per_million=Decimal("1.50"),
        output_per_million=Decimal("6.00"),
        effective_from=timezone.now() + timedelta(days=1),
    )
    marker = uuid.uuid4().hex
    created = chat_job(make_client(personas.alice, personas.brand_a), marker * 100, model="gpt-4o-mini", max_tokens=5)
    assert created.status_code == 201, created.content
    job = AIJob.objects.get(job_id=created.json()["job_id"])
    ModelPrice.objects.filter(pk=rise.pk).update(effective_from=timezone.now() - timedelta(seconds=1))  # the day came
    run_all()

    job.refresh_from_db()
    usage = AIJobUsage.objects.get(job=job)
    assert job.status == "completed" and usage.input_cost == Decimal(usage.input_tokens) * Decimal("1.5") / 10**6
    reservation = reservation_of(job)
    assert 0 < reservation.settled_cost_micros <= reservation.cost_micros
    assert counters(quota).reserved_cost_micros == 0


@pytest.mark.parametrize("bound", ["max_tokens", "max_completion_tokens"])
@pytest.mark.parametrize("value", [0, -5, True, "12", 10**30, 1.5])
def test_an_output_bound_that_is_not_a_whole_number_from_1_to_200_000_is_a_400(personas, llm_env, bound, value):
    """Found by the property test: max_completion_tokens -5 on an OpenAI model was a 500 (its OpenAIJob row)."""
    alice = make_client(personas.alice, personas.brand_a)
    response = chat_job(alice, "x", model="gpt-4o-mini", **{bound: value})
    assert response.status_code == 400 and response.json()["error_code"] == "VALIDATION_ERROR", response.content
    assert not AIJob.objects.exists()
    pending = chat_job(alice, "x", model="echo-1")
    patched = alice.patch(
        f"/ai/jobs/{pending.json()['job_id']}/",
        {"input_data": {"messages": [{"role": "user", "content": "x"}], "model": "gpt-4o-mini", bound: value}},
        format="json",
    )
    assert patched.status_code == 400 and patched.json()["error_code"] == "VALIDATION_ERROR", patched.content


def test_updates_moving_a_job_off_and_back_onto_a_provider_quota_give_back_and_take_again(personas, llm_env):
    from ai_providers.models import Provider

    openai_quota = Quota.objects.create(
        company=personas.brand_a.company, provider=Provider.objects.get(name="openai"), monthly_cost_limit=1
    )
    alice = make_client(personas.alice, personas.brand_a)
    job_id = chat_job(alice, "hello", model="echo-1").json()["job_id"]
    assert not QuotaPeriod.objects.filter(quota=openai_quota).exists()  # echo jobs do not touch it

    def move_to(model):
        data = {"messages": [{"role": "user", "content": "hello"}], "model": model, "max_tokens": 10}
        response = alice.patch(f"/ai/jobs/{job_id}/", {"input_data": data}, format="json")
        assert response.status_code == 200, response.content
        return counters(openai_quota).reserved_cost_micros

    held = move_to("gpt-4o-mini")
    assert held > 0
    assert move_to("echo-1") == 0
    assert QuotaReservation.objects.get(job__job_id=job_id).state == "released"
    assert move_to("gpt-4o") > held  # the same row, taken again at gpt-4o's price
    assert QuotaReservation.objects.get(job__job_id=job_id).state == "reserved"
    run_all()
    period = counters(openai_quota)
    assert period.reserved_cost_micros == 0 and period.used_cost_micros > 0
