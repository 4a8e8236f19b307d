"""The catalogue loaded by a data migration (editable afterwards in the admin): providers, models, list prices.

Prices are USD per million tokens, effective from PRICES_FROM; a later price is added as a new dated row.
"""

from decimal import Decimal

PRICES_FROM = "2025-01-01T00:00:00Z"

CHAT = ["chat", "streaming"]
FULL = ["chat", "streaming", "json", "tools"]
EMBEDDINGS = ["embeddings"]

PROVIDERS = [
    {
        "name": "openai",
        "display_name": "OpenAI",
        "kind": "openai",
        "default_model": "gpt-4o-mini",
        "model_prefixes": ["gpt-", "chatgpt-", "o1", "o3", "o4"],
        "requires_key": True,
    },
    {
        "name": "anthropic",
        "display_name": "Anthropic",
        "kind": "anthropic",
        "default_model": "claude-sonnet-4-5",
        "model_prefixes": ["claude-"],
        "requires_key": True,
    },
    {
        "name": "echo",
        "display_name": "Echo (offline)",
        "kind": "echo",
        "default_model": "echo-1",
        "model_prefixes": ["echo-"],
        "requires_key": False,
    },
]

# (provider, model, family, capabilities, context window, max output tokens, input $/1M, output $/1M)
MODELS = [
    ("openai", "gpt-4o", "standard", FULL, 128_000, 16_384, "2.50", "10.00"),
    ("openai", "gpt-4o-mini", "standard", FULL, 128_000, 16_384, "0.15", "0.60"),
    ("openai", "gpt-4.1", "standard", FULL, 1_047_576, 32_768, "2.00", "8.00"),
    ("openai", "gpt-4.1-mini", "standard", FULL, 1_047_576, 32_768, "0.40", "1.60"),
    ("openai", "gpt-4.1-nano", "standard", FULL, 1_047_576, 32_768, "0.10", "0.40"),
    ("openai", "gpt-3.5-turbo", "standard", FULL, 16_385, 4_096, "0.50", "1.50"),
    ("openai", "o1", "reasoning", FULL, 200_000, 100_000, "15.00", "60.00"),
    ("openai", "o3", "reasoning", FULL, 200_000, 100_000, "2.00", "8.00"),
    ("openai", "o3-mini", "reasoning", FULL, 200_000, 100_000, "1.10", "4.40"),
    ("openai", "o4-mini", "reasoning", FULL, 200_000, 100_000, "1.10", "4.40"),
    (
        "anthropic",
        "claude-opus-4-1",
        "standard",
        ["chat", "streaming", "tools"],
        200_000,
        32_000,
        "15.00",
        "75.00",
    ),
    (
        "anthropic",
        "claude-sonnet-4-5",
        "standard",
        ["chat", "streaming", "tools"],
        200_000,
        64_000,
        "3.00",
        "15.00",
    ),
    (
        "anthropic",
        "claude-haiku-4-5",
        "standard",
        ["chat", "streaming", "tools"],
        200_000,
        64_000,
        "1.00",
        "5.00",
    ),
    (
        "anthropic",
        "claude-3-5-haiku-latest",
        "standard",
        ["chat", "streaming", "tools"],
        200_000,
        8_192,
        "0.80",
        "4.00",
    ),
    ("echo", "echo-1", "standard", CHAT, 1_000_000, 100_000, "0", "0"),
    # Embedding models answer no output tokens: priced per input token (max output 1 keeps reservations honest).
    ("openai", "text-embedding-3-small", "standard", EMBEDDINGS, 8_191, 1, "0.02", "0"),
    ("openai", "text-embedding-3-large", "standard", EMBEDDINGS, 8_191, 1, "0.13", "0"),
    ("echo", "echo-embed-1", "standard", EMBEDDINGS, 1_000_000, 1, "0", "0"),
]


# The rates of the other token kinds, published list prices (USD per 1M) of the same date. OpenAI: cached input
# (no charge for cache writes), Batch API at 50 %. Anthropic: cache read 10 % of input, 5-minute write 125 %,
# 1-hour write 200 %, Message Batches at 50 %; Sonnet 4.5 above 200 000 prompt tokens (1M-context beta):
# $6 in / $22.50 out. A model absent here has none of these rates (echo).
OPENAI_BATCH = ANTHROPIC_BATCH = "0.5"


