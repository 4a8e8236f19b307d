from django.apps import AppConfig


class AICoreConfig(AppConfig):
    name = "ai_core"
    verbose_name = "AI jobs"

    def ready(self):
        from ai_core.models import AIJobType
        from ai_core.services import job_types_memo

        # An edit in the admin applies to the next job at once in this process (others: within the TTL).
        job_types_memo.clear_on_change(AIJobType)
