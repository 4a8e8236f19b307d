"""Reads on the catalogue, prices and credentials. Credentials are read through `credentials_of()` only."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Count, Q, QuerySet, Sum
from django.utils import timezone

from ai_providers.models import (
    OPTIONAL_RATES,
    CapacityLease,
    CapacityLimit,
    ModelFamily,
    ModelPrice,
    Provider,
    ProviderCredential,
    ProviderKind,
    ProviderModel,
)
from ai_providers.money import FREE, Cost, Price, TokenUsage, cost_of, dollars  # noqa: F401  (the money module's API)
from business.errors import ApplicationError, NotFound
from business.memo import TTLMemo
from business.models import Brand
from business.numbers import parse_natural
from business.timestamps import api_timestamp

BUILTIN_ECHO = Provider(
    name="echo",
    display_name="Echo (offline)",
    kind=ProviderKind.ECHO,
    default_model="echo-1",
    model_prefixes=["echo-"],
    requires_key=False,
)


@dataclass(frozen=True)
class ModelChoice:
    """A model name resolved through the catalogue: which provider runs it, under which rules."""

    name: str
    provider: Provider
    family: str
    max_output_tokens: int
    model_id: int | None  # None: a name matched by the provider's prefixes only (no price known)

    @property
    def is_reasoning(self) -> bool:
        return self.family == ModelFamily.REASONING


# Read on every job creation and every job's end; cleared by any local save of a provider, model or price.
catalogue_memo = TTLMemo("AICORE_CATALOGUE_CACHE_SECONDS")


def model_resolve(name: str) -> ModelChoice:
    """The catalogue entry of `name`, else the active provider whose prefixes match it (echo-* → echo)."""
    if not isinstance(name, str) or not name:
        raise ApplicationError("model must be a non-empty string", error_code="MODEL_NOT_SUPPORTED")
    choice = catalogue_memo.get(("model", name), lambda: _model_resolve(name))
    if choice is None:
        raise ApplicationError(f"Model '{name}' is not in the provider catalogue", error_code="MODEL_NOT_SUPPORTED")
    return choice


def _model_resolve(name: str) -> ModelChoice | None:
    model = (
        ProviderModel.objects.select_related("provider")
        .filter(name=name, is_active=True, provider__is_active=True)
        .first()
    )
    if model is not None:
        return ModelChoice(
            name=name,
            provider=model.provider,
            family=model.family,
            max_output_tokens=model.max_output_tokens,
            model_id=model.pk,
        )
    providers = list(Provider.objects.all().order_by("name"))
    for provider in (p for p in providers if p.is_active):
        if any(name.startswith(prefix) for prefix in provider.model_prefixes or []):
            family = ModelFamily.STANDARD
            if provider.kind == ProviderKind.OPENAI:
                from ai_providers.clients.families import is_reasoning_model

                family = ModelFamily.REASONING if is_reasoning_model(name) else ModelFamily.STANDARD
            return ModelChoice(
                name=name,
                provider=provider,
                family=family,
                max_output_tokens=settings.AICORE_DEFAULT_MAX_OUTPUT_TOKENS,
                model_id=None,
            )
    if name.startswith("echo-") and not any(p.kind == ProviderKind.ECHO for p in providers):
        # The offline provider needs no row to work (demos and tests on an emptied catalogue).
        return ModelChoice(
            name=name,
            provider=BUILTIN_ECHO,
            family=ModelFamily.STANDARD,
            max_output_tokens=settings.AICORE_DEFAULT_MAX_OUTPUT_TOKENS,
            model_id=None,
        )
    return None


def price_at(model_name: str, at: datetime | None = None, *, choice: ModelChoice | None = None) -> Price:
    """The price in effect at `at` (now by default): the latest price whose date is not after it.

    With the model's resolved `choice`: a model outside the catalogue has no price row, so no query.
    """
    if choice is not None and choice.model_id is None:
        return FREE
    at = at or timezone.now()
    return next((price for price in _prices(model_name) if price.effective_from <= at), FREE)


def prices_from(choice: ModelChoice, at: datetime | None = None) -> list[Price]:
    """Every price the model can be charged at from `at` (now) on: the one in effect and each dated change
    already scheduled. A job is charged at the price of its start, which may come after a change took effect:
    what a quota reserves for it must cover the dearest of them.
    """
    if choice.model_id is None:
        return [FREE]
    at = at or timezone.now()
    prices = _prices(choice.name)
    current = next((price for price in prices if price.effective_from <= at), FREE)
    return [current, *(price for price in prices if price.effective_from > at)]


def _prices(model_name: str) -> list[Price]:
    """Every dated price of the model, latest first (a handful of rows)."""

    def load() -> list[Price]:
        return [price_of(row) for row in ModelPrice.objects.filter(model__name=model_name).order_by("-effective_from")]

    return catalogue_memo.get(("prices", model_name), load)


def price_of(row: ModelPrice) -> Price:
    """A price row as the money module's value (Decimals as Decimals even where SQLite hands back floats)."""

    def rate(value) -> Decimal | None:
        return None if value is None else Decimal(str(value))

    return Price(
        input_per_million=rate(row.input_per_million),
        output_per_million=rate(row.output_per_million),
        effective_from=row.effective_from,
        batch_ratio=rate(row.batch_ratio),
        long_context_threshold_tokens=row.long_context_threshold_tokens,
        **{name: rate(getattr(row, name)) for name in OPTIONAL_RATES},
    )


