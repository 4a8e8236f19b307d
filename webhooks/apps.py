from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhooks"

    def ready(self) -> None:
        from ai_core.hooks import register
        from ai_usage.alerts import quota_threshold_crossed
        from batches.signals import batch_completed
        from webhooks import services

        register(on_final_committed=services.on_jobs_final)
        quota_threshold_crossed.connect(services.on_quota_threshold, dispatch_uid="webhooks.on_quota_threshold")
        batch_completed.connect(services.on_batch_completed, dispatch_uid="webhooks.on_batch_completed")
