from django.apps import AppConfig


class AICoreConfig(AppConfig):
    name = "ai_core"
    verbose_name = "AI jobs"

    def ready(self):
        from ai_core import hooks
        from ai_core.models import AIJobType
        from ai_core.services import job_types_memo
        from ai_core.signals import send_final_committed

        hooks.register(on_final_committed=send_final_committed)  # the job_final_committed signal's wrapper

        # An edit in the admin applies to the next job at once in this process (others: within the TTL).
        job_types_memo.clear_on_change(AIJobType)
