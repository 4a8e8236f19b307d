from django.apps import AppConfig


class AICoreConfig(AppConfig):
    name = "ai_core"
    verbose_name = "AI jobs"
