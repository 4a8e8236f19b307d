"""Small helpers shared by the engine tests."""

import time
from collections import Counter

from django.db import transaction
from django.utils import timezone

from ai_core.dispatch import dispatch_jobs_on_commit
from ai_core.lifecycle import stat_move
from ai_core.models import FINAL_STATUSES, AIJob, AIJobEvent, AIJobType
from ai_core.services import job_create

ECHO_CHAT = {"model": "echo-1", "messages": [{"role": "user", "content": "hello"}]}


def submit(
    brand, *, echo: dict | None = None, priority: str = "normal", job_type: str = "chat_completion", **extra
) -> AIJob:
    data = dict(ECHO_CHAT, **extra)
    if echo is not None:
        data["echo"] = echo
    if job_type == "text_generation":
        data = {"prompt": "hello", **{k: v for k, v in data.items() if k != "messages"}}
    job, _ = job_create(brand=brand, user=None, job_type=job_type, input_data=data, priority=priority)
    return job


def bulk_submit(brands_and_priorities, *, echo: dict | None = None, input_data: dict | None = None) -> list[int]:
    """Many pending chat jobs at once, as job_create leaves them (row, creation event, roll-up), in one
    transaction and so with its few wake-ups (dispatch.publish_jobs): a fast way to queue thousands of jobs (the
    other tests use job_create one by one). `input_data`: the jobs' input instead of an echo chat."""
    job_type = AIJobType.objects.get(name="chat_completion")
    data = input_data or dict(ECHO_CHAT, echo=echo or {})
    now = timezone.now()
    with transaction.atomic():
        jobs = AIJob.objects.bulk_create(
            AIJob(
                job_type=job_type,
                brand=brand,
                priority=priority,
                input_data=data,
                created_at=now,
                available_at=now,
            )
            for brand, priority in brands_and_priorities
        )
        AIJobEvent.objects.bulk_create(
            AIJobEvent(job=job, from_status="", to_status="pending", at=now, reason="created") for job in jobs
        )
        for brand_id, count in Counter(job.brand_id for job in jobs).items():
            stat_move(
                brand_id=brand_id,
                day=timezone.localdate(now),
                job_type_id=job_type.pk,
                deltas={"pending": count},
            )
        dispatch_jobs_on_commit([job.pk for job in jobs])
    return [job.pk for job in jobs]


def wait_for(predicate, *, timeout: float, what, every: float = 0.1):
    """Poll until predicate() is truthy, else fail with `what` (a guard against hangs, not a timing check)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what() if callable(what) else what}")
        time.sleep(every)


def all_final(pks) -> bool:
    return not AIJob.objects.filter(pk__in=list(pks)).exclude(status__in=list(FINAL_STATUSES)).exists()


def event_trail(job_pk: int) -> list[tuple[str, str, int]]:
    return list(
        AIJobEvent.objects.filter(job_id=job_pk).order_by("id").values_list("from_status", "to_status", "attempt")
    )


def assert_sane_history(job: AIJob, *, max_attempts: int) -> None:
    """One final event; attempts never overlap (each running event is closed before the next one opens)."""
    trail = event_trail(job.pk)
    assert trail[0][:2] == ("", "pending")
    finals = [e for e in trail if e[1] in FINAL_STATUSES]
    assert len(finals) == 1 and trail[-1] == finals[0], trail
    open_attempt = None
    for from_status, to_status, attempt in trail[1:]:
        if to_status == "running":
            assert open_attempt is None, f"attempt {attempt} started while {open_attempt} still ran: {trail}"
            open_attempt = attempt
        elif from_status == "running":
            assert open_attempt == attempt, trail
            open_attempt = None
    running_attempts = [a for _, to, a in trail if to == "running"]
    assert running_attempts == list(range(1, len(running_attempts) + 1)), trail
    assert job.attempts == len(running_attempts) <= max_attempts, (job.attempts, trail)
