"""The catalogue picks a job's provider; cost is tokens × the price in effect when the job ran, to 6 places."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from ai_core import services as jobs
from ai_core.models import JobDailyStat
from ai_providers.models import ModelPrice, ProviderModel
from ai_providers.selectors import Price, catalogue_memo, cost_of, model_resolve, price_at
from ai_providers.services import client_for_model, price_set
from ai_usage.models import AIJobUsage
from business.errors import ApplicationError


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=UTC)


@pytest.mark.django_db
def test_a_model_picks_its_provider_through_the_catalogue():
    assert model_resolve("gpt-4o-mini").provider.name == "openai"
    assert model_resolve("claude-sonnet-4-5").provider.name == "anthropic"
    assert model_resolve("o3-mini").is_reasoning
    assert model_resolve("echo-anything").provider.name == "echo"  # by prefix
    assert model_resolve("gpt-5-preview").provider.name == "openai"
    with pytest.raises(ApplicationError) as raised:
        model_resolve("llama-3-70b")
    assert raised.value.error_code == "MODEL_NOT_SUPPORTED"


@pytest.mark.django_db
def test_a_model_without_a_key_anywhere_is_not_configured(settings):
    settings.OPENAI_API_KEY = ""
    with pytest.raises(ApplicationError) as raised:
        client_for_model(model="gpt-4o-mini", company_id=None)
    assert raised.value.error_code == "PROVIDER_NOT_CONFIGURED"
    client, choice = client_for_model(model="echo-1", company_id=None)
    assert client.name == "echo" and choice.provider.name == "echo"


def test_cost_arithmetic_to_six_decimals_by_hand():
    # gpt-4o-mini list price: $0.15 in / $0.60 out per million tokens.
    price = Price(Decimal("0.15"), Decimal("0.60"))
    cost = cost_of(input_tokens=1234, output_tokens=567, price=price)
    # 1234 × 0.15 / 1e6 = 0.0001851 → 0.000185 ; 567 × 0.60 / 1e6 = 0.0003402 → 0.000340
    assert (cost.input_cost, cost.output_cost, cost.total_cost) == (
        Decimal("0.000185"),
        Decimal("0.000340"),
        Decimal("0.000525"),
    )
    # half-up at the sixth place: 5 × 0.15 / 1e6 = 0.00000075 → 0.000001
    assert cost_of(input_tokens=5, output_tokens=0, price=price).input_cost == Decimal("0.000001")
    big = cost_of(input_tokens=1_000_000, output_tokens=500_000, price=Price(Decimal("2.50"), Decimal("10.00")))
    assert big.total_cost == Decimal("7.500000")


@pytest.mark.django_db
def test_a_price_change_applies_from_its_date():
    model = ProviderModel.objects.get(name="gpt-4o-mini")
    price_set(
        model=model,
        input_per_million=Decimal("0.30"),
        output_per_million=Decimal("1.20"),
        effective_from=at(15, 0),
    )
    assert price_at("gpt-4o-mini", at(14, 23)).input_per_million == Decimal("0.15")
    assert price_at("gpt-4o-mini", at(15, 0)).input_per_million == Decimal("0.30")
    assert price_at("echo-1").input_per_million == 0


@pytest.mark.django_db
def test_the_catalogue_memo_saves_queries_and_a_local_save_clears_it(settings, django_assert_num_queries):
    settings.AICORE_CATALOGUE_CACHE_SECONDS = 60
    catalogue_memo.clear()
    try:
        model_resolve("gpt-4o-mini"), price_at("gpt-4o-mini")
        with django_assert_num_queries(0):  # memoised: a job's start and end read no catalogue row
            assert model_resolve("gpt-4o-mini").provider.name == "openai"
            assert price_at("gpt-4o-mini").input_per_million == Decimal("0.15")
        model = ProviderModel.objects.get(name="gpt-4o-mini")
        price_set(
            model=model,
            input_per_million=Decimal("0.30"),
            output_per_million=Decimal("1.20"),
            effective_from=timezone.now() - timedelta(seconds=1),
        )
        assert price_at("gpt-4o-mini").input_per_million == Decimal("0.30")  # the save cleared the memo
        assert model_resolve("gpt-4o-mini").model_id == model.pk
        ProviderModel.objects.filter(pk=model.pk).update(is_active=False)  # no signal: seen after the TTL only
        assert model_resolve("gpt-4o-mini").model_id == model.pk
        model.refresh_from_db()
        model.save()
        assert model_resolve("gpt-4o-mini").model_id is None  # inactive row: matched by prefix only
    finally:
        catalogue_memo.clear()


def _completed_job(personas, *, started: datetime, input_tokens: int, output_tokens: int):
    job, _ = jobs.job_create(
        brand=personas.brand_a,
        user=personas.alice,
        job_type="chat_completion",
        input_data={"messages": [{"role": "user", "content": "hi"}], "model": "gpt-4o-mini"},
    )
    done = jobs.job_start(job_pk=job.pk)
    type(job).objects.filter(pk=job.pk).update(started_at=started)  # as if it had run that day
    jobs.job_complete(
        job_pk=job.pk,
        attempt=done.attempt,
        result_data={"completion": "ok"},
        input_tokens=input_tokens,
        output_tokens=output_tokens,
    )
    return AIJobUsage.objects.get(job=job)


@pytest.mark.django_db
def test_jobs_before_and_after_a_mid_month_price_change_each_pay_their_price(personas, llm_env):
    model = ProviderModel.objects.get(name="gpt-4o-mini")
    price_set(
        model=model,
        input_per_million=Decimal("0.30"),
        output_per_million=Decimal("1.20"),
        effective_from=at(15, 0),
    )
    before = _completed_job(personas, started=at(10), input_tokens=10_000, output_tokens=2_000)
    after = _completed_job(personas, started=at(20), input_tokens=10_000, output_tokens=2_000)
    # before: 10000 × 0.15 / 1e6 = 0.0015, 2000 × 0.60 / 1e6 = 0.0012 → 0.0027
    assert (before.input_cost, before.output_cost, before.total_cost) == (
        Decimal("0.001500"),
        Decimal("0.001200"),
        Decimal("0.002700"),
    )
    # after: 10000 × 0.30 / 1e6 = 0.003, 2000 × 1.20 / 1e6 = 0.0024 → 0.0054
    assert after.total_cost == Decimal("0.005400")
    # the roll-up the jobs dashboard reads holds the same money, in micro-dollars
    assert sum(JobDailyStat.objects.filter(status="completed").values_list("cost_micros", flat=True)) == 8100


@pytest.mark.django_db
def test_reprice_recomputes_a_period_and_moves_the_roll_up(personas, llm_env):
    usage = _completed_job(personas, started=at(10), input_tokens=10_000, output_tokens=2_000)
    assert usage.total_cost == Decimal("0.002700")
    # the operator corrects the price from the 1st of the month, then reprices the month
    ModelPrice.objects.create(
        model=ProviderModel.objects.get(name="gpt-4o-mini"),
        effective_from=at(1, 0),
        input_per_million=Decimal("1.00"),
        output_per_million=Decimal("2.00"),
    )
    usage.refresh_from_db()
    assert usage.total_cost == Decimal("0.002700")  # past usage keeps its price until repriced
    out = StringIO()
    call_command("reprice", "--since", "2026-03-01", "--until", "2026-04-01", "--by", "priced_at", stdout=out)
    usage.refresh_from_db()
    # 10000 × 1.00 / 1e6 = 0.01, 2000 × 2.00 / 1e6 = 0.004
    assert usage.total_cost == Decimal("0.014000")
    assert sum(JobDailyStat.objects.filter(status="completed").values_list("cost_micros", flat=True)) == 14000
    assert "1 usage row" in out.getvalue()
