"""The job state machine (SPEC §6): every pair of states, events, timestamps, DB constraints, attempt fencing,
and the JobDailyStat roll-up staying equal to the job rows."""

from collections import Counter
from datetime import timedelta
from itertools import product

import pytest
from django.db import IntegrityError, transaction
from django.db.models import Count
from django.utils import timezone

from ai_core import services
from ai_core.models import FINAL_STATUSES, AIJob, AIJobEvent, JobDailyStat, JobStatus
from ai_core.tests.factories import AIJobFactory, AIJobTypeFactory
from ai_core.workflow import TRANSITIONS, IllegalTransition, StaleAttempt, can_transition, stats_compact, transition

S = JobStatus
LEGAL = {
    (S.PENDING, S.RUNNING),
    (S.PENDING, S.CANCELLED),
    (S.RUNNING, S.COMPLETED),
    (S.RUNNING, S.FAILED),
    (S.RUNNING, S.TIMEOUT),
    (S.RUNNING, S.CANCELLED),
    (S.RUNNING, S.PENDING),
}
ALL_PAIRS = list(product(S.values, S.values))


def test_the_transition_table_is_exactly_the_specified_one():
    assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == LEGAL
    assert all(not TRANSITIONS[final] for final in FINAL_STATUSES)


@pytest.mark.parametrize("current,to", [pair for pair in ALL_PAIRS if pair in LEGAL])
def test_a_legal_transition_writes_one_event_and_its_timestamps(personas, current, to):
    job = AIJobFactory(brand=personas.brand_a, created_by=personas.alice, status=current)
    events_before = job.events.count()

    done = transition(job.pk, to=to, reason="test", actor_id=personas.adam.id)

    job.refresh_from_db()
    assert job.status == to == done.to_status and done.from_status == current
    assert job.events.count() == events_before + 1
    event = job.events.order_by("id").last()
    assert (event.from_status, event.to_status, event.reason, event.actor_id) == (
        current,
        to,
        "test",
        personas.adam.id,
    )
    assert event.attempt == job.attempts
    if to == S.RUNNING:
        assert job.started_at == done.at and job.attempts == 1
    if to in FINAL_STATUSES:
        assert job.completed_at == done.at
    else:
        assert job.completed_at is None
    assert (job.cancelled_at == done.at) if to == S.CANCELLED else job.cancelled_at is None
    if to == S.COMPLETED:
        assert job.progress_percentage == 100


@pytest.mark.parametrize("current,to", [pair for pair in ALL_PAIRS if pair not in LEGAL])
def test_an_illegal_transition_raises_and_changes_nothing(personas, current, to):
    job = AIJobFactory(brand=personas.brand_a, created_by=personas.alice, status=current)
    row_before = AIJob.objects.filter(pk=job.pk).values().get()
    events_before = job.events.count()

    assert not can_transition(current, to)
    with pytest.raises(IllegalTransition) as raised:
        transition(job.pk, to=to)

    assert raised.value.current == current and raised.value.error_code == "ILLEGAL_TRANSITION"
    assert AIJob.objects.filter(pk=job.pk).values().get() == row_before
    assert job.events.count() == events_before


def test_expected_states_narrow_what_a_caller_accepts(personas):
    job = AIJobFactory(brand=personas.brand_a, status=S.RUNNING)

    with pytest.raises(IllegalTransition):
        services.job_start(job_pk=job.pk)  # running -> running is never legal; start expects pending


def test_a_transition_of_a_missing_job_is_not_found(db):
    from business.errors import NotFound

    with pytest.raises(NotFound):
        transition(987654, to=S.CANCELLED)


# --- attempt fencing ----------------------------------------------------------------------------------


def test_a_write_from_a_stale_attempt_is_rejected(personas):
    job = AIJobFactory(brand=personas.brand_a)
    first = services.job_start(job_pk=job.pk)
    services.job_requeue(job_pk=job.pk, attempt=first.attempt, reason="worker lost")
    second = services.job_start(job_pk=job.pk)
    assert second.attempt == first.attempt + 1

    with pytest.raises(StaleAttempt):
        services.job_complete(job_pk=job.pk, attempt=first.attempt, result_data={"zombie": True})
    assert services.job_progress(job_pk=job.pk, attempt=first.attempt, percentage=50) is False

    services.job_complete(job_pk=job.pk, attempt=second.attempt, result_data={"ok": True})
    job.refresh_from_db()
    assert job.status == S.COMPLETED and job.result_data == {"ok": True}


