"""Coalesced wake-ups (dispatch.publish_jobs): the jobs one transaction makes claimable publish a few wake-ups,
counted on the broker of the pass, and workers of both executors still run every one of them, in priority
order, through a kill -9 of a worker mid-queue."""

import pytest
from django.db import transaction

from ai_core.dispatch import dispatch_jobs_on_commit
from ai_core.engine import runner
from ai_core.engine.upkeep import reap, sweep
from ai_core.models import AIJob, AIJobEvent
from ai_core.services import job_start
from ai_core.tests.engine.test_aio import AsyncioWorkers
from config.celery_app import app
from testing.jobs import all_final, assert_sane_history, bulk_submit, submit, wait_for
from testing.workers import WorkerProcesses, purge_broker

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
WAKE_UPS = 3  # the API side's AICORE_WAKE_UPS_PER_COMMIT in this module


@pytest.fixture
def broker(settings):
    settings.AICORE_WAKE_UPS_PER_COMMIT = WAKE_UPS
    purge_broker()
    yield
    purge_broker()


def queued() -> int:
    """The wake-ups waiting in the broker (what publishing reached it with)."""
    with app.connection_for_read() as connection:
        queue = connection.SimpleQueue(app.conf.task_default_queue)
        try:
            return queue.queue.queue_declare().message_count  # not passive: Redis keeps no empty queue
        finally:
            queue.close()


def test_jobs_created_in_one_transaction_publish_a_bounded_number_of_wake_ups(broker, job_types, make_brands):
    (brand,) = make_brands(1)
    with transaction.atomic():
        jobs = [submit(brand) for _ in range(40)]
        assert queued() == 0  # nothing before the commit
    assert queued() == WAKE_UPS
    with transaction.atomic():
        submit(brand)
    assert queued() == WAKE_UPS + 1  # one job, one wake-up
    submit(brand)  # no transaction: published at once
    assert queued() == WAKE_UPS + 2
    assert AIJob.objects.filter(pk__in=[j.pk for j in jobs], status="pending").count() == 40


def test_a_rolled_back_savepoint_does_not_take_the_transactions_wake_ups_with_it(broker, job_types, make_brands):
    (brand,) = make_brands(1)
    with transaction.atomic():
        try:
            with transaction.atomic():  # the transaction's first dispatch, in a savepoint rolled back
                submit(brand)
                raise RuntimeError("rolled back")
        except RuntimeError:
            pass
        kept = [submit(brand) for _ in range(5)]
    assert queued() == WAKE_UPS
    with transaction.atomic():
        submit(brand)
        transaction.set_rollback(True)
    assert queued() == WAKE_UPS  # the whole transaction rolled back: its wake-ups with it
    assert AIJob.objects.filter(brand=brand).count() == len(kept)


def test_the_bound_is_the_one_in_force_at_commit(broker, job_types, make_brands, settings):
    (brand,) = make_brands(1)
    settings.AICORE_WAKE_UPS_PER_COMMIT = 0  # one per job, in a transaction rolled back whole
    with transaction.atomic():
        submit(brand)
        transaction.set_rollback(True)
    settings.AICORE_WAKE_UPS_PER_COMMIT = WAKE_UPS
    with transaction.atomic():
        kept = [submit(brand) for _ in range(10)]
    assert queued() == WAKE_UPS
    assert AIJob.objects.filter(brand=brand).count() == len(kept)


def test_a_bulk_creation_and_the_sweeper_and_the_reaper_publish_a_bounded_number(broker, job_types, make_brands):
    brands = make_brands(2)
    pks = bulk_submit([(brands[i % 2], "normal") for i in range(50)])
    assert queued() == WAKE_UPS
    with transaction.atomic():  # two bulk creations in one transaction: still its few wake-ups
        dispatch_jobs_on_commit(pks[:20])
        dispatch_jobs_on_commit(pks[20:])
    assert queued() == 2 * WAKE_UPS
    purge_broker()
    AIJob.objects.filter(pk__in=pks).update(available_at="2000-01-01T00:00:00Z")
    assert sweep() == 50 and queued() == WAKE_UPS
    purge_broker()
    for pk in pks[:10]:
        job_start(job_pk=pk)
    AIJob.objects.filter(pk__in=pks[:10]).update(heartbeat_at="2000-01-01T00:00:00Z")
    assert reap()["requeued"] == 10 and queued() == WAKE_UPS


