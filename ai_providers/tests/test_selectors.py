"""The catalogue picks a job's provider; cost is tokens × the price in effect when the job ran, to 6 places."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from ai_core import services as jobs
from ai_core.models import JobDailyStat
from ai_providers.clients.base import PermanentProviderError
from ai_providers.models import ModelPrice, ProviderModel
from ai_providers.money import Price, TokenUsage, cost_of
from ai_providers.selectors import catalogue_memo, model_resolve, price_at
from ai_providers.services import client_for_model, price_set
from ai_providers.tests.factories import ModelPriceFactory
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
    with pytest.raises(PermanentProviderError) as raised:
        client_for_model(model="gpt-4o-mini", company_id=None)
    assert raised.value.error_code == "PROVIDER_NOT_CONFIGURED"
    bound = client_for_model(model="echo-1", company_id=None)
    assert bound.client.name == "echo" and bound.choice.provider.name == "echo"


def test_cost_arithmetic_to_six_decimals_by_hand():
    # gpt-4o-mini list price: $0.15 in / $0.60 out per million tokens.
    price = Price(Decimal("0.15"), Decimal("0.60"))
    cost = cost_of(TokenUsage(input_tokens=1234, output_tokens=567), price)
    # 1234 × 0.15 / 1e6 = 0.0001851 → 0.000185 ; 567 × 0.60 / 1e6 = 0.0003402 → 0.000340
    assert (cost.input_cost, cost.output_cost, cost.total_cost) == (
        Decimal("0.000185"),
        Decimal("0.000340"),
        Decimal("0.000525"),
    )
    # half-up at the sixth place: 5 × 0.15 / 1e6 = 0.00000075 → 0.000001
    assert cost_of(TokenUsage(input_tokens=5), price).input_cost == Decimal("0.000001")
    big = cost_of(TokenUsage(input_tokens=1_000_000, output_tokens=500_000), Price(Decimal("2.50"), Decimal("10.00")))
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


@pytest.mark.django_db
def test_a_company_credential_is_memoised_and_a_local_change_applies_at_once(
    settings, personas, django_assert_num_queries
):
    from ai_providers.models import Provider
    from ai_providers.selectors import key_source
    from ai_providers.services import credential_create, credential_update, provider_endpoint

    settings.AICORE_CATALOGUE_CACHE_SECONDS = 60
    settings.OPENAI_API_KEY = ""
    catalogue_memo.clear()
    openai = Provider.objects.get(name="openai")
    company = personas.brand_a.company_id
    try:
        assert key_source(company_id=company, provider=openai) is None
        credential = credential_create(company=personas.brand_a.company, provider=openai, api_key="sk-company")
        assert key_source(company_id=company, provider=openai) == "company"  # the creation cleared the memo
        with django_assert_num_queries(0):  # a job's creation and its attempt read no credential row
            assert key_source(company_id=company, provider=openai) == "company"
            assert provider_endpoint(company_id=company, provider=openai).api_key == "sk-company"
        credential_update(credential=credential, data={"is_active": False})
        assert provider_endpoint(company_id=company, provider=openai) is None
    finally:
        catalogue_memo.clear()


def _completed_job(
    personas, *, started: datetime, input_tokens: int = 0, output_tokens: int = 0, tokens=None, model="gpt-4o-mini"
):
    job, _ = jobs.job_create(
        brand=personas.brand_a,
        user=personas.alice,
        job_type="chat_completion",
        input_data={"messages": [{"role": "user", "content": "hi"}], "model": model},
    )
    done = jobs.job_start(job_pk=job.pk)
    type(job).objects.filter(pk=job.pk).update(started_at=started)  # as if it had run that day
    jobs.job_complete(
        job_pk=job.pk,
        attempt=done.attempt,
        result_data={"completion": "ok"},
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        tokens=tokens,
    )
    return AIJobUsage.objects.get(job=job)


@pytest.mark.django_db
def test_the_catalogue_carries_todays_rates_for_every_kind_of_token(catalogue):
    def rates(name):
        return price_at(name, at(10))

    gpt = rates("gpt-4o")
    assert (gpt.cached_input_per_million, gpt.cache_write_5m_per_million) == (Decimal("1.25"), None)
    assert gpt.batch_ratio == Decimal("0.5") and gpt.long_context_threshold_tokens is None
    sonnet = rates("claude-sonnet-4-5")
    assert (sonnet.input_per_million, sonnet.cached_input_per_million) == (Decimal("3"), Decimal("0.3"))
    assert (sonnet.cache_write_5m_per_million, sonnet.cache_write_1h_per_million) == (Decimal("3.75"), Decimal("6"))
    assert (sonnet.long_context_threshold_tokens, sonnet.long_context_input_per_million) == (200_000, Decimal("6"))
    assert rates("claude-haiku-4-5").cache_write_1h_per_million == Decimal("2")
    assert rates("gpt-3.5-turbo").cached_input_per_million is None  # no prompt caching there
    assert rates("echo-1").batch_ratio is None


@pytest.mark.django_db
def test_loading_the_catalogue_rates_again_keeps_an_operators_edited_price(catalogue):
    from ai_providers.catalogue_defaults import load_token_rates

    row = ModelPrice.objects.get(model__name="gpt-4o")
    # As before the migration that added the rates, on a row whose input rate an operator had changed.
    ModelPrice.objects.filter(pk=row.pk).update(
        cached_input_per_million=None, batch_ratio=None, input_per_million=Decimal("2.00")
    )
    load_token_rates(ModelPrice)
    row.refresh_from_db()
    assert row.cached_input_per_million is None  # its input rate is no longer the list price: left alone
    ModelPrice.objects.filter(pk=row.pk).update(input_per_million=Decimal("2.50"))
    load_token_rates(ModelPrice)
    row.refresh_from_db()
    assert row.cached_input_per_million == Decimal("1.25")


@pytest.mark.django_db
def test_a_job_is_charged_for_cached_and_cache_write_tokens_and_reprice_keeps_them(personas, llm_env):
    tokens = TokenUsage.from_anthropic(
        input_tokens=100,
        output_tokens=50,
        cache_read_input_tokens=1000,
        cache_creation_input_tokens=500,
        ephemeral_5m_input_tokens=200,
        ephemeral_1h_input_tokens=300,
    )
    usage = _completed_job(personas, started=at(10), tokens=tokens, model="claude-sonnet-4-5")
    assert (usage.input_tokens, usage.cached_input_tokens, usage.total_tokens) == (1600, 1000, 1650)
    # 100 × 3 + 1 000 × 0.30 + 200 × 3.75 + 300 × 6 = 3 150 µ$ ; 50 × 15 = 750 µ$
    assert (usage.input_cost, usage.output_cost) == (Decimal("0.003150"), Decimal("0.000750"))
    # Anthropic halves its cache-read rate from the 1st: reprice moves only that part.
    price_set(
        model=ProviderModel.objects.get(name="claude-sonnet-4-5"),
        input_per_million=Decimal("3.00"),
        output_per_million=Decimal("15.00"),
        effective_from=at(1, 0),
        cached_input_per_million=Decimal("0.15"),
        cache_write_5m_per_million=Decimal("3.75"),
        cache_write_1h_per_million=Decimal("6.00"),
    )
    call_command("reprice", "--since", "2026-03-01", "--until", "2026-04-01", stdout=StringIO())
    usage.refresh_from_db()
    assert (usage.input_cost, usage.total_cost) == (Decimal("0.003000"), Decimal("0.003750"))  # − 1 000 × 0.15
    assert sum(JobDailyStat.objects.filter(status="completed").values_list("cost_micros", flat=True)) == 3750


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
    ModelPriceFactory(
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
