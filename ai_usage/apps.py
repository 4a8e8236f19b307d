from django.apps import AppConfig


class AIUsageConfig(AppConfig):
    name = "ai_usage"
    verbose_name = "AI usage and cost"

    def ready(self) -> None:
        from ai_core.hooks import register
        from ai_usage import hooks

        register(probes=hooks.PROBES, order=10, **hooks.HOOKS)  # quota rows: locked first