def test_a_wake_up_runs_jobs_until_none_is_claimable_then_hands_on_none(broker, job_types, make_brands, settings):
    (brand,) = make_brands(1)
    pks = bulk_submit([(brand, "normal")] * 5)
    purge_broker()
    assert runner.run_wake_up(0) == "completed"
    assert all_final(pks) and queued() == 0  # the queue drained: nothing handed on


def test_a_wake_up_stopped_by_its_bound_or_a_shutdown_hands_on_one(broker, job_types, make_brands, settings):
    (brand,) = make_brands(1)
    pks = bulk_submit([(brand, "normal")] * 5)
    purge_broker()
    settings.AICORE_WAKE_UP_MAX_JOBS = 2
    assert runner.run_wake_up(0) == "completed"
    assert AIJob.objects.filter(pk__in=pks, status="completed").count() == 2 and queued() == 1
    runner.shutting_down.set()  # a warm shutdown: the running job ends, no other starts
    try:
        runner.run_wake_up(0)
    finally:
        runner.shutting_down.clear()
    assert AIJob.objects.filter(pk__in=pks, status="completed").count() == 3 and queued() == 2


# --- real workers of each executor -----------------------------------------------------------------------


class ThreadsWorkers(WorkerProcesses):
    """Workers of the threads executor, whatever the executor of the environment the tests run in."""

    def env(self, **overrides: str) -> dict[str, str]:
        return super().env(**{"AICORE_ENGINE_EXECUTOR": "threads", **overrides})


EXECUTORS = {"threads": ThreadsWorkers, "asyncio": AsyncioWorkers}
NO_SWEEP = {"AICORE_SWEEP_PENDING_AFTER_MS": "600000"}  # the wake-ups alone must run every job
COALESCED = {"AICORE_WAKE_UPS_PER_COMMIT": str(WAKE_UPS)}  # the workers drain on shared wake-ups (threads: opt-in)


@pytest.fixture(params=sorted(EXECUTORS))
def pool(request, tmp_path):
    workers = EXECUTORS[request.param](tmp_path)
    yield workers
    workers.stop_all()


def test_one_worker_of_each_executor_runs_every_job_of_a_few_wake_ups(pool, broker, job_types, make_brands):
    brands = make_brands(3)
    pks = bulk_submit([(brands[i % 3], "normal") for i in range(150)], echo={"delay_ms": 20})
    assert queued() == WAKE_UPS
    # The threads' wake-ups hand on past 7 jobs.
    pool.start(concurrency=4, AICORE_WAKE_UP_MAX_JOBS="7", **NO_SWEEP, **COALESCED)
    wait_for(lambda: all_final(pks), timeout=120, what=lambda: f"150 jobs on {WAKE_UPS} wake-ups\n{pool.logs()}")
    assert set(AIJob.objects.filter(pk__in=pks).values_list("status", "attempts")) == {("completed", 1)}


def test_with_a_few_wake_ups_jobs_still_start_in_priority_order(pool, broker, job_types, make_brands):
    (brand,) = make_brands(1)
    priorities = ["low", "normal", "high", "urgent"] * 5
    pks = bulk_submit([(brand, priority) for priority in priorities])
    pool.start(concurrency=1, **NO_SWEEP, **COALESCED)  # one job at a time: the order of starts is the claims' order
    wait_for(lambda: all_final(pks), timeout=60, what=lambda: f"the jobs to finish\n{pool.logs()}")
    started = AIJobEvent.objects.filter(job_id__in=pks, to_status="running").order_by("id")
    order = [AIJob.objects.get(pk=job_id).priority for job_id in started.values_list("job_id", flat=True)]
    assert order == ["urgent"] * 5 + ["high"] * 5 + ["normal"] * 5 + ["low"] * 5


def test_kill_9_of_a_worker_mid_queue_leaves_no_job_behind(pool, broker, job_types, make_brands):
    brands = make_brands(2)
    pks = bulk_submit([(brands[i % 2], "normal") for i in range(120)], echo={"delay_ms": 300, "chunks": 3})
    doomed, survivor = pool.start(concurrency=4, **COALESCED), pool.start(concurrency=4, **COALESCED)
    pool.wait_ready(doomed, survivor)
    wait_for(
        lambda: AIJob.objects.filter(pk__in=pks, status="completed").count() >= 10,
        timeout=60,
        what=lambda: f"the queue to be under way\n{pool.logs()}",
    )
    pool.kill(doomed)
    wait_for(lambda: all_final(pks), timeout=120, what=lambda: f"every job to end\n{pool.logs()}")
    for job in AIJob.objects.filter(pk__in=pks):
        assert job.status == "completed", (job.status, job.error_code)
        assert_sane_history(job, max_attempts=3)
