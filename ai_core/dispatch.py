"""Waking workers. The job row is the truth: a lost or failed publish only delays a job until the sweeper
re-dispatches it, so publishing never fails a request."""

import logging

from django.db import transaction

logger = logging.getLogger(__name__)

RUN_JOB_TASK = "ai_core.run_job"


def publish_job(job_pk: int, *, priority: str = "normal", countdown: float | None = None) -> None:
    from config.celery_app import app

    try:
        app.send_task(RUN_JOB_TASK, args=[job_pk], countdown=countdown)
    except Exception:  # the broker is down or slow: the sweeper will pick the job up later
        logger.warning("could not publish job %s; the sweeper will re-dispatch it", job_pk, exc_info=True)


def dispatch_job_on_commit(job_pk: int, *, priority: str = "normal") -> None:
    """Publish after the surrounding transaction commits, so a worker never sees a job that isn't there."""
    transaction.on_commit(lambda: publish_job(job_pk, priority=priority))