def providers_active() -> QuerySet[Provider]:
    return Provider.objects.filter(is_active=True).prefetch_related("models__prices").order_by("name")


def provider_get(name: str, *, status_code: int = 400) -> Provider:
    """The active provider a request names; an unknown name in a body is that body's fault: a 400, like a job
    type (in a URL's path: a 404, `status_code`)."""
    provider = Provider.objects.filter(name=name, is_active=True).first()
    if provider is None:
        raise NotFound(f"Provider '{name}' not found", error_code="PROVIDER_NOT_FOUND", status_code=status_code)
    return provider


def credentials_of(brand: Brand) -> QuerySet[ProviderCredential]:
    """The credentials a request acting on `brand` may see: those of the brand's company, nothing else."""
    return ProviderCredential.objects.filter(company_id=brand.company_id).select_related("provider")


def credential_get(*, brand: Brand, pk) -> ProviderCredential:
    pk = parse_natural(pk)
    credential = None if pk is None else credentials_of(brand).filter(pk=pk).first()
    if credential is None:
        raise NotFound("Credential not found", error_code="CREDENTIAL_NOT_FOUND")
    return credential


def environment_key(provider: Provider) -> str:
    """The operator's global key for the provider's wire format (the fallback when a company has none)."""
    if provider.kind == ProviderKind.OPENAI:
        return settings.OPENAI_API_KEY
    if provider.kind == ProviderKind.ANTHROPIC:
        return settings.ANTHROPIC_API_KEY
    return ""


def active_credential(*, company_id: int, provider: Provider) -> ProviderCredential | None:
    """The company's active credential for the provider, memoised like the catalogue: read on every job's
    creation and every attempt. A credential saved or deleted in this process applies at once; one disabled in
    another process is still used there for up to AICORE_CATALOGUE_CACHE_SECONDS."""
    return catalogue_memo.get(
        ("credential", company_id, provider.pk),
        lambda: (
            ProviderCredential.objects.filter(company_id=company_id, provider=provider, is_active=True)
            .select_related("provider")
            .first()
        ),
    )


def key_of(*, company_id: int | None, provider: Provider) -> tuple[str | None, ProviderCredential | None]:
    """THE rule of which key a call for this company uses: none for a provider that needs none ("builtin"), the
    company's own active credential ("company"), else the operator's environment key ("environment"); None when
    there is no key anywhere. Returns the source and, for "company", the credential."""
    if not provider.requires_key:
        return "builtin", None
    credential = active_credential(company_id=company_id, provider=provider) if company_id else None
    if credential is not None:
        return "company", credential
    if environment_key(provider):
        return "environment", None
    return None, None


def key_source(*, company_id: int | None, provider: Provider) -> str | None:
    """Where a call for this company would take its key: "company", "environment", "builtin", or None."""
    return key_of(company_id=company_id, provider=provider)[0]


def current_price(model: ProviderModel, at: datetime | None = None) -> Price:
    """Like price_at, from the model's prefetched prices (lists show many models without a query each)."""
    at = at or timezone.now()
    dated = [p for p in model.prices.all() if p.effective_from <= at]
    if not dated:
        return FREE
    return price_of(max(dated, key=lambda p: p.effective_from))


