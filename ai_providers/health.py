"""Provider health as the catalogue (GET /ai/providers/) shows it: per provider, for one brand.

Health is read from how the brand's recent calls went, which accounting (ai_usage) records — an app above this one
in the layers. So the catalogue asks a health source registered at startup (`ai_usage`'s `AppConfig.ready()`)
instead of importing it. Without one registered (accounting not installed) each provider's health is None.
"""

from collections.abc import Callable
from typing import Any

HealthSource = Callable[..., dict[int, dict[str, Any]]]  # (*, brand, providers) -> {provider pk: health}

_source: HealthSource | None = None


def register_health_source(source: HealthSource) -> None:
    """Make `source(brand=…, providers=[…])` the provider health of the catalogue (one source: the last wins)."""
    global _source
    _source = source


def provider_health(*, brand, providers: list) -> dict[int, dict[str, Any] | None]:
    if _source is None:
        return {provider.pk: None for provider in providers}
    return _source(brand=brand, providers=providers)
