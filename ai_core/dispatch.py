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
    """Publish after the surrounding transaction commits, so a worker never sees a job that isn't there; at once
    outside a transaction. The jobs made claimable in one transaction share its wake-ups (publish_jobs)."""
    dispatch_jobs_on_commit([job_pk])


def dispatch_jobs_on_commit(job_pks: list[int]) -> None:
    """Wake workers for these jobs once the surrounding transaction commits (at once outside one); the wake-ups
    of one transaction's jobs share its budget (_Coalesced)."""
    pks = list(job_pks)
    if not pks:
        return
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        publish_jobs(pks)
        return
    _Coalesced.of(connection).on_commit(connection, pks)


def publish_jobs(job_pks: list[int]) -> None:
    """Wake workers for jobs now claimable: at most AICORE_WAKE_UPS_PER_COMMIT wake-ups (0: one per job), enough
    for every worker to wake. A woken worker keeps claiming while jobs are claimable (runner.run_wake_up, the
    asyncio executor's claim loop), so fewer wake-ups than jobs strand none; the broker carries a few messages
    where it carried one per job.

    More than BULK_WAKE_UPS_INLINE are published by a thread of their own, so the request answers once its rows
    are committed. Wake-ups lost to a process that stops midway are the sweeper's, as any lost publish."""
    bound = settings.AICORE_WAKE_UPS_PER_COMMIT
    pks = list(job_pks)[:bound] if bound else list(job_pks)

    def publish_all() -> None:
        for pk in pks:
            publish_job(pk)

    if len(pks) <= BULK_WAKE_UPS_INLINE:
        publish_all()
    else:
        threading.Thread(target=publish_all, name="aicore-bulk-wake-ups", daemon=True).start()


BULK_WAKE_UPS_INLINE = 100  # fewer than this are published before the request answers


class _Coalesced:
    """The wake-ups of one transaction. Each dispatch registers its own on_commit callback with its jobs (Django's
    public API: a rolled-back savepoint drops its callbacks together with its jobs), and the callbacks of one
    transaction share its budget of AICORE_WAKE_UPS_PER_COMMIT wake-ups (0: no bound, one per job).

    One per connection at a time: the first of its callbacks to run marks it committed, so the next transaction's
    dispatch starts another. A transaction rolled back whole published nothing: the next one may go on with it."""

    def __init__(self) -> None:
        self.published = 0
        self.committed = False

    @classmethod
    def of(cls, connection) -> "_Coalesced":
        current = getattr(connection, "aicore_wake_ups", None)
        if current is None or current.committed:
            current = cls()
            connection.aicore_wake_ups = current
        return current

    def on_commit(self, connection, pks: list[int]) -> None:
        transaction.on_commit(lambda: self.publish(pks), using=connection.alias)

    def publish(self, pks: list[int]) -> None:
        self.committed = True
        bound = settings.AICORE_WAKE_UPS_PER_COMMIT  # read at commit, as publish_jobs does
        if bound:
            pks = pks[: max(0, bound - self.published)]
        self.published += len(pks)
        if pks:
            publish_jobs(pks)