def test_progress_of_the_current_attempt_is_recorded_and_clamped(personas):
    job = AIJobFactory(brand=personas.brand_a)
    started = services.job_start(job_pk=job.pk)

    assert services.job_progress(job_pk=job.pk, attempt=started.attempt, percentage=250) is True
    job.refresh_from_db()
    assert job.progress_percentage == 100


def test_a_cancelled_running_job_refuses_its_workers_completion(personas):
    job = AIJobFactory(brand=personas.brand_a)
    started = services.job_start(job_pk=job.pk)
    services.job_cancel(job_pk=job.pk)

    with pytest.raises(IllegalTransition):
        services.job_complete(job_pk=job.pk, attempt=started.attempt, result_data={})
    assert AIJob.objects.get(pk=job.pk).status == S.CANCELLED


# --- database constraints -----------------------------------------------------------------------------


def _violates(job, **fields):
    with pytest.raises(IntegrityError), transaction.atomic():
        AIJob.objects.filter(pk=job.pk).update(**fields)


def test_the_database_refuses_inconsistent_rows(personas):
    pending = AIJobFactory(brand=personas.brand_a)
    done = AIJobFactory(brand=personas.brand_a, status=S.COMPLETED)
    now = timezone.now()

    _violates(pending, progress_percentage=101)
    _violates(pending, progress_percentage=-1)
    _violates(pending, status=S.COMPLETED)  # final without completed_at
    _violates(pending, completed_at=now)  # completed_at on a live job
    _violates(pending, status=S.CANCELLED, completed_at=now)  # cancelled without cancelled_at
    _violates(pending, cancelled_at=now)
    _violates(pending, status=S.RUNNING)  # running without started_at / attempt
    _violates(pending, status=S.RUNNING, started_at=now, attempts=0)
    _violates(done, status=S.PENDING)  # a final job going back without clearing completed_at
    _violates(pending, attempts=-1)

    AIJob.objects.filter(pk=pending.pk).update(idempotency_key="k")
    other = AIJobFactory(brand=personas.brand_a)
    _violates(other, idempotency_key="k")
    AIJob.objects.filter(pk=other.pk).update(idempotency_key=None)  # NULL keys never collide
    AIJobFactory(brand=personas.brand_b, idempotency_key="k")  # nor keys of another brand


def test_job_ids_are_unique_in_the_database(personas):
    first = AIJobFactory(brand=personas.brand_a)
    second = AIJobFactory(brand=personas.brand_a)

    _violates(second, job_id=first.job_id)


def test_job_types_refuse_zero_attempts_or_timeout(db):
    with pytest.raises(IntegrityError), transaction.atomic():
        AIJobTypeFactory(name="broken", max_attempts=0)
    with pytest.raises(IntegrityError), transaction.atomic():
        AIJobTypeFactory(name="broken", timeout_seconds=0)


# --- roll-up ------------------------------------------------------------------------------------------


def rollup_matches_rows():
    rollup = Counter()
    for row in JobDailyStat.objects.values("brand_id", "day", "job_type_id", "status", "jobs"):
        if row["jobs"]:
            rollup[(row["brand_id"], row["day"], row["job_type_id"], row["status"])] += row["jobs"]
    assert all(n >= 0 for n in rollup.values()), "a roll-up bucket went negative"
    rows = Counter()
    for row in AIJob.objects.values("brand_id", "job_type_id", "status", "created_at").annotate(n=Count("id")):
        rows[(row["brand_id"], timezone.localdate(row["created_at"]), row["job_type_id"], row["status"])] += row["n"]
    assert rollup == rows


def test_the_rollup_equals_a_group_by_over_the_jobs_after_a_mixed_history(personas):
    types = [AIJobTypeFactory(name="chat_completion"), AIJobTypeFactory(name="text_generation")]
    jobs = []
    for i in range(24):
        created_at = timezone.now() - timedelta(days=i % 3) if i % 4 == 0 else None
        jobs.append(
            AIJobFactory(
                brand=(personas.brand_a, personas.brand_b)[i % 2],
                job_type=types[i % 3 == 0],
                status=S.values[i % len(S.values)],
                created_at=created_at,
            )
        )
    rollup_matches_rows()

    for job in jobs:
        job.refresh_from_db()
        if job.status == S.PENDING:
            started = services.job_start(job_pk=job.pk)
            services.job_requeue(job_pk=job.pk, attempt=started.attempt, reason="retry")
        elif job.status == S.RUNNING:
            services.job_fail(job_pk=job.pk, attempt=job.attempts, error_message="boom")
    rollup_matches_rows()

    for job in jobs[::3]:
        if AIJob.objects.get(pk=job.pk).status != S.RUNNING:
            services.job_delete(job=AIJob.objects.get(pk=job.pk))
    for job in AIJob.objects.filter(status=S.PENDING):
        services.job_cancel(job_pk=job.pk)
    rollup_matches_rows()
    assert AIJobEvent.objects.filter(to_status=S.CANCELLED).count() == AIJob.objects.filter(status=S.CANCELLED).count()


