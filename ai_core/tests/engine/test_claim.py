"""ai_core.engine.claim (and the runner's claim of a given job): priority, fairness, the compare-and-set."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from ai_core.engine.claim import claim_next
from ai_core.engine.runner import claim_job
from ai_core.models import AIJob
from ai_core.services import job_cancel, job_type_by_pk
from ai_core.workflow import IllegalTransition
from testing.jobs import event_trail, submit


def test_claiming_a_given_job_reads_it_in_the_same_statement_on_postgresql(job_types, make_brands):
    (brand,) = make_brands(1)
    job = submit(brand)
    job_type_by_pk(job.job_type_id)  # the per-process memo, read once

    with CaptureQueriesContext(connection) as queries:
        attempt, claimed = claim_job(job.pk, task_id="gateway:t")

    assert attempt == 1
    assert [to for _, to, _ in event_trail(job.pk)] == ["pending", "running"]  # the workflow's compare-and-set
    with pytest.raises(IllegalTransition):  # a second claim of the same job is refused
        claim_job(job.pk, task_id="gateway:u")
    if connection.vendor != "postgresql":
        assert claimed is None  # execute reads it
        return
    on_the_job = [q["sql"] for q in queries.captured_queries if re.search(r"\bai_core_aijob\b", q["sql"])]
    assert len(on_the_job) == 1  # the claim itself: the job is not read again
    assert (claimed.pk, claimed.status, claimed.attempts, claimed.task_id) == (job.pk, "running", 1, "gateway:t")
    assert claimed.company_id == brand.company_id and claimed.holds_quota_reservation is False


def test_claims_follow_priority_urgent_first(job_types, make_brands):
    (brand,) = make_brands(1)
    jobs = {p: submit(brand, priority=p) for p in ["low", "normal", "high", "urgent"]}
    claimed = [claim_next().job_pk for _ in range(4)]
    assert claimed == [jobs[p].pk for p in ["urgent", "high", "normal", "low"]]
    assert claim_next() is None


def test_a_brand_with_a_backlog_does_not_starve_a_single_job_of_another_brand(job_types, make_brands):
    busy, quiet = make_brands(2)
    backlog = [submit(busy) for _ in range(30)]
    single = submit(quiet)
    first_two = {claim_next().job_pk for _ in range(2)}
    assert single.pk in first_two
    rest = [claim_next().job_pk for _ in range(29)]
    assert rest == sorted(rest) and set(rest) | first_two == {j.pk for j in backlog} | {single.pk}  # oldest first


def test_cancelled_or_not_yet_available_jobs_are_never_claimed(job_types, make_brands):
    (brand,) = make_brands(1)
    cancelled = submit(brand)
    job_cancel(job_pk=cancelled.pk)
    later = submit(brand)
    AIJob.objects.filter(pk=later.pk).update(available_at=timezone.now() + timedelta(minutes=5))
    assert claim_next() is None
    assert AIJob.objects.get(pk=cancelled.pk).attempts == 0
