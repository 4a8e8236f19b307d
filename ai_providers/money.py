"""The one cost arithmetic: a call's tokens of every kind × the rates of a dated price → Decimal dollars.

Job settlement (ai_usage.services.usage_charge), quota reservations (cost_ceiling_micros), the `reprice`
command, and through the usage rows they write the dashboards and `cost_breakdown` (which sum stored costs):
all of them price tokens here and nowhere else. Pure arithmetic, no database.

Token kinds (TokenUsage): `input_tokens` counts EVERY prompt token; the cached reads and the cache writes are
parts of it, billed at their own rates, the rest at the input rate. `reasoning_tokens` are a part of
`output_tokens` (providers bill them as output). The providers count differently — OpenAI's prompt_tokens
include the cached tokens, Anthropic's input_tokens exclude cache reads and writes — so the two constructors
below are the only place that knows it.
"""

import math
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

MICRO = Decimal("0.000001")
MILLION = Decimal(1_000_000)
CENT = Decimal("0.01")


# --- amounts: stored as Decimal dollars (6 places), summed as integer micro-dollars, shown to people ----------


def dollars(amount) -> Decimal:
    """An amount (Decimal, int, numeric string, or None for nothing) as Decimal dollars to the micro-dollar."""
    return Decimal(amount or 0).quantize(MICRO)


def to_micros(amount: Decimal) -> int:
    """Dollars as whole micro-dollars: what the roll-ups and quota counters add up without rounding drift."""
    return int((Decimal(amount) * MILLION).to_integral_value())


def from_micros(micros: int) -> Decimal:
    return (Decimal(int(micros)) / MILLION).quantize(MICRO)


def shown(amount: Decimal) -> str:
    """A cost for people: two decimals, more only when a smaller amount would otherwise read as zero."""
    exact = dollars(amount)
    cents = exact.quantize(CENT)
    return str(cents) if cents == exact else str(exact.normalize())


@dataclass(frozen=True)
class Price:
    """USD per million tokens of each kind, from `effective_from` on. An optional rate left None means the
    provider has no such rate: cached reads and cache writes are then billed at the input rate, a call is
    never in a long-context tier, and there is no Batch API price."""

    input_per_million: Decimal
    output_per_million: Decimal
    effective_from: datetime | None = None
    cached_input_per_million: Decimal | None = None
    cache_write_5m_per_million: Decimal | None = None
    cache_write_1h_per_million: Decimal | None = None
    # The Batch API's price as a fraction of every rate above (0.5: half price): what a job sent through a
    # provider's Batch API is reserved and charged at (batches app).
    batch_ratio: Decimal | None = None
    # Above this many prompt tokens (all kinds) the whole call is billed at the long-context rates; the cache
    # rates scale with the input rate (Anthropic: "multipliers apply on top of long context pricing").
    long_context_threshold_tokens: int | None = None
    long_context_input_per_million: Decimal | None = None
    long_context_output_per_million: Decimal | None = None

    def rates(self, prompt_tokens: int) -> "Rates":
        """The rate of each kind for a call with this many prompt tokens."""
        input_rate, output_rate, scale = self.input_per_million, self.output_per_million, Decimal(1)
        if self.long_context_threshold_tokens is not None and prompt_tokens > self.long_context_threshold_tokens:
            long_input = self.long_context_input_per_million
            if self.input_per_million:
                scale = Decimal(long_input) / self.input_per_million
            input_rate, output_rate = Decimal(long_input), Decimal(self.long_context_output_per_million)
        return Rates(
            input=input_rate,
            output=output_rate,
            cached_input=input_rate if self.cached_input_per_million is None else self.cached_input_per_million * scale,
            cache_write_5m=input_rate
            if self.cache_write_5m_per_million is None
            else self.cache_write_5m_per_million * scale,
            cache_write_1h=input_rate
            if self.cache_write_1h_per_million is None
            else self.cache_write_1h_per_million * scale,
        )


FREE = Price(Decimal(0), Decimal(0))


@dataclass(frozen=True)
class Rates:
    input: Decimal
    output: Decimal
    cached_input: Decimal
    cache_write_5m: Decimal
    cache_write_1h: Decimal


