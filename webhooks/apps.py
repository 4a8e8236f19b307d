from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhooks"

    def ready(self) -> None:
        from ai_core.engine.loops import PeriodicLoop, register_loop
        from ai_core.hooks import register
        from ai_usage.alerts import quota_threshold_crossed
        from batches.signals import batch_completed
        from webhooks import services
        from webhooks.models import WebhookEndpoint

        register(on_final_committed=services.on_jobs_final)
        services.endpoints_memo.clear_on_change(WebhookEndpoint)
        quota_threshold_crossed.connect(services.on_quota_threshold, dispatch_uid="webhooks.on_quota_threshold")
        batch_completed.connect(services.on_batch_completed, dispatch_uid="webhooks.on_batch_completed")
        # Every worker re-publishes overdue deliveries (a lost message only delays a webhook); several at once is
        # harmless because an attempt first claims its delivery with a compare-and-set.
        register_loop(
            PeriodicLoop("webhooks-sweep", services.deliveries_sweep, every_seconds=lambda: SWEEP_EVERY_SECONDS)
        )


SWEEP_EVERY_SECONDS = 60
