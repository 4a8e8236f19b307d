"""Waking workers. The job row is the truth: a lost or failed publish only delays a job until the sweeper
re-dispatches it, so publishing never fails a request."""

import logging
import os
import threading

from celery import current_app
from django.conf import settings
from django.db import transaction

from kernel.adapters.celery import OneIntTaskPublisher

logger = logging.getLogger(__name__)

RUN_JOB_TASK = "ai_core.run_job"


class WakeUps(OneIntTaskPublisher):
    """`run_job(job_pk)` messages, built once and published through kept producers (kernel/adapters/celery.py)."""

    def __init__(self, app) -> None:
        super().__init__(app, RUN_JOB_TASK)


_wake_ups: WakeUps | None = None


def _forget_wake_ups() -> None:
    global _wake_ups
    _wake_ups = None  # a forked child must not write on its parent's broker sockets


os.register_at_fork(after_in_child=_forget_wake_ups)


def publish_job(job_pk: int, *, priority: str = "normal", countdown: float | None = None) -> None:
    """Wake a worker now (through WakeUps), or after `countdown` seconds (a retry's backoff, via send_task).
    AICORE_DIRECT_WAKE_UPS=0: always through send_task, Celery's public path (the benchmarks' comparison)."""
    global _wake_ups
    app = current_app  # the project's app (config/celery_app.py makes it the default in every thread)
    try:
        if countdown is None and settings.AICORE_DIRECT_WAKE_UPS:
            wake_ups = _wake_ups or WakeUps(app)
            _wake_ups = wake_ups
            if wake_ups.usable():
                wake_ups.publish(job_pk)
                return
        app.send_task(RUN_JOB_TASK, args=[job_pk], countdown=countdown)
    except Exception:  # the broker is down or slow: the sweeper will pick the job up later
        logger.warning("could not publish job %s; the sweeper will re-dispatch it", job_pk, exc_info=True)


def dispatch_job_on_commit(job_pk: int, *, priority: str = "normal") -> None:
    """Publish after the surrounding transaction commits, so a worker never sees a job that isn't there."""
    transaction.on_commit(lambda: publish_job(job_pk, priority=priority))


def dispatch_jobs_on_commit(job_pks: list[int]) -> None:
    """Wake a worker per job after commit (bulk creation): a wake-up claims one job, so each job needs one.

    Published by a thread of their own, so the request answers once its rows are committed: 10 000 wake-ups
    took longer than writing the 10 000 jobs. Workers start on the first ones meanwhile; wake-ups lost to a
    process that stops midway are the sweeper's, as any lost publish (the job row is the truth).
    """
    pks = list(job_pks)
    if not pks:
        return

    def publish_all() -> None:
        for pk in pks:
            publish_job(pk)

    def start() -> None:
        if len(pks) <= BULK_WAKE_UPS_INLINE:
            publish_all()
        else:
            threading.Thread(target=publish_all, name="aicore-bulk-wake-ups", daemon=True).start()

    transaction.on_commit(start)


BULK_WAKE_UPS_INLINE = 100  # fewer than this are published before the request answers
