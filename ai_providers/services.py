"""Writes on credentials and prices, and the seam the engine calls: a model name → a ready provider client."""

import logging
import time
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ai_providers.capacity import CapacityKey
from ai_providers.clients.base import ChatRequest, ChatResult, PermanentProviderError, ProviderClient, ProviderError
from ai_providers.clients.common import estimate_tokens
from ai_providers.clients.echo import EchoClient
from ai_providers.crypto import decrypt_secret, encrypt_secret
from ai_providers.models import CapacityLimit, ModelPrice, Provider, ProviderCredential, ProviderKind, ProviderModel
from ai_providers.selectors import ModelChoice, environment_key, key_of, model_resolve
from ai_providers.urls_safety import check_base_url
from business.errors import ApplicationError, Conflict
from business.models import Company

logger = logging.getLogger(__name__)

_ECHO = EchoClient()


class ProviderNotConfigured(ApplicationError):
    error_code = "PROVIDER_NOT_CONFIGURED"


@dataclass(frozen=True)
class Endpoint:
    api_key: str
    base_url: str
    organization: str
    source: str  # "company" | "environment" | "builtin"
    guarded: bool = False  # the base URL is the company's own (tenant input): calls go through the network guard
    credential_id: int | None = None  # the company credential's (None: the environment's endpoint)

    def __repr__(self) -> str:  # never the key
        return f"Endpoint(base_url={self.base_url!r}, source={self.source!r})"


def provider_endpoint(*, company_id: int | None, provider: Provider) -> Endpoint | None:
    """The key and URL a call for this company uses, from the key the catalogue's rule picks (selectors.key_of)."""
    source, credential = key_of(company_id=company_id, provider=provider)
    if source == "builtin":
        return Endpoint(api_key="", base_url="", organization="", source="builtin")
    if source == "company":
        return _company_endpoint(credential)
    if source == "environment":
        organization = settings.OPENAI_ORGANIZATION if provider.kind == ProviderKind.OPENAI else ""
        return Endpoint(
            api_key=environment_key(provider),
            base_url=_environment_base_url(provider),
            organization=organization,
            source="environment",
        )
    return None


def _company_endpoint(credential: ProviderCredential) -> Endpoint:
    # A company's base URL was checked when saved; the transport checks each connection's address again
    # (kernel.netguard), so no lookup here: that one would not be the one the call connects with.
    own_url = bool(credential.base_url)
    return Endpoint(
        api_key=decrypt_secret(credential.api_key_encrypted),
        base_url=credential.base_url if own_url else _environment_base_url(credential.provider),
        organization=credential.organization,
        source="company",
        guarded=own_url,
        credential_id=credential.pk,
    )


def _environment_base_url(provider: Provider) -> str:
    if provider.kind == ProviderKind.OPENAI:
        return settings.OPENAI_BASE_URL
    if provider.kind == ProviderKind.ANTHROPIC:
        return settings.ANTHROPIC_BASE_URL
    return ""


def import_sdks() -> None:
    """Import the provider SDKs client_for imports on first use, now: for a process that serves calls from its
    first request on (config.asgi: the gateway calls providers in the API process), so that no request pays the
    ~0.4 s of CPU (more on a loaded machine) importing them costs."""
    from ai_providers.clients import anthropic_client, openai_client  # noqa: F401


def client_for(provider: Provider, endpoint: Endpoint) -> ProviderClient:
    if provider.kind == ProviderKind.ECHO:
        return _ECHO
    # The SDKs are imported on the first call that needs one (import_sdks: the API process imports them at
    # start): importing them costs every process ~2 s of start-up.
    if provider.kind == ProviderKind.ANTHROPIC:
        from ai_providers.clients.anthropic_client import anthropic_client

        return anthropic_client(endpoint.api_key, endpoint.base_url, provider.name, endpoint.guarded)
    from ai_providers.clients.openai_client import openai_client

    return openai_client(endpoint.api_key, endpoint.base_url, endpoint.organization, provider.name, endpoint.guarded)


