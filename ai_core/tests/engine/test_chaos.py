"""Workers die (kill -9) in the middle of running jobs; every job still ends exactly once, and jobs
cancelled while pending never run, across all those restarts. On each executor: asyncio (the default) and
threads.

The SQLite pass runs one kill; the PostgreSQL + Redis pass runs several, at random moments.
"""

import random
import time

import pytest
from django.db import connection

from ai_core.models import AIJob
from ai_core.services import job_cancel
from testing.jobs import all_final, assert_sane_history, event_trail, submit, wait_for
from testing.workers import purge_broker

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("executor", ["asyncio", "threads"])
def test_killing_workers_mid_job_loses_nothing_and_runs_nothing_twice(executor, workers, job_types, make_brands):
    # 8 jobs at most at once per worker on either executor (threads: its pool; asyncio: its calls in flight, else
    # one worker's claim could take every job and the kill hit an idle one).
    eight = {"concurrency": 8, "AICORE_ENGINE_IN_FLIGHT": "8", "AICORE_ENGINE_EXECUTOR": executor}
    purge_broker()
    rng = random.Random()
    (brand,) = make_brands(1)
    doomed = [submit(brand) for _ in range(3)]
    for job in doomed:  # cancelled while pending, their wake-ups still queued: they must never run
        job_cancel(job_pk=job.pk)
    live = [workers.start(**eight), workers.start(**eight)]
    workers.wait_ready(*live)  # both consume from the start, so each one runs some of the jobs
    rounds = 3 if connection.vendor == "postgresql" else 1
    jobs = [submit(brand, echo={"delay_ms": 3000, "chunks": 10}) for _ in range(8 + 8 * rounds)]
    for _ in range(rounds):
        wait_for(
            lambda: AIJob.objects.filter(status="running").count() > 8,
            timeout=60,
            what="jobs running on the workers",
        )
        time.sleep(rng.uniform(0, 0.5))
        victim = rng.choice(live)  # over 8 jobs running on workers of 8: each one runs some
        workers.kill(victim)
        live.remove(victim)
        live.append(workers.start(**eight))
    wait_for(lambda: all_final(j.pk for j in jobs), timeout=120, what=lambda: f"every job to end\n{workers.logs()}")

    assert not AIJob.objects.filter(status="running").exists()
    reaped = 0
    for job in AIJob.objects.filter(pk__in=[j.pk for j in jobs]):
        assert job.status in {"completed", "failed"}, (job.status, job.error_code)
        assert job.status == "completed" or job.error_code == "WORKER_LOST"
        assert_sane_history(job, max_attempts=3)
        reaped += job.attempts > 1 or job.status == "failed"
    assert reaped >= 1  # the kill really hit running jobs, and they were recovered
    for job in AIJob.objects.filter(pk__in=[j.pk for j in doomed]):
        assert job.status == "cancelled" and job.attempts == 0
        assert [e[1] for e in event_trail(job.pk)] == ["pending", "cancelled"]
    workers.stop_all()
