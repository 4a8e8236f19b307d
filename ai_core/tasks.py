"""Celery tasks: thin wrappers over ai_core.engine. A message carries a job pk and only wakes a worker."""

from celery import shared_task
from django.conf import settings

from ai_core.dispatch import RUN_JOB_TASK
from ai_core.engine import aio, runner
from ai_core.engine import worker as _worker  # noqa: F401  (starts the sweeper/reaper in worker processes)


@shared_task(name=RUN_JOB_TASK, bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_job(self, job_pk: int) -> str | None:
    if aio.enabled():  # the asyncio executor: the wake-up is handed to the loop, acked at once (see engine.aio)
        return aio.engine.wake(task_id=self.request.id or "")
    if settings.AICORE_WAKE_UPS_PER_COMMIT:  # wake-ups are shared by the jobs of a transaction: drain the queue
        return runner.run_wake_up(job_pk, task_id=self.request.id or "")
    return runner.run_from_message(job_pk, task_id=self.request.id or "")  # one wake-up per job: one job each