def model_as_dict(model: ProviderModel) -> dict:
    price = current_price(model)

    def rate(value) -> str | None:
        return None if value is None else str(dollars(value))

    return {
        "name": model.name,
        "family": model.family,
        "capabilities": model.capabilities,
        "context_window": model.context_window,
        "max_output_tokens": model.max_output_tokens,
        "price": {
            "input_per_million": rate(price.input_per_million),
            "output_per_million": rate(price.output_per_million),
            **{name: rate(getattr(price, name)) for name in OPTIONAL_RATES},
            "batch_ratio": None if price.batch_ratio is None else str(price.batch_ratio),
            "long_context_threshold_tokens": price.long_context_threshold_tokens,
            "effective_from": api_timestamp(price.effective_from),
            "currency": "USD",
        },
    }


def models_of_kind(kinds: set[str]) -> QuerySet[ProviderModel]:
    return (
        ProviderModel.objects.filter(is_active=True, provider__is_active=True, provider__kind__in=kinds)
        .select_related("provider")
        .prefetch_related("prices")
        .order_by("provider__name", "name")
    )


LIMIT_FIELDS = ("requests_per_minute", "tokens_per_minute", "concurrent_requests")


def capacity_limits(*, company_id: int | None = None) -> QuerySet[CapacityLimit]:
    """The capacity rows a company sees: the environment's endpoints and its own credentials' (every row when
    company_id is None: the operator's view, /metrics)."""
    rows = CapacityLimit.objects.select_related("provider").order_by("provider__name", "credential_id", "model")
    if company_id is None:
        return rows
    return rows.filter(Q(credential__isnull=True) | Q(credential__company_id=company_id))


def capacity_as_dict(row: CapacityLimit, use: dict[str, int], now: datetime) -> dict[str, Any]:
    """One endpoint and model's limits (configured; learned while fresh), current use, 429 rate and waits."""
    learned_fresh = row.learned_until is not None and row.learned_until > now
    return {
        "id": row.pk,
        "provider": row.provider.name,
        "endpoint": "company" if row.credential_id else "environment",
        "model": row.model,
        "configured": {name: getattr(row, name) for name in LIMIT_FIELDS},
        "learned": {
            "requests_per_minute": row.learned_requests_per_minute,
            "tokens_per_minute": row.learned_tokens_per_minute,
            "until": api_timestamp(row.learned_until),
        }
        if learned_fresh
        else None,
        "blocked_until": api_timestamp(row.blocked_until) if row.blocked_until and row.blocked_until > now else None,
        "in_use": use,
        "calls": row.calls,
        "rate_limited": row.rate_limited,
        "rate_limited_ratio": round(row.rate_limited / row.calls, 4) if row.calls else 0.0,
        "waits": row.waits,
        "average_wait_seconds": round(row.wait_seconds / row.waits, 3) if row.waits else 0.0,
    }


def capacity_in_use(limit_ids: list[int], now: datetime) -> dict[int, dict[str, int]]:
    """Per limit row, in one query: requests and tokens of the last minute, and calls in flight now."""
    rows = (
        CapacityLease.objects.filter(limit_id__in=limit_ids)
        .values("limit_id")
        .annotate(
            requests_last_minute=Count("id", filter=Q(granted_at__gt=now - timedelta(minutes=1))),
            tokens_last_minute=Sum("tokens", filter=Q(granted_at__gt=now - timedelta(minutes=1))),
            concurrent=Count("id", filter=Q(released_at__isnull=True, expires_at__gt=now)),
        )
    )
    empty = {"requests_last_minute": 0, "tokens_last_minute": 0, "concurrent": 0}
    use = {limit_id: dict(empty) for limit_id in limit_ids}
    for row in rows:
        use[row.pop("limit_id")] = {name: value or 0 for name, value in row.items()}
    return use


def capacity_overview(*, company_id: int | None = None) -> list[dict[str, Any]]:
    now = timezone.now()
    rows = list(capacity_limits(company_id=company_id))
    use = capacity_in_use([row.pk for row in rows], now)
    return [capacity_as_dict(row, use[row.pk], now) for row in rows]
