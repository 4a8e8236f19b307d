from django.apps import AppConfig


class AIOpenAIConfig(AppConfig):
    name = "ai_openai"
    verbose_name = "OpenAI jobs"

    def ready(self) -> None:
        from ai_core.hooks import register
        from ai_openai import hooks

        register(probes=hooks.PROBES, **hooks.HOOKS)