class CatalogueBound:
    """The model's client, calling it under the catalogue's rules: the model family, and the one output bound
    the job's quota reservation assumed (request_bounded), so no charge exceeds it.
    """

    def __init__(self, client: ProviderClient, choice: ModelChoice, capacity_key: CapacityKey) -> None:
        self.client, self.choice, self.name = client, choice, client.name
        self.capacity_key = capacity_key  # the endpoint and model whose rate limits the call draws from
        # Whether the endpoint may refuse calls for its rate limits (and state them in its answers' headers).
        self.answers_rate_limits = getattr(client, "answers_rate_limits", True)

    def tokens_at_most(self, request: ChatRequest) -> int:
        """What the call may count against a tokens-per-minute limit: the prompt (estimated) and the output
        bound, as providers count it before the answer."""
        if request.operation == "embedding":
            return estimate_tokens("".join(request.options.get("input") or []))
        prompt = estimate_tokens("".join(str(m.get("content") or "") for m in request.messages))
        return prompt + (self.bound(request).max_tokens or 0)

    def bound(self, request: ChatRequest) -> ChatRequest:
        """The request under the catalogue's rules (also what a provider Batch API line asks)."""
        return request_bounded(request, self.choice)

    def chat(self, request: ChatRequest, *, on_progress, should_stop) -> ChatResult:
        if request.operation == "embedding":
            embed = getattr(self.client, "embed", None)
            if embed is None:
                raise PermanentProviderError(
                    f"Provider '{self.name}' does not serve embeddings", error_code="EMBEDDINGS_NOT_SUPPORTED"
                )
            return embed(request, should_stop=should_stop)
        return self.client.chat(self.bound(request), on_progress=on_progress, should_stop=should_stop)

    def async_call(self, request: ChatRequest):
        """The client's coroutine call for `request` under the catalogue's rules (the asyncio executor,
        ai_core.engine.aio), as a function of (on_progress, should_stop); None when the client has none for it
        (embeddings, a company's own base URL, a synchronous custom client): the call then runs on a thread."""
        achat = getattr(self.client, "achat", None)
        if request.operation != "chat" or achat is None or not getattr(self.client, "async_capable", True):
            return None
        bound = self.bound(request)
        return lambda *, on_progress, should_stop: achat(bound, on_progress=on_progress, should_stop=should_stop)


def client_for_model(model: str, company_id: int | None = None) -> CatalogueBound:
    """The one seam from a model name to a ready client (the engine, the gateway, the provider batches): the
    client that runs `model` on behalf of a company (which may bring its own credentials), bound to the model's
    catalogue entry and to the endpoint's capacity key (whose rate limits the call draws from).

    Raises PermanentProviderError MODEL_NOT_SUPPORTED (unknown model) or PROVIDER_NOT_CONFIGURED (no key
    anywhere), status 400: another attempt would not change that.
    """
    try:
        choice = model_resolve(model)
        endpoint = provider_endpoint(company_id=company_id, provider=choice.provider)
        if endpoint is None:
            raise ProviderNotConfigured(
                f"Provider '{choice.provider.name}' has no API key: store a credential for your company or set "
                f"the operator's environment key",
                provider=choice.provider.name,
            )
        client = client_for(choice.provider, endpoint)
    except ApplicationError as exc:
        raise PermanentProviderError(exc.detail, error_code=exc.error_code, status_code=400) from None
    key = CapacityKey(
        provider_id=choice.provider.pk, provider=choice.provider.name, credential_id=endpoint.credential_id, model=model
    )
    return CatalogueBound(client, choice, key)


OUTPUT_BOUND_PARAMS = ("max_tokens", "max_completion_tokens")
MAX_OUTPUT_BOUND = 200_000  # the largest output bound a job may ask for (no model in the catalogue has more)


