"""The asyncio executor (AICORE_ENGINE_EXECUTOR=asyncio) with real worker processes.

Its own tests: many calls in flight in one process finish once each, cancel stops an in-flight call and closes
the provider's stream, a kill -9 with hundreds of calls in flight loses, duplicates and double-charges nothing.
And the threads path's worker tests (whole path, retries, cancel, duplicate delivery, brand fairness) run here
again, unchanged, on workers of this executor: this module's `workers` fixture starts them so. Not
test_the_worker_runs_the_wake_up_the_api_process_published: here a wake-up's claims may take a job before its own
wake-up arrives, so a job records the id of the wake-up that claimed it, not always its own.
"""

import pytest
from django.db import connection
from django.db.models import Count

from ai_core.models import AIJob, AIJobEvent
from ai_core.services import job_cancel
from ai_core.tests.engine.test_worker import (  # noqa: F401  (run again here, on asyncio workers)
    status_of,
    test_a_message_delivered_twice_runs_the_job_once,
    test_cancel_reaches_running_jobs_and_frees_their_slots,
    test_one_brands_backlog_does_not_starve_another_brands_job,
    test_retries_permanent_failures_and_timeouts_end_in_the_right_state,
    worker,
)
from ai_usage.models import AIJobUsage
from testing.jobs import all_final, assert_sane_history, bulk_submit, event_trail, submit, wait_for
from testing.workers import WorkerProcesses, purge_broker

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
# A pool of 8: the executor's 4 database threads, and room for the watcher and the upkeep (aio.db_threads).
ASYNCIO = {"AICORE_ENGINE_EXECUTOR": "asyncio", "AICORE_ENGINE_DRAIN_SECONDS": "5", "DB_POOL_MAX_SIZE": "8"}


class AsyncioWorkers(WorkerProcesses):
    """Workers of the asyncio executor; a worker of `concurrency` slots runs that many calls at once (its
    AICORE_ENGINE_IN_FLIGHT), as a threads worker would, unless the test says otherwise."""

    def start(self, *, concurrency: int = 4, **env: str):
        return super().start(concurrency=2, **{"AICORE_ENGINE_IN_FLIGHT": str(concurrency), **env})

    def env(self, **overrides: str) -> dict[str, str]:
        return super().env(**{**ASYNCIO, **overrides})


@pytest.fixture(scope="module")
def workers(django_db_setup, django_db_blocker, tmp_path_factory):
    pool = AsyncioWorkers(tmp_path_factory.mktemp("aio-workers"))
    yield pool
    pool.stop_all()


def test_one_process_runs_hundreds_of_calls_at_once_each_once(workers, job_types, make_brands):
    workers.stop_all()  # the threads path's tests' worker (the `worker` fixture) is done
    purge_broker()
    brands = make_brands(3)
    count = 300 if connection.vendor == "postgresql" else 60
    proc = workers.start(concurrency=count)
    workers.wait_ready(proc)
    pks = bulk_submit([(brands[i % 3], "normal") for i in range(count)], echo={"delay_ms": 6000, "chunks": 6})
    # Every call waits 6 s: a third of them running at once are in flight together in the one process.
    wait_for(
        lambda: AIJob.objects.filter(status="running").count() > count // 3,
        timeout=60,
        what=lambda: f"most calls in flight at once\n{workers.logs()}",
    )
    wait_for(lambda: all_final(pks), timeout=120, what=lambda: f"every job to end\n{workers.logs()}")
    assert set(AIJob.objects.filter(pk__in=pks).values_list("status", flat=True)) == {"completed"}
    for job in AIJob.objects.filter(pk__in=pks):  # one completion each (a job the reaper re-queued under a
        assert_sane_history(job, max_attempts=3)  # loaded machine's late heartbeat ran again, completed once)
    usage = AIJobUsage.objects.filter(job_id__in=pks).values("job_id").annotate(n=Count("id"))
    assert sorted(row["n"] for row in usage) == [1] * count  # each charged once
    workers.stop_all()


def test_cancel_stops_an_in_flight_provider_stream(workers, job_types, make_brands, llm_env):
    workers.stop_all()
    purge_broker()
    (brand,) = make_brands(1)
    fake = llm_env
    proc = workers.start(
        concurrency=4, OPENAI_API_KEY="sk-worker", OPENAI_BASE_URL=fake.openai_base_url, AICORE_MAX_JOB_SECONDS="120"
    )
    workers.wait_ready(proc)
    job = submit(
        brand, model="gpt-4o-mini", max_tokens=50, messages=[{"role": "user", "content": "[fake trickle=0.1]"}]
    )
    wait_for(lambda: fake.trickling == 1, timeout=30, what=lambda: f"the call in flight\n{workers.logs()}")
    job_cancel(job_pk=job.pk)
    # The 2 s a cancel may take to reach the call, and the fake's next chunk (0.1 s) to see the closed stream.
    wait_for(lambda: fake.trickling == 0, timeout=2.1, what="the provider stream to be closed")
    job.refresh_from_db()
    assert job.status == "cancelled" and job.result_data is None
    assert [e[1] for e in event_trail(job.pk)] == ["pending", "running", "cancelled"], list(
        AIJobEvent.objects.filter(job_id=job.pk).values_list("to_status", "reason")
    )
    workers.stop_all()


def test_kill_9_with_hundreds_of_calls_in_flight_loses_and_doubles_nothing(workers, job_types, make_brands):
    workers.stop_all()
    purge_broker()
    brands = make_brands(4)
    count = 400 if connection.vendor == "postgresql" else 60
    victim = workers.start(concurrency=count)
    workers.wait_ready(victim)
    pks = bulk_submit([(brands[i % 4], "normal") for i in range(count)], echo={"delay_ms": 6000, "chunks": 6})
    wait_for(
        lambda: AIJob.objects.filter(status="running").count() > count // 3,
        timeout=60,
        what=lambda: f"calls in flight\n{workers.logs()}",
    )
    workers.kill(victim)  # kill -9: its calls, its queued finishes and its acked wake-ups are gone with it
    survivor = workers.start(concurrency=count)
    wait_for(lambda: all_final(pks), timeout=180, what=lambda: f"every job to end\n{workers.logs()}")
    reaped = 0
    for job in AIJob.objects.filter(pk__in=pks):
        assert job.status in {"completed", "failed"}, (job.status, job.error_code)
        assert job.status == "completed" or job.error_code == "WORKER_LOST"
        assert_sane_history(job, max_attempts=3)
        reaped += job.attempts > 1 or job.status == "failed"
    assert reaped >= 1  # the kill hit calls in flight, and they were recovered
    usage = dict(AIJobUsage.objects.filter(job_id__in=pks).values_list("job_id").annotate(n=Count("id")))
    for pk in AIJob.objects.filter(pk__in=pks, status="completed").values_list("pk", flat=True):
        assert usage.get(pk) == 1  # a completed job is charged once, whatever attempt completed it
    assert survivor.poll() is None
    workers.stop_all()
