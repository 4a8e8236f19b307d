"""The PostgreSQL + Redis pass only: many workers and jobs, races, and a broker that goes away."""

import random
import threading
import time
from collections import Counter

import pytest
from django.db import connection

from ai_core.models import AIJob, AIJobEvent
from ai_core.services import job_cancel
from business.errors import Conflict
from testing.jobs import all_final, assert_sane_history, bulk_submit, submit, wait_for
from testing.workers import purge_broker

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
PRIORITIES = ["low", "normal", "high", "urgent"]


def test_three_workers_complete_2000_jobs_of_5_brands_exactly_once(workers, job_types, make_brands):
    purge_broker()
    brands = make_brands(5)
    pks = bulk_submit([(brands[i % 5], PRIORITIES[i % 4]) for i in range(2000)], echo={"delay_ms": 0})
    # Nothing crashes here: the default engine periods (no 2 s re-dispatch of a legitimately old backlog).
    defaults = {
        "AICORE_HEARTBEAT_MS": "5000",
        "AICORE_CANCEL_POLL_MS": "500",
        "AICORE_REAP_AFTER_MS": "30000",
        "AICORE_SWEEP_INTERVAL_MS": "5000",
        "AICORE_SWEEP_PENDING_AFTER_MS": "30000",
        "DB_POOL_MAX_SIZE": "8",
    }
    for _ in range(3):
        workers.start(concurrency=8, **defaults)
    wait_for(lambda: all_final(pks), timeout=240, every=0.5, what="2000 jobs to finish")
    workers.stop_all()

    assert Counter(AIJob.objects.filter(pk__in=pks).values_list("status", "attempts")) == {("completed", 1): 2000}
    events = Counter(AIJobEvent.objects.filter(job_id__in=pks).values_list("to_status", flat=True))
    assert events == {"pending": 2000, "running": 2000, "completed": 2000}
    per_job = Counter(AIJobEvent.objects.filter(job_id__in=pks, to_status="completed").values_list("job_id", flat=True))
    assert set(per_job.values()) == {1}
    assert len(set(AIJob.objects.filter(pk__in=pks).values_list("task_id", flat=True))) > 1


def test_cancels_racing_claims_and_completions_leave_one_consistent_outcome(workers, job_types, make_brands):
    purge_broker()
    brands = make_brands(2)
    rng = random.Random()
    for _ in range(2):
        workers.start(concurrency=8)
    warm_up = submit(brands[0])
    wait_for(lambda: all_final([warm_up.pk]), timeout=60, what="the workers to start")
    # Claims and completions run while we cancel: some jobs are still pending, some running, some done.
    jobs = [submit(brands[i % 2], echo={"delay_ms": rng.choice([0, 50, 300, 1000])}) for i in range(240)]
    rng.shuffle(jobs)
    outcomes = Counter()

    def cancel_some(share):
        for job in share:
            time.sleep(rng.uniform(0, 0.02))
            try:
                job_cancel(job_pk=job.pk)
                outcomes["cancelled"] += 1
            except Conflict:
                outcomes["too late"] += 1
        connection.close()

    threads = [threading.Thread(target=cancel_some, args=(jobs[i::3],)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wait_for(lambda: all_final(j.pk for j in jobs), timeout=90, what="every job to end")
    workers.stop_all()

    statuses = Counter()
    ran_then_cancelled = 0
    for job in AIJob.objects.filter(pk__in=[j.pk for j in jobs]):
        assert_sane_history(job, max_attempts=3)
        statuses[job.status] += 1
        if job.status == "cancelled":
            assert job.result_data is None
            ran_then_cancelled += job.attempts > 0
        else:
            assert job.status == "completed" and job.result_data["completion"] == "Echo: hello"
    assert statuses["cancelled"] == outcomes["cancelled"] and statuses["completed"] == outcomes["too late"]
    assert statuses["cancelled"] and statuses["completed"]  # both sides of the race actually happened


def test_wake_ups_reach_a_redis_that_restarted_under_their_kept_connection(private_redis):
    from celery import Celery

    from ai_core.dispatch import WakeUps

    private = Celery("private-broker", set_as_current=False)
    private.config_from_object("django.conf:settings", namespace="CELERY")
    private.conf.broker_url = private.conf.broker_read_url = private.conf.broker_write_url = private_redis.url

    def restart(*, publishing_while_down: int | None = None):
        private_redis.stop()  # the kept connection's socket dies, and the queue with it
        if publishing_while_down is not None:
            with pytest.raises(Exception):  # noqa: B017 - whatever the transport raises; publish_job logs it
                wake_ups.publish(publishing_while_down)
        private_redis.start()

    wake_ups = WakeUps(private)
    wake_ups.publish(1)
    restart()
    wake_ups.publish(2)  # through the kept connection, reconnected
    restart(publishing_while_down=3)
    wake_ups.publish(4)  # the failed connection was dropped: a new one

    with private.connection_for_read() as connection:
        queue = connection.SimpleQueue(private.conf.task_default_queue)
        received = [queue.get(timeout=10) for _ in range(queue.qsize())]
        for message in received:
            message.ack()
        queue.close()
    assert [m.decode()[0] for m in received] == [[4]]  # 2 was lost with the second restart, as Redis forgets
    assert len(wake_ups._idle) == 1
    wake_ups._idle.pop().connection.release()
