from django.apps import AppConfig


class AIOpenAIConfig(AppConfig):
    name = "ai_openai"
    verbose_name = "OpenAI jobs"
