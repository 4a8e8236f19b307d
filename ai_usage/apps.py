from django.apps import AppConfig


class AIUsageConfig(AppConfig):
    name = "ai_usage"
    verbose_name = "AI usage and cost"