def is_output_bound(value: Any) -> bool:
    """Whether a job's max_tokens / max_completion_tokens is one: a whole number from 1 to MAX_OUTPUT_BOUND."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_OUTPUT_BOUND


def output_bound(request: ChatRequest, choice: ModelChoice) -> int:
    """THE output bound of a call: the one its quota reservation assumes and the one the provider is held to
    (request_bounded sends exactly this one, under the model family's parameter name).

    The smaller of the bounds the request sets (max_tokens, max_completion_tokens; job creation refuses what
    is_output_bound refuses, and anything else is ignored here, never sent), else the default; never above what
    the catalogue says the model can produce.
    """
    asked = [
        value for value in (request.max_tokens, request.options.get("max_completion_tokens")) if is_output_bound(value)
    ]
    bound = min(asked) if asked else min(choice.max_output_tokens, settings.AICORE_DEFAULT_MAX_OUTPUT_TOKENS)
    return min(bound, choice.max_output_tokens) if choice.model_id is not None else bound


def request_bounded(request: ChatRequest, choice: ModelChoice) -> ChatRequest:
    """The request as the provider receives it: the model's family, and output_bound as its only output bound
    (`max_tokens`; the client names it after the family) — so no call can produce more than was reserved."""
    options = {key: value for key, value in request.options.items() if key != "max_completion_tokens"}
    options["model_family"] = choice.family
    return replace(request, max_tokens=output_bound(request, choice), options=options)


# --- capacity limits ----------------------------------------------------------------------------------


def capacity_limit_set(
    *, provider: Provider, credential: ProviderCredential | None, model: str, limits: dict[str, int | None]
) -> CapacityLimit:
    """Configure an endpoint's limits for a model (model "": each model of the endpoint). A limit left None is
    not configured: the learned one, if any, applies alone. Every process applies it within
    AICORE_CAPACITY_CACHE_SECONDS."""
    if credential is not None and credential.provider_id != provider.pk:
        raise ApplicationError("The credential is not the provider's", error_code="VALIDATION_ERROR")
    row, _ = CapacityLimit.objects.update_or_create(
        provider=provider, credential=credential, model=model, defaults=limits
    )
    logger.info("capacity limits of %s set: %s", row, limits)
    return row


# --- credentials --------------------------------------------------------------------------------------


def credential_create(
    *, company: Company, provider: Provider, api_key: str, base_url: str = "", organization: str = ""
) -> ProviderCredential:
    if not api_key or not api_key.strip():
        raise ApplicationError("api_key is required", error_code="VALIDATION_ERROR", errors={"api_key": ["Required."]})
    if not provider.requires_key:
        raise ApplicationError(f"Provider '{provider.name}' needs no credential", error_code="VALIDATION_ERROR")
    base_url = check_base_url(base_url) if base_url else ""
    with transaction.atomic():
        if ProviderCredential.objects.filter(company=company, provider=provider).exists():
            raise Conflict(
                f"Your company already has a credential for '{provider.name}'; update it",
                error_code="CREDENTIAL_EXISTS",
            )
        credential = ProviderCredential.objects.create(
            company=company,
            provider=provider,
            api_key_encrypted=encrypt_secret(api_key.strip()),
            base_url=base_url,
            organization=organization,
        )
    logger.info("provider credential %s stored for company %s (%s)", credential.pk, company.pk, provider.name)
    return credential


def credential_update(*, credential: ProviderCredential, data: dict[str, Any]) -> ProviderCredential:
    if "api_key" in data:
        if not data["api_key"] or not str(data["api_key"]).strip():
            raise ApplicationError(
                "api_key cannot be empty",
                error_code="VALIDATION_ERROR",
                errors={"api_key": ["May not be blank."]},
            )
        credential.api_key_encrypted = encrypt_secret(str(data["api_key"]).strip())
        credential.last_tested_at = credential.last_test_ok = None
        credential.last_test_message = ""
    if "base_url" in data:
        credential.base_url = check_base_url(data["base_url"]) if data["base_url"] else ""
    for field in ("organization", "is_active"):
        if field in data:
            setattr(credential, field, data[field])
    credential.save()
    logger.info("provider credential %s updated", credential.pk)
    return credential


def credential_delete(*, credential: ProviderCredential) -> None:
    logger.info("provider credential %s deleted", credential.pk)
    credential.delete()


def credential_test(*, credential: ProviderCredential) -> dict[str, Any]:
    """A real call with the stored key (outside any transaction: it waits on the network)."""
    try:
        endpoint = _company_endpoint(credential)
    except ApplicationError as exc:
        return _record_test(credential, ok=False, message=exc.detail, latency_ms=None)
    client = client_for(credential.provider, endpoint)
    started = time.monotonic()
    try:
        details = client.check(timeout_seconds=10.0)
    except ProviderError as exc:
        return _record_test(
            credential,
            ok=False,
            message=exc.message,
            latency_ms=_ms_since(started),
            error_code=exc.error_code,
        )
    return _record_test(credential, ok=True, message="Connection succeeded", latency_ms=_ms_since(started), **details)


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _record_test(
    credential: ProviderCredential, *, ok: bool, message: str, latency_ms: int | None, **details: Any
) -> dict[str, Any]:
    now = timezone.now()
    ProviderCredential.objects.filter(pk=credential.pk).update(
        last_tested_at=now, last_test_ok=ok, last_test_message=message[:500]
    )
    credential.last_tested_at, credential.last_test_ok, credential.last_test_message = now, ok, message[:500]
    return {"ok": ok, "message": message, "latency_ms": latency_ms, "tested_at": now, **details}


# --- prices -------------------------------------------------------------------------------------------


def price_set(
    *,
    model: ProviderModel,
    input_per_million: Decimal,
    output_per_million: Decimal,
    effective_from: datetime,
    **other_rates: Any,
) -> ModelPrice:
    """A new price from a date on. Usage already recorded keeps its price until an explicit `reprice`.

    `other_rates`: the optional rates of ModelPrice (cached_input_per_million, batch_ratio, …); one left out
    is empty on a new row (the provider has no such rate) and unchanged on an existing one."""
    price, _ = ModelPrice.objects.update_or_create(
        model=model,
        effective_from=effective_from,
        defaults={"input_per_million": input_per_million, "output_per_million": output_per_million, **other_rates},
    )
    return price
