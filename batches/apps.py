from django.apps import AppConfig


class BatchesConfig(AppConfig):
    """Bulk submission (a batch of ordinary jobs) and routing of 24 h batches through provider Batch APIs.

    Depends on ai_core (jobs, workflow, engine); ai_core never imports it: its upkeep round and the routing of
    single 24 h jobs are registered here.
    """

    name = "batches"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from ai_core.engine.upkeep import register_round
        from ai_core.services import register_job_router
        from batches import routing, services

        register_round(routing.upkeep_round)
        register_job_router(services.SINGLE_JOB_ROUTER)
