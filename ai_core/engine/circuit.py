"""The providers' circuit breaker, shared by every worker process through one database row per provider
(ai_core.models.ProviderCircuit).

A provider's circuit opens after AICORE_CIRCUIT_FAILURES consecutive transient failures of its calls (5xx,
timeouts, network errors; a 429 says "slow down", not "down") and stays open AICORE_CIRCUIT_OPEN_SECONDS past
its last failure; a successful call closes it. While it is open a job that names fallback models skips the
provider (engine.fallback); a job without fallbacks still calls it, as it always did, and so probes it.

Reads go through a per-process memo of the few rows (AICORE_CIRCUIT_CACHE_SECONDS): a call pays no query of
its own. Writes happen on a failure and on the first success after one (as this process last read the row).
"""

from datetime import timedelta

from django.conf import settings
from django.db.models import Case, F, Value, When
from django.utils import timezone

from ai_core.models import ProviderCircuit
from ai_providers.clients.base import ProviderError, TransientProviderError
from business.memo import TTLMemo

circuits_memo = TTLMemo("AICORE_CIRCUIT_CACHE_SECONDS")


def _failures_and_open_until() -> dict:
    """provider → (consecutive failures, open until), every row at once: a handful of providers."""
    return circuits_memo.get(
        "all",
        lambda: {
            provider: (failures, until)
            for provider, failures, until in ProviderCircuit.objects.values_list("provider", "failures", "opened_until")
        },
    )


def is_open(provider: str) -> bool:
    until = _failures_and_open_until().get(provider, (0, None))[1]
    return until is not None and until > timezone.now()


def means_down(exc: ProviderError) -> bool:
    """Whether a failed call says the provider is down (counts towards opening its circuit)."""
    return isinstance(exc, TransientProviderError) and exc.status_code != 429


def record_failure(provider: str, message: str) -> None:
    """One more consecutive failure; the one that reaches the threshold (and each after it) opens the circuit
    for AICORE_CIRCUIT_OPEN_SECONDS from now. One conditional UPDATE: concurrent failures all count."""
    now = timezone.now()
    ProviderCircuit.objects.bulk_create([ProviderCircuit(provider=provider)], ignore_conflicts=True)
    reopen = now + timedelta(seconds=settings.AICORE_CIRCUIT_OPEN_SECONDS)
    ProviderCircuit.objects.filter(provider=provider).update(
        failures=F("failures") + 1,
        # SET reads the row as it was: `failures` here is the count before this failure.
        opened_until=Case(
            When(failures__gte=settings.AICORE_CIRCUIT_FAILURES - 1, then=Value(reopen)), default=F("opened_until")
        ),
        last_failure_at=now,
        last_error=message[:500],
    )
    circuits_memo.clear()


def record_success(provider: str) -> None:
    """A call answered: the provider is up. Writes only when this process saw failures counted."""
    if _failures_and_open_until().get(provider, (0, None))[0] == 0:
        return
    ProviderCircuit.objects.filter(provider=provider, failures__gt=0).update(failures=0, opened_until=None)
    circuits_memo.clear()