@dataclass(frozen=True)
class TokenUsage:
    """What one call consumed. input_tokens ⊇ cached_input + cache writes; output_tokens ⊇ reasoning."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0

    def __post_init__(self) -> None:
        # Counts from a provider or a caller are clamped into a consistent shape, so no path can charge a part
        # twice or a negative amount (the usage table's constraints hold the same invariants).
        clean = {name: max(0, int(getattr(self, name) or 0)) for name in self.__dataclass_fields__}
        clean["cached_input_tokens"] = min(clean["cached_input_tokens"], clean["input_tokens"])
        room = clean["input_tokens"] - clean["cached_input_tokens"]
        clean["cache_write_5m_tokens"] = min(clean["cache_write_5m_tokens"], room)
        clean["cache_write_1h_tokens"] = min(clean["cache_write_1h_tokens"], room - clean["cache_write_5m_tokens"])
        clean["reasoning_tokens"] = min(clean["reasoning_tokens"], clean["output_tokens"])
        for name, value in clean.items():
            object.__setattr__(self, name, value)

    @classmethod
    def of(cls, counted) -> "TokenUsage":
        """The counts of anything that carries them under these names (a provider's ChatResult, a usage row)."""
        return cls(**{name: getattr(counted, name) for name in cls.__dataclass_fields__})

    def by_kind(self) -> dict[str, int]:
        """Each count under its name (the usage row's columns are named alike)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_openai(
        cls, *, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0, reasoning_tokens: int = 0
    ) -> "TokenUsage":
        """OpenAI: prompt_tokens already include the cached ones; completion_tokens include reasoning."""
        return cls(
            input_tokens=prompt_tokens,
            output_tokens=completion_tokens,
            cached_input_tokens=cached_tokens,
            reasoning_tokens=reasoning_tokens,
        )

    @classmethod
    def from_anthropic(
        cls,
        *,
        input_tokens: int,
        output_tokens: int,
        cache_read_input_tokens: int = 0,
        cache_creation_input_tokens: int = 0,
        ephemeral_5m_input_tokens: int | None = None,
        ephemeral_1h_input_tokens: int | None = None,
    ) -> "TokenUsage":
        """Anthropic: input_tokens exclude cache reads and writes, which are reported beside them. Cache writes
        without the 5m/1h split are 5-minute writes (the default time to live)."""
        read, created = int(cache_read_input_tokens or 0), int(cache_creation_input_tokens or 0)
        one_hour = int(ephemeral_1h_input_tokens or 0)
        five_minutes = int(ephemeral_5m_input_tokens or 0)
        five_minutes += max(0, created - five_minutes - one_hour)  # an unsplit remainder: the default TTL
        return cls(
            input_tokens=int(input_tokens or 0) + read + five_minutes + one_hour,
            output_tokens=output_tokens,
            cached_input_tokens=read,
            cache_write_5m_tokens=five_minutes,
            cache_write_1h_tokens=one_hour,
        )

    @property
    def uncached_input_tokens(self) -> int:
        return self.input_tokens - self.cached_input_tokens - self.cache_write_5m_tokens - self.cache_write_1h_tokens

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


NO_TOKENS = TokenUsage()


@dataclass(frozen=True)
class Cost:
    input_cost: Decimal
    output_cost: Decimal

    @property
    def total_cost(self) -> Decimal:
        return self.input_cost + self.output_cost


def cost_of(tokens: TokenUsage, price: Price, *, batch: bool = False) -> Cost:
    """Each kind × its rate per million; the input side (uncached, cached, both cache writes) and the output
    side each rounded half-up once to the micro-dollar (6 places). `batch`: at the price's Batch API ratio."""
    rates = price.rates(tokens.input_tokens)
    exact_input = (
        tokens.uncached_input_tokens * rates.input
        + tokens.cached_input_tokens * rates.cached_input
        + tokens.cache_write_5m_tokens * rates.cache_write_5m
        + tokens.cache_write_1h_tokens * rates.cache_write_1h
    ) / MILLION
    exact_output = tokens.output_tokens * rates.output / MILLION
    if batch and price.batch_ratio is not None:
        exact_input, exact_output = exact_input * price.batch_ratio, exact_output * price.batch_ratio
    return Cost(
        input_cost=exact_input.quantize(MICRO, ROUND_HALF_UP),
        output_cost=exact_output.quantize(MICRO, ROUND_HALF_UP),
    )


def cost_ceiling_micros(
    *, prompt_tokens: int, output_tokens: int, price: Price, may_write_cache: bool, batch: bool = False
) -> int:
    """The most a call with at most these tokens can cost, in micro-dollars rounded up (a quota reservation).

    Every prompt token is taken at the dearest input-side rate it could be billed at: a cache write (1 h at
    200 % of input on Anthropic) when the request asks for caching, else the input rate (a cached read only
    costs less). The tier is the one of `prompt_tokens`: an upper bound picks the dearer tier or the same one.
    `batch`: at the price's Batch API ratio (as cost_of).
    """
    rates = price.rates(prompt_tokens)
    input_rate = max(rates.input, rates.cache_write_5m, rates.cache_write_1h) if may_write_cache else rates.input
    exact = Decimal(prompt_tokens) * input_rate + Decimal(output_tokens) * rates.output  # $/1M × n = µ$
    if batch and price.batch_ratio is not None:
        exact *= price.batch_ratio
    return math.ceil(exact)
