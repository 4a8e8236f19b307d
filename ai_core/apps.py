from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class AICoreConfig(AppConfig):
    name = "ai_core"
    verbose_name = "AI jobs"

    def ready(self):
        from ai_core.models import AIJobType
        from ai_core.services import job_type_cache_clear

        # An edit in the admin applies to the next job at once in this process (others: within the TTL).
        post_save.connect(job_type_cache_clear, sender=AIJobType, dispatch_uid="job_type_cache_save")
        post_delete.connect(job_type_cache_clear, sender=AIJobType, dispatch_uid="job_type_cache_delete")
