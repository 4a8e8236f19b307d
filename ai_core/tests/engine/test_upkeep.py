"""ai_core.engine.upkeep: the reaper (silent and overdue jobs, attempt fencing) and the sweeper (lost wake-ups)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from ai_core.engine.claim import claim_next
from ai_core.engine.upkeep import TRICKLE, reap, sweep
from ai_core.models import AIJob
from ai_core.services import job_complete, job_progress, job_start
from ai_core.workflow import StaleAttempt
from testing.jobs import submit


def test_the_reaper_requeues_then_fails_silent_jobs_and_times_out_overdue_ones(job_types, make_brands):
    (brand,) = make_brands(1)
    silent, last_try, overdue, healthy = (submit(brand) for _ in range(4))
    for job in (silent, last_try, overdue, healthy):
        job_start(job_pk=job.pk)
    AIJob.objects.filter(pk=last_try.pk).update(attempts=3)
    long_ago = timezone.now() - timedelta(hours=1)
    AIJob.objects.filter(pk__in=[silent.pk, last_try.pk]).update(heartbeat_at=long_ago)
    AIJob.objects.filter(pk=overdue.pk).update(started_at=long_ago)  # still beating, but way past 60 s

    assert reap() == {"requeued": 1, "failed": 1, "timeout": 1}
    statuses = dict(AIJob.objects.values_list("pk", "status"))
    assert statuses == {
        silent.pk: "pending",
        last_try.pk: "failed",
        overdue.pk: "timeout",
        healthy.pk: "running",
    }
    assert AIJob.objects.get(pk=last_try.pk).error_code == "WORKER_LOST"
    assert reap() == {"requeued": 0, "failed": 0, "timeout": 0}

    # The lost worker comes back to life: its late writes are fenced off by the attempt number.
    second = claim_next()
    assert (second.job_pk, second.attempt) == (silent.pk, 2)
    assert not job_progress(job_pk=silent.pk, attempt=1, percentage=50)
    with pytest.raises(StaleAttempt):
        job_complete(job_pk=silent.pk, attempt=1, result_data={"completion": "late"})
    assert AIJob.objects.get(pk=silent.pk).result_data is None


def test_the_sweeper_redispatches_pending_jobs_whose_wake_up_was_lost(job_types, make_brands):
    (brand,) = make_brands(1)
    forgotten, fresh = submit(brand), submit(brand)
    AIJob.objects.filter(pk=forgotten.pk).update(available_at=timezone.now() - timedelta(minutes=10))
    assert sweep() == 1
    assert AIJob.objects.get(pk=forgotten.pk).available_at > timezone.now() - timedelta(minutes=1)
    assert sweep() == 0  # re-published at most once per period
    assert AIJob.objects.get(pk=fresh.pk).available_at < timezone.now()


def test_while_jobs_run_the_sweeper_only_trickles_wake_ups_into_a_backlog(job_types, make_brands):
    (brand,) = make_brands(1)
    backlog = [submit(brand) for _ in range(TRICKLE + 5)]
    job_start(job_pk=backlog.pop().pk)
    AIJob.objects.filter(status="pending").update(available_at=timezone.now() - timedelta(minutes=10))
    assert sweep() == TRICKLE
