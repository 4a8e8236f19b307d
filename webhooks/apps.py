from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhooks"

    def ready(self) -> None:
        from ai_core.workflow import job_final_committed
        from webhooks import services

        job_final_committed.connect(services.on_job_final, dispatch_uid="webhooks.on_job_final")
