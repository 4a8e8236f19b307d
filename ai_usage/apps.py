from django.apps import AppConfig


class AIUsageConfig(AppConfig):
    name = "ai_usage"
    verbose_name = "AI usage and cost"

    def ready(self) -> None:
        from ai_core.hooks import register
        from ai_providers.health import register_health_source
        from ai_usage import hooks
        from ai_usage.selectors import provider_health

        register(probes=hooks.PROBES, order=10, **hooks.HOOKS)  # quota rows: locked first
        # The provider catalogue's health (GET /ai/providers/) is this brand's recent usage per provider.
        register_health_source(provider_health)