def test_compaction_folds_each_key_into_one_row_and_keeps_every_sum(personas):
    """The roll-up is append-only (a row of deltas per write); stats_compact folds a key's rows into one."""
    job_type = AIJobTypeFactory(name="chat_completion")
    for i in range(6):
        job = AIJobFactory(brand=(personas.brand_a, personas.brand_b)[i % 2], job_type=job_type)
        started = services.job_start(job_pk=job.pk)
        if i % 3:
            services.job_complete(job_pk=job.pk, attempt=started.attempt, result_data={"text": "ok"})
    keys = JobDailyStat.objects.values("brand_id", "day", "job_type_id", "status")
    several = keys.annotate(n=Count("id")).filter(n__gt=1).count()
    assert several > 0, "the writes appended several rows per key"
    rollup_matches_rows()

    folded = stats_compact()

    assert folded == several
    assert keys.count() == keys.distinct().count()
    rollup_matches_rows()
    assert stats_compact() == 0


def test_the_upkeep_folds_the_recent_writes_each_round_and_every_key_in_a_full_round(personas):
    from ai_core.engine.upkeep import StatsCompaction

    job_type = AIJobTypeFactory(name="chat_completion")
    compaction = StatsCompaction()
    compaction.MARGIN = 0
    rows_of = JobDailyStat.objects.filter(status=S.PENDING)

    def pending_rows(brand):
        return rows_of.filter(brand=brand).count()

    AIJobFactory.create_batch(2, brand=personas.brand_a, job_type=job_type)
    assert compaction.run() == 1  # the first round looks at every key
    AIJobFactory.create_batch(2, brand=personas.brand_b, job_type=job_type)
    compaction._since = JobDailyStat.objects.order_by("-id").values_list("id", flat=True)[0]  # as if older
    assert compaction.run() == 0 and pending_rows(personas.brand_b) == 2
    AIJobFactory(brand=personas.brand_a, job_type=job_type)
    assert compaction.run() == 1  # brand A's new row, not brand B's older ones
    assert (pending_rows(personas.brand_a), pending_rows(personas.brand_b)) == (1, 2)
    rollup_matches_rows()
    compaction._rounds = compaction.FULL_EVERY
    assert compaction.run() == 1 and pending_rows(personas.brand_b) == 1
    rollup_matches_rows()


def test_transition_many_moves_each_open_job_once_and_skips_the_others(personas, django_capture_on_commit_callbacks):
    from ai_core.workflow import job_final_committed, transition_many

    jobs = [AIJobFactory(brand=(personas.brand_a, personas.brand_b)[i % 2], status=S.PENDING) for i in range(6)]
    running, done = jobs[0], jobs[1]
    services.job_start(job_pk=running.pk)
    started = services.job_start(job_pk=done.pk)
    services.job_complete(job_pk=done.pk, attempt=started.attempt, result_data={})
    rollup_matches_rows()
    announced = []
    job_final_committed.connect(lambda **kw: announced.append(kw["job_pk"]), weak=False, dispatch_uid="many")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            moves = transition_many([j.pk for j in jobs], to=S.CANCELLED, reason="all at once", actor_id=None)
    finally:
        job_final_committed.disconnect(dispatch_uid="many")

    assert sorted((t.job_pk, t.from_status) for t in moves) == sorted(
        [(running.pk, S.RUNNING)] + [(j.pk, S.PENDING) for j in jobs[2:]]
    )
    assert AIJob.objects.get(pk=done.pk).status == S.COMPLETED  # final: left as it is
    assert AIJob.objects.filter(status=S.CANCELLED, cancelled_at__isnull=False, completed_at__isnull=False).count() == 5
    events = AIJobEvent.objects.filter(reason="all at once")
    assert sorted(events.values_list("job_id", "from_status", "attempt")) == sorted(
        [(running.pk, S.RUNNING, 1)] + [(j.pk, S.PENDING, 0) for j in jobs[2:]]
    )
    assert sorted(announced) == sorted(t.job_pk for t in moves)
    rollup_matches_rows()
    assert transition_many([j.pk for j in jobs], to=S.CANCELLED) == []  # all final now: nothing moves twice
    with pytest.raises(ValueError):
        transition_many([jobs[0].pk], to=S.RUNNING)
