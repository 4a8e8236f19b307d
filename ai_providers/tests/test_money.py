"""The one cost arithmetic (ai_providers/money.py): every kind of token against hand computation to 1e-6."""

from decimal import Decimal

import pytest

from ai_providers.money import Price, TokenUsage, cost_ceiling_micros, cost_of

GPT_4O = Price(Decimal("2.50"), Decimal("10.00"), cached_input_per_million=Decimal("1.25"), batch_ratio=Decimal("0.5"))
SONNET = Price(
    Decimal("3.00"),
    Decimal("15.00"),
    cached_input_per_million=Decimal("0.30"),
    cache_write_5m_per_million=Decimal("3.75"),
    cache_write_1h_per_million=Decimal("6.00"),
    batch_ratio=Decimal("0.5"),
    long_context_threshold_tokens=200_000,
    long_context_input_per_million=Decimal("6.00"),
    long_context_output_per_million=Decimal("22.50"),
)


def test_the_issues_example_cached_prompt_tokens_cost_half_on_gpt_4o():
    cached = cost_of(TokenUsage.from_openai(prompt_tokens=2010, completion_tokens=3, cached_tokens=2000), GPT_4O)
    uncached = cost_of(TokenUsage.from_openai(prompt_tokens=2010, completion_tokens=3), GPT_4O)
    # 10 × 2.50 + 2 000 × 1.25 = 2 525 µ$; 3 × 10 = 30 µ$ — against 2 010 × 2.50 + 30 = 5 055 µ$ uncached.
    assert (cached.input_cost, cached.output_cost, cached.total_cost) == (
        Decimal("0.002525"),
        Decimal("0.000030"),
        Decimal("0.002555"),
    )
    assert uncached.total_cost == Decimal("0.005055")


def test_anthropic_cache_reads_and_both_write_durations_each_have_their_rate():
    tokens = TokenUsage.from_anthropic(
        input_tokens=1234,
        output_tokens=567,
        cache_read_input_tokens=10_000,
        cache_creation_input_tokens=3_000,
        ephemeral_5m_input_tokens=1_000,
        ephemeral_1h_input_tokens=2_000,
    )
    assert (tokens.input_tokens, tokens.uncached_input_tokens) == (14_234, 1234)
    cost = cost_of(tokens, SONNET)
    # 1234 × 3 + 10 000 × 0.30 + 1 000 × 3.75 + 2 000 × 6 = 3 702 + 3 000 + 3 750 + 12 000 = 22 452 µ$
    # 567 × 15 = 8 505 µ$
    assert (cost.input_cost, cost.output_cost) == (Decimal("0.022452"), Decimal("0.008505"))


def test_unsplit_cache_writes_are_five_minute_writes():
    tokens = TokenUsage.from_anthropic(input_tokens=0, output_tokens=0, cache_creation_input_tokens=800)
    assert (tokens.cache_write_5m_tokens, tokens.cache_write_1h_tokens, tokens.input_tokens) == (800, 0, 800)
    assert cost_of(tokens, SONNET).input_cost == Decimal("0.003000")  # 800 × 3.75


def test_reasoning_tokens_are_output_tokens_and_cost_no_more():
    plain = cost_of(TokenUsage(input_tokens=100, output_tokens=1000), GPT_4O)
    reasoning = cost_of(TokenUsage(input_tokens=100, output_tokens=1000, reasoning_tokens=900), GPT_4O)
    assert reasoning == plain and plain.output_cost == Decimal("0.010000")


def test_a_provider_without_cache_rates_bills_cached_tokens_at_the_input_rate():
    price = Price(Decimal("0.50"), Decimal("1.50"))
    tokens = TokenUsage(input_tokens=1000, cached_input_tokens=600, cache_write_5m_tokens=100, output_tokens=10)
    assert cost_of(tokens, price).input_cost == Decimal("0.000500")


def test_above_the_long_context_threshold_every_rate_is_the_tiers():
    at_threshold = cost_of(TokenUsage(input_tokens=200_000, output_tokens=1000), SONNET)
    above = cost_of(TokenUsage(input_tokens=200_001, cached_input_tokens=100_000, output_tokens=1000), SONNET)
    assert (at_threshold.input_cost, at_threshold.output_cost) == (Decimal("0.600000"), Decimal("0.015000"))
    # 100 001 × 6 + 100 000 × 0.60 (cache reads scale with the tier's input rate: 10 % of 6) = 660 006 µ$
    assert (above.input_cost, above.output_cost) == (Decimal("0.660006"), Decimal("0.022500"))


def test_the_batch_ratio_halves_every_kind():
    tokens = TokenUsage.from_openai(prompt_tokens=2010, completion_tokens=3, cached_tokens=2000)
    batch = cost_of(tokens, GPT_4O, batch=True)
    assert (batch.input_cost, batch.output_cost) == (Decimal("0.001263"), Decimal("0.000015"))  # 1262.5 → half up


def test_counts_are_clamped_into_a_consistent_shape():
    tokens = TokenUsage(input_tokens=10, cached_input_tokens=50, cache_write_5m_tokens=5, output_tokens=-3)
    assert (tokens.cached_input_tokens, tokens.cache_write_5m_tokens, tokens.output_tokens) == (10, 0, 0)
    assert tokens.uncached_input_tokens == 0


@pytest.mark.parametrize(
    ("may_write_cache", "expected"),
    [(False, 1000 * 3 + 100 * 15), (True, 1000 * 6 + 100 * 15)],  # the 1-hour write (200 %) is the dearest
)
def test_the_reservation_ceiling_covers_the_dearest_way_the_prompt_can_be_billed(may_write_cache, expected):
    ceiling = cost_ceiling_micros(prompt_tokens=1000, output_tokens=100, price=SONNET, may_write_cache=may_write_cache)
    assert ceiling == expected
    worst = TokenUsage(input_tokens=1000, cache_write_1h_tokens=1000 if may_write_cache else 0, output_tokens=100)
    assert cost_of(worst, SONNET).total_cost * 1_000_000 <= ceiling