def _anthropic(input_rate: str, **long_context) -> dict:
    rate = Decimal(input_rate)
    return {
        "cached_input_per_million": str(rate * Decimal("0.10")),
        "cache_write_5m_per_million": str(rate * Decimal("1.25")),
        "cache_write_1h_per_million": str(rate * 2),
        "batch_ratio": ANTHROPIC_BATCH,
        **long_context,
    }


TOKEN_RATES = {
    "gpt-4o": {"cached_input_per_million": "1.25", "batch_ratio": OPENAI_BATCH},
    "gpt-4o-mini": {"cached_input_per_million": "0.075", "batch_ratio": OPENAI_BATCH},
    "gpt-4.1": {"cached_input_per_million": "0.50", "batch_ratio": OPENAI_BATCH},
    "gpt-4.1-mini": {"cached_input_per_million": "0.10", "batch_ratio": OPENAI_BATCH},
    "gpt-4.1-nano": {"cached_input_per_million": "0.025", "batch_ratio": OPENAI_BATCH},
    "gpt-3.5-turbo": {"batch_ratio": OPENAI_BATCH},  # no prompt caching
    "o1": {"cached_input_per_million": "7.50", "batch_ratio": OPENAI_BATCH},
    "o3": {"cached_input_per_million": "0.50", "batch_ratio": OPENAI_BATCH},
    "o3-mini": {"cached_input_per_million": "0.55", "batch_ratio": OPENAI_BATCH},
    "o4-mini": {"cached_input_per_million": "0.275", "batch_ratio": OPENAI_BATCH},
    "claude-opus-4-1": _anthropic("15.00"),
    "claude-sonnet-4-5": _anthropic(
        "3.00",
        long_context_threshold_tokens=200_000,
        long_context_input_per_million="6.00",
        long_context_output_per_million="22.50",
    ),
    "claude-haiku-4-5": _anthropic("1.00"),
    "claude-3-5-haiku-latest": _anthropic("0.80"),
}


def load_token_rates(ModelPrice) -> None:
    """Give the catalogue's own price rows (dated PRICES_FROM, list input/output rates unchanged) the rates of
    the other token kinds. A row an operator edited or added keeps what it has."""
    from django.utils.dateparse import parse_datetime

    listed = {name: (Decimal(price_in), Decimal(price_out)) for _, name, *_, price_in, price_out in MODELS}
    rows = ModelPrice.objects.filter(
        effective_from=parse_datetime(PRICES_FROM), model__name__in=list(TOKEN_RATES)
    ).select_related("model")
    for row in rows:
        untouched = (Decimal(str(row.input_per_million)), Decimal(str(row.output_per_million))) == listed.get(
            row.model.name
        )
        if untouched and row.cached_input_per_million is None and row.batch_ratio is None:
            ModelPrice.objects.filter(pk=row.pk).update(**TOKEN_RATES[row.model.name])


def load_catalogue(Provider, ProviderModel, ModelPrice, *, token_rates: bool = True) -> None:
    """Idempotent: creates what is missing, never overwrites an operator's edits.

    `token_rates=False`: only the input/output rates (the catalogue's first migration, before the other rates'
    columns existed; the next one fills them)."""
    from django.utils.dateparse import parse_datetime

    providers = {}
    for spec in PROVIDERS:
        providers[spec["name"]], _ = Provider.objects.get_or_create(name=spec["name"], defaults=spec)
    for provider, name, family, capabilities, context, max_output, price_in, price_out in MODELS:
        model, created = ProviderModel.objects.get_or_create(
            name=name,
            defaults={
                "provider": providers[provider],
                "family": family,
                "capabilities": capabilities,
                "context_window": context,
                "max_output_tokens": max_output,
            },
        )
        if created:
            ModelPrice.objects.create(
                model=model,
                effective_from=parse_datetime(PRICES_FROM),
                input_per_million=price_in,
                output_per_million=price_out,
            )
    if token_rates:
        load_token_rates(ModelPrice)
