from django.apps import AppConfig


class AIProvidersConfig(AppConfig):
    name = "ai_providers"
    verbose_name = "AI providers"
